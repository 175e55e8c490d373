"""Gold-free, equal-budget tuning of every method on the twin problem (docs/tuning.md).

The twin problem is an unlearning problem whose answer is known without the gold model: the
original is M_t, the forget set D_tf, the retain set the members M, and its gold model is M_o,
which never saw D_tf. Each method's knobs are chosen there, per run, on any data set:
- every method gets the same number of grid points (`tune_budget`), taken from its declared
  candidate grid (tuning_grids.py);
- every point is scored by one criterion, the same for every method (`alignment_score`);
- TMU is handed the easy/hard split its predictor makes for samples it never trained on
  (out-of-fold), never the twin labels themselves; its soft and margin targets the out-of-fold
  P(easy), and the margin target M_t's margins on holdout samples M_t never saw.
Nothing here touches M_g or M_g'.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from typing import Any

import torch
from torch import nn

from ..core import context
from ..core.context import Outputs
from ..core.params import Params, validate
from ..core.training import predict, seed_everything, true_class_margins
from ..evaluation.metrics import alignment_metrics
from ..unlearning import METHODS, UnlearnTask, runner
from ..unlearning.common import EPOCH_PREFIX
from .tuning_grids import KNOBS, TUNED_AS, fixed_table, grid_points, tuning_mode
from .tuning_problem import TwinProblem, tuning_twin, twin_easy_splits, twin_problem, twin_reference_margins


def alignment_score(u: Outputs, gold: Outputs, labels: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """ToW × (1 − AD/√2): accuracy agreement on the forget, retain and test sets times per-sample
    output agreement on the forget set (AD ≤ √2 between two probability vectors), in [0, 1],
    higher is better. The score, and the metrics it came from."""
    m = alignment_metrics(u, gold, labels)
    return criterion(m["tow"], m["activation_distance"]), m


# Margins are clipped here before they are compared, as KLoM clips them (docs/method.md).
MARGIN_CLIP = 100.0


def margin_distance(u: Outputs, gold: Outputs, labels: dict[str, torch.Tensor]) -> float:
    """The per-sample criterion's distance: the mean over samples of |margin under M_u − margin under
    the gold model|, on the forget set and on the retain sample, the two means averaged. On the twin
    problem the gold model is M_o, so this reads how far each sample's confidence moved from where a
    model that never saw it (forget) or never lost anything (retain) puts it."""
    def mean_gap(split: str) -> float:
        mu = true_class_margins(getattr(u, split), labels[split]).clamp(-MARGIN_CLIP, MARGIN_CLIP)
        mg = true_class_margins(getattr(gold, split), labels[split]).clamp(-MARGIN_CLIP, MARGIN_CLIP)
        return (mu - mg).abs().double().mean().item()
    return 0.5 * (mean_gap("forget") + mean_gap("retain"))


def point_score(criterion_name: str, tow: float, activation_distance: float, distance: float) -> float:
    """A grid point's score under `tuning_criterion`, higher is better: `alignment` ToW × (1 − AD/√2),
    `margins` 1 / (1 + margin distance)."""
    if criterion_name == "margins":
        return 1.0 / (1.0 + distance)
    return criterion(tow, activation_distance)


def criterion(tow: float, activation_distance: float) -> float:
    """The tuning score from its two parts: ToW × (1 − AD/√2)."""
    return tow * (1.0 - activation_distance / math.sqrt(2.0))


def twin_unlearn(ctx: context.Context, problem: TwinProblem, method: str, params: Params,
                 easy: torch.Tensor | None, read_at: tuple[int, ...] = (),
                 **target_inputs: torch.Tensor | None) -> dict[int, tuple[Outputs, float]]:
    """Run `method` with `params` on the twin problem: its outputs on the scoring sets and its wall time,
    keyed by the epochs run. Besides `params.unlearn_epochs`, each epoch count in `read_at` (methods in
    EPOCH_PREFIX only) is read off this run after that epoch: what a run stopped there would give, its
    time the unlearning up to that epoch (the reading itself is not counted).
    `target_inputs` are the TMU targets' `easy_proba` and `reference_margins`, when it reads them."""
    seed = ctx.seeds["unlearning"]
    results: dict[int, tuple[Outputs, float]] = {}
    reading = [0.0]  # seconds spent reading, left out of the unlearning time

    def scored(model: nn.Module) -> Outputs:
        return Outputs(*(predict(model, problem.eval_x[s], ctx.device) for s in ("forget", "retain", "test")))

    def read(epochs_done: int, model: nn.Module) -> None:
        if epochs_done in read_at:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            # a copy: `predict` switches a model to eval mode and may change its memory format
            results[epochs_done] = (scored(copy.deepcopy(model)), now - start - reading[0])
            reading[0] += time.perf_counter() - now

    if read_at and method not in EPOCH_PREFIX:
        raise ValueError(f"method '{method}' cannot be read off after each epoch (EPOCH_PREFIX)")
    task = UnlearnTask(problem.original, problem.retain_x, problem.retain_y, problem.forget_x, problem.forget_y,
                       ctx.dataset.num_classes, params, ctx.device, easy=easy, seed=seed,
                       on_epoch=read if read_at else None, **target_inputs)
    seed_everything(seed)
    start = time.perf_counter()
    model = METHODS[method](task)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start - reading[0]
    results[params.unlearn_epochs] = (scored(model), seconds)
    missing = set(read_at) - set(results)
    if missing:
        raise RuntimeError(f"method '{method}' never reached epoch(s) {sorted(missing)} of {params.unlearn_epochs}")
    return results


