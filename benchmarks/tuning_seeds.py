"""One seed's twin tuning, as the scripts that derive a default from seeds no table reports run it
(choose_step.py, choose_target.py, tune_defaults.py). Not a script: they import it as a sibling.

It trains or fetches M_o, the twin problem and the features of that seed and tunes the methods on the
twin problem (docs/tuning.md); it never trains or reads a gold model.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from tmu_utils.core import context
from tmu_utils.core.params import Params, load_params
from tmu_utils.experiments import tuning


def tune_seed(path: str, overrides: list[str], seed: int, forced: Sequence[str] = (),
              methods: Callable[[Params, nn.Module], Sequence[str]] | None = None) -> tuple[Params, dict[str, dict]]:
    """The params and the tuning records by method (tuning.tune_methods) of seed `seed` of the params
    file `path`, at `tuning: twin` without progress bars. `forced` are the script's own KEY=VALUE
    settings, applied after the caller's `overrides`, so they win; `methods(params, original)` names
    the methods to tune (by default the params' `methods`)."""
    params = load_params(path, [*overrides, *forced, f"seed={seed}", "tuning=twin", "progress=false"])
    ctx = context.prepare(params)
    original, _ = context.original_model(ctx)
    names = list(params.methods if methods is None else methods(params, original))
    records, _ = tuning.tune_methods(ctx, original, names)
    return params, records
