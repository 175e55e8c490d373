"""The candidate grids every method is tuned over on the twin problem (docs/tuning.md): each knob a
Params field, every grid the same number of points, and the fixed choice of `tune_budget` of them."""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml
from scipy.stats import qmc

from ...core.choices import CHOICES, TUNABLE_KNOBS, TUNE_GRID_POINTS, UNLEARNING_METHODS, fixed_knobs_path
from ...core.params import FIELD_TYPES, Params, ParamsError
from ...core.variants import Row
from ...unlearning.runner import stored_name


@dataclass(frozen=True)
class Scaled:
    """Candidate values of a learning rate as multiples of the run's own value of it: its right scale
    depends on the data set, the model and the recipe, so the grid follows the params file."""

    factors: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.factors)

    def resolve(self, value: float) -> tuple[float, ...]:
        return tuple(float(f"{value * f:.3g}") for f in self.factors)


# Learning rates bracket the configured value from 0.4x to 4x (NegGrad's from 1/8x to 22x, in steps
# of sqrt(2): on the default data it moves from doing nothing to diverging within a factor of 3, and
# where that edge lies depends on the data set). The other knobs' values are absolute.
_LR = Scaled((0.4, 1.0, 2.0, 4.0))
_TMU = {"unlearn_lr": _LR, "hard_repeat": (1, 2, 4, 8)}
# Knob name (a Params field) -> candidate values, per registered method (a variant row is tuned over its
# method's grid). Each grid is their product.
KNOBS: dict[str, dict[str, tuple | Scaled]] = {
    "tmu": _TMU,
    "finetune": {"unlearn_lr": _LR, "unlearn_epochs": (1, 2, 3, 5)},
    "neggrad": {"neggrad_lr": Scaled(tuple(2 ** (k / 2) for k in range(-6, 10)))},
    "neggrad_plus": {"unlearn_lr": _LR, "neggrad_plus_alpha": (0.1, 0.25, 0.5, 1.0)},
    "random_label": {"unlearn_lr": _LR, "unlearn_epochs": (1, 2, 3, 5)},
    "bad_teacher": {"unlearn_lr": _LR, "bad_teacher_temperature": (0.5, 1.0, 2.0, 4.0)},
    # scrub_max_epochs 0 is the min-steps-only end of SCRUB's schedule: distillation on D_r alone.
    "scrub": {"scrub_lr": Scaled((0.25, 0.5, 1.0, 2.5)), "scrub_max_epochs": (0, 1, 2, 3)},
    "salun": {"unlearn_lr": _LR, "salun_sparsity": (0.1, 0.3, 0.5, 0.7)},
    "l1_sparse": {"unlearn_lr": _LR, "l1_sparse_alpha": (1e-4, 2e-4, 5e-4, 1e-3)},
}
NO_KNOBS = ("original", "retrain")  # references, scored as they are


def tuned_as(r: Row) -> Row:
    """The row whose knobs `r` runs at: TMU at another split than the predictor's (a control) runs at the
    knobs of TMU with the predictor's split, so that it differs from it only in which forget samples count
    as easy (and costs no tuning of its own); every other row at its own."""
    if r.method != "tmu" or r.params.tmu_split == "predictor":
        return r
    return Row(r.name, r.method, dataclasses.replace(r.params, tmu_split="predictor"))


def check_grid(method: str, grid: dict[str, tuple]) -> None:
    """Raise ValueError naming the method and the knob when `grid` is not a valid tuning grid."""
    for knob, values in grid.items():
        if knob not in FIELD_TYPES:
            raise ValueError(f"tuning grid of method '{method}' names '{knob}', which is not a parameter")
        if knob not in TUNABLE_KNOBS:
            raise ValueError(f"tuning grid of method '{method}' varies '{knob}', which choices.TUNABLE_KNOBS "
                             "does not list (so it could not be pinned)")
        if not values:
            raise ValueError(f"tuning grid of method '{method}' gives knob '{knob}' no values")
    if math.prod(len(v) for v in grid.values()) != TUNE_GRID_POINTS:
        raise ValueError(f"tuning grid of method '{method}' must hold {TUNE_GRID_POINTS} points")


def check_grids() -> None:
    """Check every grid, and that every method declares one or has no knobs."""
    for method, grid in KNOBS.items():
        check_grid(method, grid)
    undeclared = set(UNLEARNING_METHODS) - set(KNOBS) - set(NO_KNOBS)
    if undeclared:
        raise ValueError(f"method(s) {sorted(undeclared)} declare no tuning grid (add them to KNOBS or NO_KNOBS)")


check_grids()


def candidates(method: str, params: Params) -> dict[str, tuple]:
    """`method`'s candidate values per knob, learning rates scaled to `params`' own values."""
    return {k: v.resolve(getattr(params, k)) if isinstance(v, Scaled) else v for k, v in KNOBS[method].items()}