def shared_runs(method: str, grid: list[dict[str, Any]]) -> dict[int, list[int]]:
    """Which grid points are run, each with the points read off it (itself included). For a method in
    EPOCH_PREFIX, the points that differ only in `unlearn_epochs` are read off one run of the longest:
    the same outputs as separate runs, for less unlearning (docs/tuning.md)."""
    if method not in EPOCH_PREFIX or not grid or "unlearn_epochs" not in grid[0]:
        return {i: [i] for i in range(len(grid))}
    groups: dict[str, list[int]] = {}
    for i, point in enumerate(grid):
        groups.setdefault(json.dumps({k: v for k, v in point.items() if k != "unlearn_epochs"}, sort_keys=True),
                          []).append(i)
    return {max(g, key=lambda i: grid[i]["unlearn_epochs"]): g for g in groups.values()}


def tune_method(ctx: context.Context, problem: TwinProblem, method: str, easy: torch.Tensor | None,
                **target_inputs: torch.Tensor | None) -> dict:
    """Score every grid point of `method` on the twin problem; choose the best (first on ties).
    `read_from[i]`: the grid point whose run point i was read off (i itself unless shared_runs)."""
    start = time.perf_counter()
    grid = grid_points(method, ctx.params)
    settings = [dataclasses.replace(ctx.params, **point) for point in grid]
    results: list[tuple[Outputs, float]] = [None] * len(grid)  # type: ignore[list-item]
    read_from = list(range(len(grid)))
    for run, points in sorted(shared_runs(method, grid).items()):
        read_at = tuple(settings[i].unlearn_epochs for i in points if i != run)
        outputs = twin_unlearn(ctx, problem, method, settings[run], easy, read_at, **target_inputs)
        for i in points:
            results[i], read_from[i] = outputs[settings[i].unlearn_epochs], run
    record: dict[str, Any] = {"grid": grid, "criterion": ctx.params.tuning_criterion, "scores": [], "tow": [],
                              "activation_distance": [], "margin_distance": [], "seconds": [], "read_from": read_from}
    for outputs, seconds in results:
        _, metrics = alignment_score(outputs, problem.gold_outputs, problem.labels)
        distance = margin_distance(outputs, problem.gold_outputs, problem.labels)
        record["scores"].append(point_score(ctx.params.tuning_criterion, metrics["tow"],
                                            metrics["activation_distance"], distance))
        record["tow"].append(metrics["tow"])
        record["activation_distance"].append(metrics["activation_distance"])
        record["margin_distance"].append(distance)
        record["seconds"].append(seconds)
    # A diverged point (NaN outputs) scores NaN and is never chosen over a finite one.
    finite = [s if math.isfinite(s) else -math.inf for s in record["scores"]]
    best = max(range(len(grid)), key=lambda i: (finite[i], -i))
    record["chosen"] = dict(grid[best])
    record["tuning_s"] = time.perf_counter() - start
    return record


def tuning_key(ctx: context.Context, method: str) -> str:
    """Cache key of a method's tuning: every computed field but its own knobs, the tuner's fields (which
    only the unlearned outputs may ignore: their key holds the chosen knobs), and the grid itself."""
    fields = [f for f in runner.method_key_fields(ctx.params) if f not in KNOBS[method]]
    grid = json.dumps(grid_points(method, ctx.params), sort_keys=True)
    name = runner.artefact_name(method, ctx.params)  # `tmu` at tmu_target soft is tuned as tmu_soft is
    tuner = [f for f in runner.TUNER_FIELDS if f != "tuning"]  # a tuning always runs at tuning twin
    return f"{name}-{ctx.key(fields + tuner)}-{hashlib.sha256(grid.encode()).hexdigest()[:8]}"


