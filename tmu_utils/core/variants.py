"""Rows of a results table (docs/method.md, "Variants"). A row is a registered method, or a variant: a
name for a method at some knob overrides, from `variants:` in params (choices.VARIANTS holds the built-in
ones: TMU's controls, targets and steps). Comparing a new step is one YAML line:

    variants:
      tmu_long: {hard_repeat: 8}
      finetune_short: {method: finetune, unlearn_epochs: 1}

`run`, sweeps and populations score every row in `methods` with its own params (`row`); a variant's
knob overrides are pinned, so neither the fixed-knobs table nor twin tuning replaces them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import choices
from .param_fields import Params, ParamsError, _coerce


@dataclass(frozen=True)
class Row:
    """One row of a results table: its name, the registered method it runs, and the params it runs at."""

    name: str
    method: str
    params: Params


def row(params: Params, name: str) -> Row:
    """The row `name` of a run with `params`: a registered method at `params`, or a variant's method at
    `params` with the variant's overrides (their tuning knobs pinned). Resolving a row's own params
    again gives the same row."""
    if name in choices.UNLEARNING_METHODS:
        return Row(name, name, params)
    if name not in params.variants:
        raise ParamsError(f"'{name}' is neither a method nor a variant (parameter 'variants')")
    overrides = dict(params.variants[name])
    method = overrides.pop("method", "tmu")
    if method not in choices.UNLEARNING_METHODS or method in ("original", "retrain"):
        raise ParamsError(f"variant '{name}': 'method' must name an unlearning method; got {method!r}")
    bad = [k for k in overrides if k not in choices.VARIANT_FIELDS]
    if bad:
        raise ParamsError(f"variant '{name}' overrides '{bad[0]}': a variant shares the run's data, models and "
                          f"predictor, so it may change only {', '.join(choices.VARIANT_FIELDS)}")
    try:
        values = {k: _coerce(k, v) for k, v in overrides.items()}
    except ParamsError as e:
        raise ParamsError(f"variant '{name}': {e}") from None
    knobs = [k for k in values if k in choices.TUNABLE_KNOBS]
    values["pinned"] = list(dict.fromkeys([*params.pinned, *knobs]))
    return Row(name, method, dataclasses.replace(params, **values))


def is_tmu(r: Row) -> bool:
    """Whether the row runs TMU (at any target, split or step)."""
    return r.method == "tmu"


def reads_predictor(r: Row) -> bool:
    """Whether the row needs TMU's one-off (the twin problem, features and predictor): TMU with the
    predictor's split, the random control (which takes the predictor's count of easy samples), and any
    TMU row with a calibrated step (which reads M_o's margins on the twin forget set)."""
    return is_tmu(r) and (r.params.tmu_split in ("predictor", "random") or r.params.tmu_calibrate)


def split_of(name: str, params: dict) -> str | None:
    """The `tmu_split` of the row `name` of a run whose params are the dict `params` (as results.json and
    population.json store them; rows written before `variants` existed are the built-in ones), or None
    for a row that is not TMU. For reports that hold a run's record, not its Params."""
    if name == "tmu":
        return params.get("tmu_split", "predictor")
    overrides = params.get("variants", choices.VARIANTS).get(name)
    if overrides is None or overrides.get("method", "tmu") != "tmu":
        return None
    return overrides.get("tmu_split", params.get("tmu_split", "predictor"))


def rows(params: Params, names: list[str] | None = None) -> list[Row]:
    """The rows of `names` (params.methods by default), in order."""
    return [row(params, n) for n in (params.methods if names is None else names)]
