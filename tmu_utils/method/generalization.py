"""The predicted generalization labels of D_f (docs/method.md: the predictor): the MLP fitted on the
twin problem's features and labels, and TMU's whole one-off preparation around it. Gold-free, like
the stages in method/stages.py it builds on.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..core import context
from ..core.training import predict, true_class_margins
from . import features as feats
from . import stages
from .amortised import amortised_predict_easy
from .predictor import PredictorOutput, cross_validated_accuracy, fit_predictor, predict_easy, predict_proba


def predict_generalization(ctx: context.Context, raw: dict) -> PredictorOutput:
    """Fit the MLP on the twin features and labels, and label the forget set easy or hard."""
    p = ctx.params
    start = time.perf_counter()
    x_twin, x_forget = feats.feature_matrix(raw["twin"], raw["forget"], p.features, p.feature_scaling)
    g = raw["twin_labels"]
    model = fit_predictor(x_twin, g, p.predictor_epochs, p.predictor_lr, ctx.seeds["unlearning"])
    proba = predict_proba(model, x_forget)
    twin_easy_rate = g.float().mean().item()
    easy, threshold = predict_easy(proba, p.threshold, twin_easy_rate)
    seconds = time.perf_counter() - start  # the CV below is a report, not part of the method's cost
    cv = cross_validated_accuracy(x_twin, g, p.cv_folds, p.predictor_epochs, p.predictor_lr, ctx.seeds["unlearning"])
    return PredictorOutput(proba, easy, threshold, twin_easy_rate, cv, seconds)


def tmu_predict_easy(ctx: context.Context, original: nn.Module) -> tuple[PredictorOutput, dict[str, float]]:
    """TMU's one-off preparation, without the gold model: twin, curriculum, features, predictor."""
    if ctx.params.forget_scenario == "class":
        # Without any member of its class the gold model gets (almost) none of D_f right,
        # so every sample is hard and TMU relabels all of D_f. The twin problem could not say so
        # (M_o saw the class, so it gets most of D_tf right), and DF has no same-class bank.
        n = len(ctx.splits.forget)
        nothing_easy = PredictorOutput(torch.zeros(n), torch.zeros(n, dtype=torch.bool), float("inf"),
                                       float("nan"), float("nan"), 0.0)
        return nothing_easy, {"twin_s": 0.0, "curriculum_s": 0.0, "features_s": 0.0, "predictor_s": 0.0,
                              "tmu_one_off_s": 0.0}
    if ctx.params.twin_forget == "independent":  # built once per M_o, whatever the request (docs/method.md)
        return amortised_predict_easy(ctx, original)
    twin, twin_meta = stages.twin_model(ctx, original)
    curriculum, cur_meta = stages.curriculum_model(ctx)
    raw, feat_meta = stages.generalization_features(ctx, original, twin, curriculum)
    pred = predict_generalization(ctx, raw)
    start = time.perf_counter()
    tx, ty = ctx.subset("twin_forget")
    pred.unseen_margins = true_class_margins(predict(original, tx, ctx.device), ty)
    pred.seconds += time.perf_counter() - start
    timing = {"twin_s": twin_meta["seconds"], "curriculum_s": cur_meta["seconds"],
              "features_s": feat_meta["seconds"], "predictor_s": pred.seconds}
    timing["tmu_one_off_s"] = sum(timing.values())
    return pred, timing
