"""The NeurIPS 2023 Machine Unlearning Challenge's entry point, `unlearning(net, retain_loader,
forget_loader, val_loader)`, on top of the library (tmu_utils/library.py, docs/challenge.md): so that TMU and
the baselines drop into that starting kit and the repositories built on it, with the kit's own loaders.
The validation set serves as TMU's holdout for the twin problem.

The loaders are read once each, through their own `collate_fn`, into memory; every input is checked
(kit_checks.py) before any model trains.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from . import kit_checks
from .library import Normalization, build_one_off, check_step, method_row, unlearn


def _reinitialised(net: nn.Module) -> Callable[[], nn.Module] | None:
    """A factory of copies of `net` with every parameter drawn afresh (`reset_parameters`), or None when
    some submodule that holds parameters has no `reset_parameters`."""
    holders = [m for m in net.modules() if next(m.parameters(recurse=False), None) is not None]
    if not all(hasattr(m, "reset_parameters") for m in holders):
        return None

    def make() -> nn.Module:
        fresh = copy.deepcopy(net)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return fresh

    return make


def unlearning(net: nn.Module, retain_loader: DataLoader, forget_loader: DataLoader, val_loader: DataLoader, *,
               make_model: Callable[[], nn.Module] | None = None, method: str = "tmu", seed: int = 0,
               normalization: Normalization | None = None, keys: tuple[str, str] | None = None,
               last_block: str | None = None, **knobs) -> nn.Module:
    """The NeurIPS 2023 Machine Unlearning Challenge's entry point: `net` unlearns the forget loader's
    samples, in place, and is returned. The validation set is TMU's holdout for the twin problem.

    - `normalization=(mean, std)`: the `Normalize` the loaders apply; without it, images in [0, 1] are
      pixels, and normalised ones are taken to span black to white in each channel across the loaders.
    - `keys=(images key, labels key)` for dict batches whose keys are not found by name.
    - `last_block`: the module path of the block TMU's step trains with the head ("layer4.1").
    - The curriculum model M_c is `make_model()`; without it, `net` with its parameters re-initialised,
      and where some layer cannot be re-initialised TMU goes on without the curriculum feature.
    Any bad input is refused with a one-line LibraryError before any model trains."""
    r = method_row(method, knobs)
    params, twin_based = r.params, r.method == "tmu" and r.params.tmu_split == "predictor"
    check_step(net, r, last_block)
    loaders = {"retain set": retain_loader, "forget set": forget_loader}
    if twin_based:
        loaders["validation set"] = val_loader
    device = next(net.parameters()).device
    data = kit_checks.read_loaders(net, loaders, keys, device)
    where = kit_checks.check_range(data, normalization)
    (rx, ry), (fx, fy) = data["retain set"], data["forget set"]
    retain, forget = TensorDataset(rx, ry), TensorDataset(fx, fy)
    # the data are in memory now: read them back in the loaders' batch size, without worker processes
    reading = {"batch_size": retain_loader.batch_size or 256, "num_workers": 0,
               "normalization": None if where is None else where.normalization()}
    one = None
    if twin_based:
        vx, vy = data["validation set"]
        members_y = torch.cat([ry, fy])
        kit_checks.check_sizes(params, ry, fy, vy)
        # a validation set smaller than the forget set gives all it has; unlearn() warns how the twin
        # easy rate widens
        knobs.setdefault("forget_fraction", min(len(fy), len(vy)) / len(members_y))
        make_model = make_model or _reinitialised(net)
        if make_model is None:
            knobs["features"] = [f for f in knobs.get("features", ["df", "af", "cf"]) if f != "cf"]
        one = build_one_off(net, make_model, ConcatDataset([retain, forget]), TensorDataset(vx, vy), device=device,
                            seed=seed, **reading, **knobs)
    model = unlearn(net, retain, forget, one, method=method, device=device, seed=seed, last_block=last_block,
                    **reading, **knobs)
    net.load_state_dict(model.state_dict())
    return net.eval()

