"""A user's map-style Dataset of (image, label), read in batches through DataLoaders: the images as
something the package's loops index like an (N, C, H, W) tensor without holding them all, and the
labels in one pass (docs/challenge.md). A batch is a tuple or list (images, labels, ...) or a dict whose
keys say which is which."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset


# Dict batches (a Hugging Face data set, the challenge's Kaggle round): the keys looked for, in order.
IMAGE_KEYS = ("image", "images", "img", "x", "input", "inputs", "pixel_values")
LABEL_KEYS = ("label", "labels", "y", "target", "targets", "age_group", "class")


def batch_parts(batch: Any, keys: tuple[str, str] | None = None) -> tuple[Any, Any]:
    """(images, labels) of one batch: items 0 and 1 of a tuple or list, or a dict's entries under
    `keys` (images, labels) or under the first of IMAGE_KEYS and LABEL_KEYS it has (any case).
    ValueError, in one line, for any other batch."""
    if isinstance(batch, Mapping):
        by_lower = {str(k).lower(): k for k in batch}
        found = keys or tuple(next((by_lower[n] for n in names if n in by_lower), None)
                              for names in (IMAGE_KEYS, LABEL_KEYS))
        for key, role, names in zip(found, ("images", "labels"), (IMAGE_KEYS, LABEL_KEYS)):
            if key not in batch:
                looked = f"{key!r}" if keys else "any of " + ", ".join(names)
                raise ValueError(f"its batches are dicts with keys {sorted(map(str, batch))} and none for the {role} "
                                 f"({looked}): give keys=(images key, labels key)")
        return batch[found[0]], batch[found[1]]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"its batches are {type(batch).__name__}s: give (images, labels) tuples or lists, or dicts")


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
        images = [batch_parts(b)[0] for b in loader]
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
    labels = [torch.as_tensor(batch_parts(b)[1]).long().view(-1)
              for b in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)]
    return torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
