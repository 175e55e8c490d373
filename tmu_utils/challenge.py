"""The NeurIPS 2023 Machine Unlearning Challenge's entry point, `unlearning(net, retain_loader,
forget_loader, val_loader)`, on top of the library (tmu_utils/library.py, docs/api.md): so that TMU and
the baselines drop into that starting kit and the repositories built on it. The validation set serves
as TMU's holdout for the twin problem.
"""
from __future__ import annotations

import copy
from typing import Callable

from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from .library import LibraryError, build_one_off, unlearn
from .unlearning.runner import TWIN_METHODS


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
               **knobs) -> nn.Module:
    """The NeurIPS 2023 Machine Unlearning Challenge's entry point: `net` unlearns the forget loader's
    samples, in place, and is returned. The validation set is TMU's holdout for the twin problem.

    The curriculum model M_c is `make_model()`; without it, `net` with its parameters re-initialised,
    and where some layer cannot be re-initialised TMU goes on without the curriculum feature."""
    retain, forget, holdout = retain_loader.dataset, forget_loader.dataset, val_loader.dataset
    reading = {"batch_size": retain_loader.batch_size or 256, "num_workers": retain_loader.num_workers}
    device = next(net.parameters()).device
    one = None
    if method in TWIN_METHODS:
        if len(holdout) < len(forget):
            raise LibraryError(f"the validation set ({len(holdout)} samples) is smaller than the forget set "
                               f"({len(forget)}): it cannot supply a twin forget set of its size")
        members = ConcatDataset([retain, forget])
        knobs.setdefault("forget_fraction", len(forget) / len(members))
        make_model = make_model or _reinitialised(net)
        if make_model is None:
            knobs["features"] = [f for f in knobs.get("features", ["df", "af", "cf"]) if f != "cf"]
        one = build_one_off(net, make_model, members, holdout, device=device, seed=seed, **reading, **knobs)
    model = unlearn(net, retain, forget, one, method=method, device=device, seed=seed, **reading, **knobs)
    net.load_state_dict(model.state_dict())
    return net.eval()
