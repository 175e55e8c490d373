"""A user's map-style Dataset of (image, label), read in batches through DataLoaders: the images as
something the package's loops index like an (N, C, H, W) tensor without holding them all, and the
labels in one pass (docs/api.md)."""
from __future__ import annotations

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset


class DatasetImages:
    """The images of `dataset`, read through a DataLoader when indexed. Indexing with positions
    returns a tensor of those images; `subset` a lazy view of some of them."""

    def __init__(self, dataset: Dataset, batch_size: int = 256, num_workers: int = 0):
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: torch.Tensor | slice | list[int]) -> torch.Tensor:
        if isinstance(index, slice):
            index = list(range(*index.indices(len(self))))
        elif isinstance(index, torch.Tensor):
            index = index.flatten().tolist()
        loader = DataLoader(Subset(self.dataset, list(index)), batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers)
        images = [x for x, _ in loader]
        return torch.cat(images) if images else torch.empty(0)

    def subset(self, index: torch.Tensor) -> "DatasetImages":
        """The images at positions `index`, still unread."""
        return DatasetImages(Subset(self.dataset, index.tolist()), self.batch_size, self.num_workers)

    def to(self, *args, **kwargs) -> "DatasetImages":
        """Stays where it is: every batch is moved to the device as it is read."""
        return self


def read_labels(dataset: Dataset, batch_size: int = 256, num_workers: int = 0) -> torch.Tensor:
    """Every label of `dataset` as int64: from the tensors of a TensorDataset (and Subsets and
    concatenations of them), otherwise in one pass through a DataLoader."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long().view(-1)
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        return dataset.dataset.tensors[1][torch.as_tensor(list(dataset.indices), dtype=torch.long)].long().view(-1)
    if isinstance(dataset, ConcatDataset):
        parts = [read_labels(d, batch_size, num_workers) for d in dataset.datasets]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
    labels = [torch.as_tensor(y).long().view(-1)
              for _, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)]
    return torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