def grid_points(method: str, params: Params) -> list[dict[str, Any]]:
    """`params.tune_budget` points of `method`'s candidate grid: the cells of the first points of the
    unscrambled Sobol sequence. Each knob has a power-of-2 number of values (the grid holds 16 points),
    so these cells are distinct and the choice is fixed; at budget 8 each knob's values are covered
    evenly (4 x 4 grid: each value of each knob twice; 16 values: every other one), and the default 6
    stops two points short of that. A knob in `params.pinned` is not tuned: it keeps its value."""
    check_grid(method, KNOBS[method])
    budget = params.tune_budget
    if not 1 <= budget <= TUNE_GRID_POINTS:
        raise ParamsError(f"parameter 'tune_budget' must lie in [1, {TUNE_GRID_POINTS}]; got {budget}")
    values = candidates(method, params)
    names = list(values)
    sobol = qmc.Sobol(len(names), scramble=False).random_base2(TUNE_GRID_POINTS.bit_length() - 1)
    points = [{n: values[n][int(x * len(values[n]))] for n, x in zip(names, u)} for u in sobol[:budget]]
    # A pinned knob keeps its given value at every point, and points that then coincide are run once.
    pinned = {n: getattr(params, n) for n in names if n in params.pinned}
    return list({json.dumps(p, sort_keys=True): p for p in (dict(p, **pinned) for p in points)}.values())


@functools.cache
def tmu_stored_names() -> frozenset[str]:
    """Every name TMU is stored under (runner.stored_name) unperturbed, one for each combination of its
    split, target and step knobs (a perturbed step appends `_perturb<share>` to one of them)."""
    knobs = ("tmu_split", "tmu_target", "tmu_retain_loss", "tmu_update")
    base = Params(tmu_perturb=0.0)
    return frozenset(stored_name(Row("tmu", "tmu", dataclasses.replace(base, **dict(zip(knobs, values)),
                                                                        tmu_calibrate=calibrate)))
                     for values in itertools.product(*(CHOICES[k] for k in knobs)) for calibrate in (False, True))


def stored_knobs(name: str) -> dict | None:
    """The knobs of a method by its stored name (runner.stored_name): every name TMU is stored under
    (`tmu_hard_only_distill`) has TMU's; None for a name that is no method with knobs."""
    unperturbed = re.sub(r"_perturb[0-9.e+-]+$", "", name)
    return KNOBS.get(name) or (KNOBS["tmu"] if unperturbed in tmu_stored_names() else None)


def _read_table(name: str) -> dict[str, Any]:
    """The fixed-knobs table file `name` as written: method rows and, if any, `tuned_for`."""
    return yaml.safe_load(fixed_knobs_path(name).read_text()) or {}


def fixed_table(name: str) -> dict[str, dict[str, Any]]:
    """The fixed-knobs table `name` (tmu_utils/fixed_knobs/<name>.yaml; {} for 'none'): per method, as
    stored (`runner.artefact_name`), the knobs it runs at under `tuning: fixed`, each one of its grid's
    knobs. benchmarks/tune_defaults.py writes these tables from twin tunings on seeds never reported."""
    if name == "none":
        return {}
    path = fixed_knobs_path(name)
    table = _read_table(name)
    table.pop("tuned_for", None)  # the data set and architecture it holds for (tuning_mode)
    for method, knobs in table.items():
        grid = stored_knobs(method)
        if grid is None:
            raise ParamsError(f"{path}: '{method}' is not a method with tuning knobs")
        unknown = set(knobs) - set(grid)
        if unknown:
            raise ParamsError(f"{path}: method '{method}' has no knob(s) {sorted(unknown)}; its knobs are "
                              f"{sorted(grid)}")
    return table


# The fields a fixed-knobs table's `tuned_for` names: the data set and architecture its knobs were
# tuned on. Elsewhere `auto` tunes on the twin problem instead (tuning_mode).
TUNED_FOR_FIELDS = ("dataset", "arch")


def tuning_mode(p: Params) -> str:
    """`fixed` or `twin`: what `tuning` means for this run. `auto` is `fixed` where the `fixed_knobs` table
    was tuned (or names no data set, or is `none`) and `twin` on any other data set or architecture: there,
    with its twin trained from scratch and scored by alignment, twin tuning came closer to the gold model
    than the table at seeds no table reports (docs/tuning.md)."""
    if p.tuning != "auto":
        return p.tuning
    return "twin" if tuned_elsewhere(p) else "fixed"


def tuned_elsewhere(p: Params) -> dict | None:
    """The `tuned_for` of the run's fixed-knobs table when it names another data set or architecture than
    the run's (its knobs then come from elsewhere), else None."""
    if p.fixed_knobs == "none":
        return None
    tuned_for = _read_table(p.fixed_knobs).get("tuned_for")
    if tuned_for is None or all(getattr(p, k) == tuned_for.get(k) for k in TUNED_FOR_FIELDS):
        return None
    return tuned_for
