"""Gold-free, equal-budget tuning of every method on the twin problem (docs/tuning.md).

The twin problem is an unlearning problem whose answer is known without the gold model: the
original is M_t, the forget set D_tf, the retain set the members M, and its gold model is M_o,
which never saw D_tf. Each method's knobs are chosen there, per run, on any data set:
- every method gets the same number of grid points (`tune_budget`), taken from its declared
  candidate grid (grids.py);
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

from ...core import context
from ...core.context import Outputs
from ...core.params import Params
from ...core.training import predict, seed_everything, true_class_margins
from ...evaluation.metrics import alignment_metrics
from ...unlearning import METHODS, UnlearnTask, runner
from ...unlearning.common import EPOCH_PREFIX
from ...core.variants import is_tmu, row
from .grids import KNOBS, grid_points, tuned_as
from .problem import TwinProblem, tuning_twin, twin_easy_splits, twin_problem, twin_unseen_margins


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
    """Run the registered `method` with `params` (a row's, at one grid point) on the twin problem: its outputs on the scoring sets and its wall time,
    keyed by the epochs run. Besides `params.unlearn_epochs`, each epoch count in `read_at` (methods in
    EPOCH_PREFIX only) is read off this run after that epoch: what a run stopped there would give, its
    time the unlearning up to that epoch (the reading itself is not counted).
    `target_inputs` are the TMU targets' `easy_proba` and `unseen_margins`, when it reads them."""
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


def tune_method(ctx: context.Context, problem: TwinProblem, name: str, easy: torch.Tensor | None,
                **target_inputs: torch.Tensor | None) -> dict:
    """Score every grid point of the row `name` (a control: TMU's, grids.tuned_as) on the twin problem;
    choose the best (first on ties). `read_from[i]`: the grid point whose run point i was read off (i
    itself unless shared_runs)."""
    start = time.perf_counter()
    r = tuned_as(row(ctx.params, name))
    grid = grid_points(r.method, r.params)
    settings = [dataclasses.replace(r.params, **point) for point in grid]
    results: list[tuple[Outputs, float]] = [None] * len(grid)  # type: ignore[list-item]
    read_from = list(range(len(grid)))
    for run, points in sorted(shared_runs(r.method, grid).items()):
        read_at = tuple(settings[i].unlearn_epochs for i in points if i != run)
        outputs = twin_unlearn(ctx, problem, r.method, settings[run], easy, read_at, **target_inputs)
        for i in points:
            results[i], read_from[i] = outputs[settings[i].unlearn_epochs], run
    record: dict[str, Any] = {"grid": grid, "criterion": r.params.tuning_criterion, "scores": [], "tow": [],
                              "activation_distance": [], "margin_distance": [], "seconds": [], "read_from": read_from}
    for outputs, seconds in results:
        _, metrics = alignment_score(outputs, problem.gold_outputs, problem.labels)
        distance = margin_distance(outputs, problem.gold_outputs, problem.labels)
        record["scores"].append(point_score(r.params.tuning_criterion, metrics["tow"],
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


def tuning_key(ctx: context.Context, name: str) -> str:
    """Cache key of the row `name`'s tuning (a control's is TMU's, grids.tuned_as): every computed field of
    its params but its own knobs, the tuner's fields (which only the unlearned outputs may ignore: their
    key holds the chosen knobs), and the grid. Rows that compute the same thing (one stored name,
    runner.stored_name) share one tuning."""
    r = tuned_as(row(ctx.params, name))
    fields = [f for f in runner.method_key_fields(r.params) if f not in KNOBS[r.method]]
    grid = json.dumps(grid_points(r.method, r.params), sort_keys=True)
    tuner = [f for f in runner.TUNER_FIELDS if f != "tuning"]  # a tuning always runs at tuning twin
    key = dataclasses.replace(ctx, params=r.params).key(fields + tuner)
    # "-holdout": scored on the holdout (problem.twin_test); tunings cached before it scored on the test split
    return f"{runner.stored_name(r)}-{key}-{hashlib.sha256(grid.encode()).hexdigest()[:8]}-holdout"


def tune_methods(ctx: context.Context, original: nn.Module, names: list[str]) -> tuple[dict[str, dict], float]:
    """Tune every row in `names` whose method has knobs (each cached); return the records and the shared
    cost of the twin problem: its M_t's training and, for TMU's rows, the easy/hard split of D_tf and
    P(easy), and M_t's margins on samples it never saw (the features they need are TMU's one-off cost,
    reported there). A control is tuned as TMU with the predictor's split (grids.tuned_as)."""
    rows = {n: tuned_as(row(ctx.params, n)) for n in names}
    rows = {n: r for n, r in rows.items() if r.method in KNOBS}
    if not rows:
        return {}, 0.0
    twin, twin_meta = tuning_twin(ctx, original)
    shared_s = twin_meta["seconds"]
    easy: torch.Tensor | None = None
    inputs: dict[str, torch.Tensor | None] = {}
    if any(is_tmu(r) for r in rows.values()):
        splits, proba, easy_s = twin_easy_splits(ctx, original)
        easy = splits["predictor"]
        shared_s += easy_s
        start = time.perf_counter()
        # what TMU reads in place of the real run's P(easy) on D_f and M_o's margins on D_tf (the soft and
        # margin targets, and the calibrated step)
        inputs = {"easy_proba": proba, "unseen_margins": twin_unseen_margins(ctx, twin)}
        shared_s += time.perf_counter() - start
    problem: list[TwinProblem] = []  # built once, and only when some row's tuning is not cached

    def build(name: str) -> tuple[dict, dict]:
        if not problem:
            problem.append(twin_problem(ctx, original))
        tmu = is_tmu(rows[name])
        record = tune_method(ctx, problem[0], name, easy if tmu else None, **(inputs if tmu else {}))
        return record, {"seconds": record["tuning_s"]}

    keys = {n: tuning_key(ctx, n) for n in rows}
    tuned = {k: ctx.cache.get_or_build("tuning", k, lambda n=n: build(n))[0]
             for k, n in {keys[n]: n for n in rows}.items()}
    records = {}
    for n, r in rows.items():
        own = row(ctx.params, n)
        records[n] = tuned[keys[n]] if own.params.tmu_split == r.params.tmu_split else dict(
            tuned[keys[n]], tuned_as=runner.stored_name(r))
    return records, shared_s
