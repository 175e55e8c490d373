"""The challenge's loaders read and checked before any model trains (tmu_utils/challenge.py, docs/challenge.md):
each loader is iterated once, through its own `collate_fn`, and every bad input is refused with one line
(a LibraryError): the batch format, the labels' width, the image shapes, the model's output width
first, on one batch of each loader; then the value range and the sizes, on all of them.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .core.input_range import InputRange, range_problem
from .core.params import Params
from .core.streaming import batch_parts
from .core.training import to_input
from .library import LibraryError, Normalization, check_bank, input_range

Sets = dict[str, tuple[torch.Tensor, torch.Tensor]]  # set name -> (images, labels), in the loader's order


def _parts(batch: Any, name: str, keys: tuple[str, str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of one batch of the `name` loader, refused in one line when they are not a batch
    of images and one integer class per image."""
    try:
        x, y = batch_parts(batch, keys)
    except ValueError as e:
        raise LibraryError(f"the {name} loader: {e}") from None
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise LibraryError(f"the {name} loader's images are {type(x).__name__} {tuple(getattr(x, 'shape', ()))}: give "
                           "a tensor batch (B, C, H, W), as transforms.ToTensor() and the default collate_fn make")
    try:
        y = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise LibraryError(f"the {name} loader's labels are {type(y).__name__}s of {type(y[0]).__name__}: give integer "
                           "class indices") from None
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.flatten()
    if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise LibraryError(f"the {name} loader's labels are {y.dtype} {tuple(y.shape)}: give one integer class index "
                           "per image (one-hot or soft labels are not taken)")
    if len(y) != len(x):
        raise LibraryError(f"the {name} loader's batches hold {len(x)} images but {len(y)} labels")
    return x, y.long()


def _width(net: nn.Module, x: torch.Tensor, name: str, device: torch.device) -> int:
    """The model's output width on two images of the `name` loader, refused when it cannot read them."""
    training = net.training
    try:
        with torch.no_grad():
            out = net.eval()(to_input(x[:2], device))
    except Exception as e:  # any layer may refuse the input: say which loader's images it refused
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LibraryError(f"the model cannot read the {name}'s images {tuple(x.shape[1:])}: {message}") from None
    finally:
        net.train(training)
    if out.dim() != 2:
        raise LibraryError(f"the model's output on the {name}'s images is {tuple(out.shape)}: give a classifier "
                           "whose output is (batch, classes)")
    return out.shape[1]


def _overlap(loaders: dict[str, DataLoader]) -> None:
    """Refuse two loaders over Subsets of one data set that share samples (where they say which they hold)."""
    held = {n: (id(l.dataset.dataset), set(map(int, l.dataset.indices))) for n, l in loaders.items()
            if isinstance(getattr(l, "dataset", None), Subset)}
    names = list(held)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if held[a][0] == held[b][0] and held[a][1] & held[b][1]:
                raise LibraryError(f"the {a} and the {b} share {len(held[a][1] & held[b][1])} samples")


def read_loaders(net: nn.Module, loaders: dict[str, DataLoader], keys: tuple[str, str] | None,
                 device: torch.device) -> Sets:
    """Every loader's images and labels, read once through its own collate_fn: one batch of each is
    checked against the others and the model before the rest is read."""
    _overlap(loaders)
    streams: dict[str, Iterator] = {}
    first: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, loader in loaders.items():
        streams[name] = iter(loader)
        batch = next(streams[name], None)
        if batch is None:
            raise LibraryError(f"the {name} loader yields no batch: the {name} is empty")
        first[name] = _parts(batch, name, keys)
    shapes = {name: tuple(x.shape[1:]) for name, (x, _) in first.items()}
    if len(set(shapes.values())) > 1:
        raise LibraryError("the loaders' images differ in shape: " + ", ".join(f"{n} {s}" for n, s in shapes.items()))
    width = _width(net, next(iter(first.values()))[0], next(iter(first)), device)
    data: Sets = {}
    for name, (x, y) in first.items():
        parts = [(x, y)] + [_parts(batch, name, keys) for batch in streams[name]]
        data[name] = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        labels = data[name][1]
        if int(labels.min()) < 0 or int(labels.max()) >= width:
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise LibraryError(f"the model has {width} outputs but the {name} has label {bad}: its output width "
                               "must be the number of classes, labels 0 to width - 1")
    return data


def check_range(data: Sets, normalization: Normalization | None) -> InputRange | None:
    """Where the images live: `normalization`'s range (each set checked inside it); [0, 1] pixels (None)
    when every set lies there; else each channel's span across the sets, black to white. Sets that
    disagree (one in [0, 1], another outside) are refused: their loaders normalise differently."""
    images = {name: x for name, (x, _) in data.items()}
    channels = next(iter(images.values())).shape[1]
    where = input_range(normalization, channels)
    kinds = {name: x.dtype == torch.uint8 for name, x in images.items()}
    if len(set(kinds.values())) > 1:
        raise LibraryError("the loaders' images differ in type: " + ", ".join(f"{n} {x.dtype}"
                                                                           for n, x in images.items()))
    for name, x in images.items():
        read_below = where is None and x.is_floating_point() and bool(torch.isfinite(x).all())  # its span, below
        problem = None if read_below else range_problem(x, name, where)
        if problem:
            raise LibraryError(problem)
    if where is not None or all(kinds.values()):
        return where
    spans = {name: (float(x.min()), float(x.max())) for name, x in images.items()}
    inside = [name for name, (lo, hi) in spans.items() if 0 <= lo and hi <= 1]
    if len(inside) == len(spans):
        return None
    if inside:
        inside, outside = inside[0], next(name for name in spans if name not in inside)
        raise LibraryError(f"the {outside}'s images lie in [{spans[outside][0]:.3g}, {spans[outside][1]:.3g}] but the "
                           f"{inside}'s in [{spans[inside][0]:.3g}, {spans[inside][1]:.3g}]: the loaders must "
                           "normalise alike (give normalization=(mean, std) to say how)")
    per_channel = torch.cat([x.transpose(0, 1).flatten(1) for x in images.values()], 1)  # (C, all values)
    low, high = per_channel.amin(1), per_channel.amax(1)
    if bool((high <= low).any()):
        c = int((high <= low).nonzero()[0])
        raise LibraryError(f"channel {c} of the images is constant ({float(low[c]):.3g}), so its pixel scale cannot be "
                           "read off the data: give normalization=(mean, std)")
    return InputRange.observed(low, high)


def check_sizes(params: Params, retain_y: torch.Tensor, forget_y: torch.Tensor, val_y: torch.Tensor) -> None:
    """Refuse sizes the twin problem cannot work with: a DF bank short of any class it will be asked for."""
    members_y = torch.cat([retain_y, forget_y])
    check_bank(params, val_y, members_y, "member set (retain and forget)")
    check_bank(params, forget_y, retain_y, "retain set")
