"""Scoring against the gold model: the references every evaluation compares with, each method's
outputs with the easy/hard split it is handed, and the per-method metrics (docs/method.md).

This is the only side of a run that reads M_g and M_g' (`references`) or the gold labels
(`tmu_oracle`); the stages in pipeline.py never do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import pipeline
from .generalization import PredictorOutput
from .metrics import Outputs, alignment_metrics
from .mia import loss_attack, mia_gap, per_sample_loss
from .unlearning.tmu_targets import target_variant


@dataclass
class References:
    """The models every evaluation compares against, and what the gold model says about D_f."""

    original: nn.Module
    gold_outputs: Outputs
    gold2_outputs: Outputs
    true_easy: torch.Tensor  # bool per D_f sample: the gold model classifies it correctly
    timing: dict[str, float]


def references(ctx: pipeline.Context) -> References:
    """M_o, M_g and M_g' (trained or fetched) and the gold generalization labels of D_f."""
    original, o_meta = pipeline.original_model(ctx)
    gold, g_meta = pipeline.gold_model(ctx, 0)
    gold2, g2_meta = pipeline.gold_model(ctx, 1)
    gold_out = pipeline.model_outputs(ctx, gold)
    true_easy = gold_out.forget.argmax(1) == ctx.subset("forget")[1]
    timing = {"original_s": o_meta["seconds"], "gold_s": g_meta["seconds"], "gold2_s": g2_meta["seconds"]}
    return References(original, gold_out, pipeline.model_outputs(ctx, gold2), true_easy, timing)


def method_outputs(ctx: pipeline.Context, refs: References, method: str,
                   pred: PredictorOutput | None = None) -> tuple[Outputs, float]:
    """Outputs and unlearning time of one method; TMU variants get their easy/hard split here."""
    if method in pipeline.TWIN_METHODS and pred is None:
        raise ValueError(f"method {method!r} needs the predictor's output (pred)")
    from .tuning import method_context  # its knobs: twin-tuned (cached: tuned once) or the fixed table's

    ctx = method_context(ctx, refs.original, method)
    # every twin-based variant gets the predictor's split; the controls get theirs
    easy = {m: (lambda: pred.easy) for m in pipeline.TWIN_METHODS}
    easy.update(tmu_random_rank=lambda: pipeline.random_rank(ctx, pred.easy), tmu_oracle=lambda: refs.true_easy,
                tmu_all_hard=lambda: torch.zeros_like(refs.true_easy))
    target_inputs = {}
    if target_variant(method, ctx.params.tmu_target) != "hard":  # soft and margin read P(easy) and the reference
        target_inputs = {"easy_proba": pred.proba, "reference_margins": pred.reference_margins}
    return pipeline.unlearned_outputs(ctx, method, refs.original, easy[method]() if method in easy else None,
                                      **target_inputs)


def score(ctx: pipeline.Context, u: Outputs, g: Outputs, gold_member_rate: float) -> dict[str, float]:
    """Every per-method metric except timing; `mia_gap` is relative to the gold model's member rate
    (`gold_member_rate`, from `member_rate(ctx, g)`)."""
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    metrics = alignment_metrics(u, g, labels)
    metrics["mia_member_rate"] = member_rate(ctx, u)
    metrics["mia_gap"] = mia_gap(metrics["mia_member_rate"], gold_member_rate)
    return metrics


def member_rate(ctx: pipeline.Context, outputs: Outputs) -> float:
    """The membership-inference attack's member rate on D_f for one model's outputs."""
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    return loss_attack(per_sample_loss(outputs.retain, labels["retain"]), per_sample_loss(outputs.test, labels["test"]),
                       per_sample_loss(outputs.forget, labels["forget"]), seed=ctx.params.seed,
                       max_per_side=ctx.params.mia_max_per_side)
