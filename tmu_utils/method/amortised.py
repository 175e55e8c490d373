"""TMU's one-off once per original model (docs/method.md, "Amortised TMU"): `twin_forget: independent`.

With `twin_forget: matched` the twin forget set D_tf copies D_f's size and class make-up, so M_t,
M_c, the twin features and the predictor all depend on the request, and every request pays for
them again. Here D_tf is drawn from the holdout once per M_o, independently of any request: the
size of a `forget_fraction` of the members, the members' class make-up. M_t, M_c and the predictor
are then built once; a request pays only its own features (under the model it is applied to, and
M_c), the predictor's inference and the unlearning. The random scenario only: in the class
scenario TMU has no twin problem at all (`generalization.tmu_predict_easy`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..core import context
from ..core.splits import SplitError, _generator, stratified_subset
from ..core.training import predict, true_class_margins
from . import features as feats
from .predictor import (PredictorOutput, cross_validated_accuracy, fit_predictor, make_predictor, predict_easy,
                        predict_proba)
from .twin import generalization_labels, twin_original, twin_training_set

# The request-independent twin depends on the members and on how large a twin forget set to draw,
# never on the forget request: no field of the forget scenario but `forget_fraction` (its size).
TWIN_SIZE_FIELDS = context.MEMBER_FIELDS + ("forget_fraction",)
INDEPENDENT_TWIN_FIELDS = TWIN_SIZE_FIELDS + context.RECIPE_FIELDS + ("twin_epochs", "twin_lr")
INDEPENDENT_CURRICULUM_FIELDS = TWIN_SIZE_FIELDS + context.RECIPE_FIELDS + ("curriculum_epochs",)
ONE_OFF_FIELDS = INDEPENDENT_TWIN_FIELDS + ("curriculum_epochs", "knn_k", "bank_per_class", "adv_steps", "adv_eps",
                                            "features", "feature_scaling", "predictor_epochs", "predictor_lr",
                                            "cv_folds")
# A request's features: M_o (or the deployed model), the request itself, M_c and the feature knobs.
REQUEST_FEATURE_FIELDS = context.FORGET_FIELDS + context.RECIPE_FIELDS + (
    "curriculum_epochs", "knn_k", "bank_per_class", "adv_steps", "adv_eps")
TWIN_STREAM = 5  # splits.py draws M, H, D_f, D_tf and the test subset from streams 0-4


def independent_twin_forget(ctx: context.Context) -> torch.Tensor:
    """D_tf ⊂ H drawn without looking at any request: round(forget_fraction · |M|) samples, stratified."""
    holdout, members = ctx.splits.holdout, ctx.splits.members
    size = int(round(ctx.params.forget_fraction * len(members)))
    if size > len(holdout):
        raise SplitError(f"the independent twin forget set needs {size} holdout samples but the holdout has "
                         f"{len(holdout)}: lower member_fraction (a larger holdout) or forget_fraction")
    chosen = stratified_subset(ctx.dataset.train_y[holdout], size / len(holdout), _generator(ctx.params.seed, TWIN_STREAM))
    return holdout[chosen]


@dataclass
class OneOff:
    """What TMU builds once per M_o and every request reuses."""

    predictor: nn.Module
    curriculum: nn.Module  # M_c: the CF feature of every request
    twin_raw: dict[str, torch.Tensor]  # raw DF/AF/CF on (M_t, D_tf): the reference of the feature scaling
    twin_easy_rate: float
    twin_cv_accuracy: float
    reference_margins: torch.Tensor  # M_o's margins on D_tf (the margin target's reference)
    timing: dict[str, float]  # twin_s, curriculum_s, twin_features_s, predictor_fit_s, tmu_one_off_s


def _bank(ctx: context.Context, retain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bank = feats.bank_indices(retain, ctx.dataset.train_y, ctx.params.bank_per_class, ctx.params.seed)
    return ctx.dataset.train_x[bank], ctx.dataset.train_y[bank]


def _features(ctx: context.Context, model: nn.Module, curriculum: nn.Module, idx: torch.Tensor,
              retain: torch.Tensor) -> dict[str, torch.Tensor]:
    p = ctx.params
    bank_x, bank_y = _bank(ctx, retain)
    return feats.compute_features(model, curriculum, ctx.dataset.train_x[idx], ctx.dataset.train_y[idx], bank_x, bank_y,
                                  list(feats.FEATURE_NAMES), p.knn_k, p.adv_steps, p.adv_eps, ctx.device)


def one_off(ctx: context.Context, original: nn.Module) -> OneOff:
    """M_t, M_c, the twin features and labels, and the fitted predictor: cached, built once per M_o."""
    p = ctx.params
    twin_forget = independent_twin_forget(ctx)
    idx = twin_training_set(ctx.splits.members, twin_forget)
    twin_set = ctx.dataset.train_x[idx], ctx.dataset.train_y[idx]

    def build_twin():
        model, result, _ = twin_original(original, *twin_set, p, ctx.device, ctx.seeds["twin"])
        return model, {"seconds": result.seconds, "losses": result.losses}

    twin, twin_meta = context.cached_model(ctx, "independent_twin", INDEPENDENT_TWIN_FIELDS, build_twin)
    curriculum, cur_meta = context.cached_model(
        ctx, "independent_curriculum", INDEPENDENT_CURRICULUM_FIELDS,
        lambda: context.train_from_scratch(ctx, twin_set, ctx.seeds["curriculum"], "curriculum M_c",
                                             epochs=p.curriculum_epochs))

    def build_predictor():
        start = time.perf_counter()
        # In the twin problem every member is retained, so the DF bank comes from M.
        twin_raw = _features(ctx, twin, curriculum, twin_forget, ctx.splits.members)
        tx, ty = ctx.dataset.train_x[twin_forget], ctx.dataset.train_y[twin_forget]
        labels = generalization_labels(original, tx, ty, ctx.device)
        reference_margins = true_class_margins(predict(original, tx, ctx.device), ty)
        features_s = time.perf_counter() - start
        start = time.perf_counter()
        x_twin = feats.feature_matrix(twin_raw, twin_raw, p.features, p.feature_scaling)[0]
        predictor = fit_predictor(x_twin, labels, p.predictor_epochs, p.predictor_lr, ctx.seeds["unlearning"])
        fit_s = time.perf_counter() - start
        cv = cross_validated_accuracy(x_twin, labels, p.cv_folds, p.predictor_epochs, p.predictor_lr,
                                      ctx.seeds["unlearning"])  # a report, not part of the cost
        payload = {"predictor": predictor.state_dict(), "twin_raw": twin_raw, "twin_labels": labels,
                   "reference_margins": reference_margins}
        return payload, {"twin_features_s": features_s, "predictor_fit_s": fit_s, "twin_cv_accuracy": cv}

    payload, meta = ctx.cache.get_or_build("independent_predictor", ctx.key(ONE_OFF_FIELDS), build_predictor)
    predictor = make_predictor(len(p.features))
    predictor.load_state_dict(payload["predictor"])
    timing = {"twin_s": twin_meta["seconds"], "curriculum_s": cur_meta["seconds"],
              "twin_features_s": meta["twin_features_s"], "predictor_fit_s": meta["predictor_fit_s"]}
    timing["tmu_one_off_s"] = sum(timing.values())
    return OneOff(predictor.eval(), curriculum, payload["twin_raw"], payload["twin_labels"].float().mean().item(),
                  meta["twin_cv_accuracy"], payload["reference_margins"], timing)


def request_features(ctx: context.Context, one: OneOff, model: nn.Module, request: torch.Tensor,
                     retain: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """Raw DF/AF/CF of a request's samples under `model` (the model the request is applied to) and M_c,
    with the DF bank drawn from what is still retained; and the seconds it took."""
    start = time.perf_counter()
    raw = _features(ctx, model, one.curriculum, request, retain)
    return raw, time.perf_counter() - start


def predict_request(ctx: context.Context, one: OneOff, raw: dict[str, torch.Tensor]) -> PredictorOutput:
    """The fitted predictor's easy/hard call on one request (its `seconds`: inference only)."""
    p = ctx.params
    start = time.perf_counter()
    x_request = feats.feature_matrix(one.twin_raw, raw, p.features, p.feature_scaling)[1]
    proba = predict_proba(one.predictor, x_request)
    easy, threshold = predict_easy(proba, p.threshold, one.twin_easy_rate)
    return PredictorOutput(proba, easy, threshold, one.twin_easy_rate, one.twin_cv_accuracy,
                                    time.perf_counter() - start, one.reference_margins)


def amortised_predict_easy(ctx: context.Context, original: nn.Module) -> tuple[PredictorOutput, dict[str, float]]:
    """`generalization.tmu_predict_easy` with `twin_forget: independent`: the one-off, then D_f as one request.

    The timing has the matched pipeline's keys (features_s and predictor_s add the request's part to
    the one-off's) plus `tmu_per_request_s`, what a further request against the same M_o would cost
    before its unlearning."""
    one = one_off(ctx, original)

    def build():
        raw, seconds = request_features(ctx, one, original, ctx.splits.forget, ctx.splits.retain)
        return raw, {"seconds": seconds}

    raw, meta = ctx.cache.get_or_build("request_features", ctx.key(REQUEST_FEATURE_FIELDS), build)
    pred = predict_request(ctx, one, raw)
    t = one.timing
    timing = {"twin_s": t["twin_s"], "curriculum_s": t["curriculum_s"],
              "features_s": t["twin_features_s"] + meta["seconds"], "predictor_s": t["predictor_fit_s"] + pred.seconds}
    timing["tmu_one_off_s"] = sum(timing.values())
    timing["tmu_per_request_s"] = meta["seconds"] + pred.seconds
    return pred, timing
