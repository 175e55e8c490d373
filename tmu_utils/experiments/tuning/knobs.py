"""The knobs each row of a run runs at (docs/tuning.md): chosen on the twin problem (`tuning: twin`, tuned
once and cached) or read from the fixed-knobs table (`tuning: fixed`; `auto` is one of them, grids.tuning_mode);
a knob the row pins (a `--set`, a sweep's grid point, a variant's override) is kept as given.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ...core import context
from ...core.params import validate
from ...core.variants import row
from ...unlearning import runner
from .grids import KNOBS, fixed_table, tuned_as, tuning_mode
from .search import tune_methods


def tuned_context(ctx: context.Context, record: dict | None) -> context.Context:
    """`ctx` with the knobs a tuning record chose (unchanged without a record)."""
    if record is None:
        return ctx
    return dataclasses.replace(ctx, params=validate(dataclasses.replace(ctx.params, **record["chosen"])))


def fixed_context(ctx: context.Context, name: str) -> context.Context:
    """`ctx` at the row `name`'s params with its own knobs from the `fixed_knobs` table (`tuning: fixed`):
    the row of its stored name (a control reads TMU's, grids.tuned_as); a row the table does not list, or
    `fixed_knobs: none`, keeps the shared fields, and so does every knob in `pinned`."""
    r = row(ctx.params, name)
    table = fixed_table(ctx.params.fixed_knobs).get(runner.stored_name(tuned_as(r)), {})
    knobs = {k: v for k, v in table.items() if k not in r.params.pinned}  # an explicit value wins over the row
    return dataclasses.replace(ctx, params=validate(dataclasses.replace(r.params, **knobs)))


def ran_knobs(ctx: context.Context, name: str) -> dict[str, Any]:
    """The values of the row `name`'s tuning knobs in `ctx` (a method_context): what its results.json row
    ran at, recorded with it ({} for a method without knobs)."""
    r = row(ctx.params, name)
    return {k: getattr(r.params, k) for k in KNOBS.get(r.method, {})}


def method_context(ctx: context.Context, original: nn.Module, name: str) -> context.Context:
    """`ctx` at the params the row `name` runs at: its own (a variant's overrides applied) with the knobs
    chosen on the twin problem or read from the fixed-knobs table."""
    if tuning_mode(ctx.params) == "twin":
        rctx = dataclasses.replace(ctx, params=row(ctx.params, name).params)
        return tuned_context(rctx, tune_methods(ctx, original, [name])[0].get(name))
    return fixed_context(ctx, name)