def tune_methods(ctx: context.Context, original: nn.Module, methods: list[str]) -> tuple[dict[str, dict], float]:
    """Tune every method in `methods` that has knobs (each cached); return the records and the shared
    cost of the twin problem: its M_t's training and, for the TMU variants, the easy/hard splits of D_tf
    and P(easy), and the margin target's reference (the features they need are TMU's one-off cost,
    reported there)."""
    tunable = [m for m in methods if m in KNOBS]
    if not tunable:
        return {}, 0.0
    twin, twin_meta = tuning_twin(ctx, original)
    shared_s = twin_meta["seconds"]
    easy = {"tmu_all_hard": torch.zeros(len(ctx.splits.twin_forget), dtype=torch.bool)}
    target_inputs: dict[str, dict[str, torch.Tensor | None]] = {}
    if any(m in tunable for m in runner.TWIN_METHODS + ("tmu_oracle", "tmu_all_hard")):
        splits, proba, easy_s = twin_easy_splits(ctx, original)
        easy.update(splits)
        shared_s += easy_s
        start = time.perf_counter()
        # what the variants read in place of the real run's P(easy) on D_f and M_o's margins on D_tf
        # (the soft and margin targets, and the calibrated step)
        inputs = {"easy_proba": proba, "reference_margins": twin_reference_margins(ctx, twin)}
        shared_s += time.perf_counter() - start
        target_inputs = {m: inputs for m in tunable if m in runner.STEP_METHODS}
    problem: list[TwinProblem] = []  # built once, and only when some method's tuning is not cached

    def build(method: str) -> tuple[dict, dict]:
        if not problem:
            problem.append(twin_problem(ctx, original))
        record = tune_method(ctx, problem[0], method, easy.get(method), **target_inputs.get(method, {}))
        return record, {"seconds": record["tuning_s"]}

    tuned = {m: ctx.cache.get_or_build("tuning", tuning_key(ctx, m), lambda m=m: build(m))[0]
             for m in dict.fromkeys(TUNED_AS.get(m, m) for m in tunable)}
    records = {m: tuned[m] if m not in TUNED_AS else dict(tuned[TUNED_AS[m]], tuned_as=TUNED_AS[m]) for m in tunable}
    return records, shared_s


def tuned_context(ctx: context.Context, record: dict | None) -> context.Context:
    """`ctx` with the knobs a tuning record chose (unchanged without a record)."""
    if record is None:
        return ctx
    return dataclasses.replace(ctx, params=validate(dataclasses.replace(ctx.params, **record["chosen"])))


def fixed_context(ctx: context.Context, method: str) -> context.Context:
    """`ctx` with `method`'s own knobs from the `fixed_knobs` table (`tuning: fixed`); a method the table
    does not list, or `fixed_knobs: none`, keeps the shared fields, and so does every knob in `pinned`.
    The controls take tmu's knobs, and `tmu` those of the target it computes (its stored name)."""
    row = fixed_table(ctx.params.fixed_knobs).get(runner.artefact_name(TUNED_AS.get(method, method), ctx.params), {})
    knobs = {k: v for k, v in row.items() if k not in ctx.params.pinned}  # an explicit value wins over the row
    if not knobs:
        return ctx
    return dataclasses.replace(ctx, params=validate(dataclasses.replace(ctx.params, **knobs)))


def ran_knobs(ctx: context.Context, method: str) -> dict[str, Any]:
    """The values of `method`'s tuning knobs in `ctx` (a method_context): what its results.json row ran
    at, recorded with it ({} for a method without knobs)."""
    return {k: getattr(ctx.params, k) for k in KNOBS.get(method, {})}


def method_context(ctx: context.Context, original: nn.Module, method: str) -> context.Context:
    """`ctx` with the knobs `method` runs at: chosen on the twin problem (`tuning: twin`, tuned once and
    cached) or read from the fixed-knobs table (`tuning: fixed`); `auto` is one of them (tuning_mode)."""
    if tuning_mode(ctx.params) == "twin":
        return tuned_context(ctx, tune_methods(ctx, original, [method])[0].get(method))
    return fixed_context(ctx, method)
