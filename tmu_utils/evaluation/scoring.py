"""Scoring against the gold model: the references every evaluation compares with (M_o, M_g, M_g' and
the gold generalization labels of D_f) and the per-method metrics (docs/method.md).

This is the only side of a run that reads M_g and M_g' (`references`); the method's stages
(method/, unlearning/) never do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core import context
from ..core.context import Outputs
from .metrics import alignment_metrics
from .mia import loss_attack, mia_gap, per_sample_loss


@dataclass
class References:
    """The models every evaluation compares against, and what the gold model says about D_f."""

    original: nn.Module
    gold_outputs: Outputs
    gold2_outputs: Outputs
    true_easy: torch.Tensor  # bool per D_f sample: the gold model classifies it correctly
    timing: dict[str, float]


def references(ctx: context.Context) -> References:
    """M_o, M_g and M_g' (trained or fetched) and the gold generalization labels of D_f."""
    original, o_meta = context.original_model(ctx)
    gold, g_meta = context.gold_model(ctx, 0)
    gold2, g2_meta = context.gold_model(ctx, 1)
    gold_out = context.model_outputs(ctx, gold)
    true_easy = gold_out.forget.argmax(1) == ctx.subset("forget")[1]
    timing = {"original_s": o_meta["seconds"], "gold_s": g_meta["seconds"], "gold2_s": g2_meta["seconds"]}
    return References(original, gold_out, context.model_outputs(ctx, gold2), true_easy, timing)


def score(ctx: context.Context, u: Outputs, g: Outputs, gold_member_rate: float) -> dict[str, float]:
    """Every per-method metric except timing; `mia_gap` is relative to the gold model's member rate
    (`gold_member_rate`, from `member_rate(ctx, g)`)."""
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    metrics = alignment_metrics(u, g, labels)
    metrics["mia_member_rate"] = member_rate(ctx, u)
    metrics["mia_gap"] = mia_gap(metrics["mia_member_rate"], gold_member_rate)
    return metrics


def member_rate(ctx: context.Context, outputs: Outputs) -> float:
    """The membership-inference attack's member rate on D_f for one model's outputs."""
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    return loss_attack(per_sample_loss(outputs.retain, labels["retain"]), per_sample_loss(outputs.test, labels["test"]),
                       per_sample_loss(outputs.forget, labels["forget"]), seed=ctx.params.seed,
                       max_per_side=ctx.params.mia_max_per_side)
