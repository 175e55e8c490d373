"""TMU's one-off once per original model (docs/method.md, "Amortised TMU"): `twin_forget: independent`,
and the library's one-off (tmu_utils/library.py, docs/api.md), which is the same computation.

With `twin_forget: matched` the twin forget set D_tf copies D_f's size and class make-up, so M_t,
M_c, the twin features and the predictor all depend on the request, and every request pays for
them again. Here D_tf is drawn from the holdout once per M_o, independently of any request: the
size of a `forget_fraction` of the members, the members' class make-up. M_t, M_c and the predictor
are then built once; a request pays only its own features (under the model it is applied to, and
M_c), the predictor's inference and the unlearning. The random scenario only: in the class
scenario TMU has no twin problem at all (`generalization.tmu_predict_easy`).

The computation is written once, on images and labels (`fit_twin`, `fit_curriculum`, `fit_on_twin`,
`raw_features`, `predict_with`); `one_off` and `request_features` put a run's context and its cache
around it, and the library a user's model and data.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core import context
from ..core.input_range import InputRange
from ..core.params import Params, make_params
from ..core.seeds import generator
from ..core.splits import SplitError, stratified_subset
from ..core.training import predict, seed_everything, train_model, true_class_margins
from . import features as feats
from .predictor import (PredictorOutput, cross_validated_accuracy, fit_predictor, make_predictor, predict_easy,
                        predict_proba)
from .twin import generalization_labels, twin_original

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


def draw_twin_forget(labels: torch.Tensor, members: torch.Tensor, holdout: torch.Tensor, forget_fraction: float,
                     seed: int) -> torch.Tensor:
    """D_tf ⊂ H drawn without looking at any request: round(forget_fraction · |M|) samples, stratified
    (`labels` indexed by `members` and `holdout`)."""
    size = int(round(forget_fraction * len(members)))
    if size > len(holdout):
        raise SplitError(f"the independent twin forget set needs {size} holdout samples but the holdout has "
                         f"{len(holdout)}: lower member_fraction (a larger holdout) or forget_fraction")
    chosen = stratified_subset(labels[holdout], size / len(holdout), generator(seed, "independent_twin_forget"))
    return holdout[chosen]


def independent_twin_forget(ctx: context.Context) -> torch.Tensor:
    """The run's request-independent D_tf."""
    return draw_twin_forget(ctx.dataset.train_y, ctx.splits.members, ctx.splits.holdout, ctx.params.forget_fraction,
                            ctx.params.seed)


def class_bank(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Positions in `labels` of the DF bank: a seeded `per_class` of every class."""
    return feats.bank_indices(torch.arange(len(labels)), labels, per_class, seed)


def _unseen(state: dict) -> torch.Tensor:
    """M_o's margins on D_tf from a saved or cached one-off (stored as `reference_margins` before their rename)."""
    return state["unseen_margins"] if "unseen_margins" in state else state["reference_margins"]


@dataclass
class OneOff:
    """What TMU builds once per M_o and every request reuses."""

    predictor: nn.Module
    curriculum: nn.Module | None  # M_c: the CF feature of every request (None when `features` has no cf)
    twin_raw: dict[str, torch.Tensor]  # raw DF/AF/CF on (M_t, D_tf): the reference of the feature scaling
    twin_easy_rate: float
    twin_cv_accuracy: float
    unseen_margins: torch.Tensor  # M_o's margins on D_tf: samples it never saw (the margin target's)
    timing: dict[str, float]  # twin_s, curriculum_s, twin_features_s, predictor_fit_s, tmu_one_off_s
    params: Params = field(default_factory=Params)  # the feature and predictor knobs it was built with
    holdout_size: int = 0  # |H| it drew D_tf from: a request larger than that has no twin to stand for it
    member_indices: torch.Tensor | None = None  # where known: which samples of a data set were members
    input_range: InputRange | None = None  # where the images live, when not [0, 1] (AF's radius and clamp)

    def save(self, path: str | Path) -> None:
        """Tensors, state dicts and plain values only: `load` reads it with torch.load(weights_only=True)."""
        torch.save({"predictor": self.predictor.state_dict(),
                    "curriculum": None if self.curriculum is None else self.curriculum.state_dict(),
                    "twin_raw": self.twin_raw, "twin_easy_rate": self.twin_easy_rate,
                    "twin_cv_accuracy": self.twin_cv_accuracy, "unseen_margins": self.unseen_margins,
                    "timing": self.timing, "params": self.params.to_dict(), "holdout_size": self.holdout_size,
                    "member_indices": self.member_indices,
                    "input_range": None if self.input_range is None else [self.input_range.low, self.input_range.high]},
                   Path(path))

    @classmethod
    def load(cls, path: str | Path, make_model: Callable[[], nn.Module] | None = None) -> "OneOff":
        """A saved one-off; `make_model()` builds M_c's architecture (needed when its features have cf)."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        params = make_params(state["params"])
        predictor = make_predictor(len(params.features))
        predictor.load_state_dict(state["predictor"])
        curriculum = None
        if state["curriculum"] is not None:
            if make_model is None:
                raise ValueError("this one-off uses the curriculum feature: give make_model to rebuild M_c")
            curriculum = make_model()
            curriculum.load_state_dict(state["curriculum"])
            curriculum.eval()
        bounds = state.get("input_range")  # absent from one-offs saved before normalised inputs were taken
        return cls(predictor.eval(), curriculum, state["twin_raw"], state["twin_easy_rate"], state["twin_cv_accuracy"],
                   _unseen(state), state["timing"], params, state["holdout_size"],
                   state["member_indices"], None if bounds is None else InputRange(*bounds))


def fit_twin(original: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Params, device: torch.device,
             seed: int) -> tuple[nn.Module, dict]:
    """M_t: `original` fine-tuned on M ∪ D_tf (`x`, `y`)."""
    model, result, _ = twin_original(original, x, y, params, device, seed)
    return model, {"seconds": result.seconds, "losses": result.losses}


def fit_curriculum(make_model: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, params: Params,
                   device: torch.device, seed: int) -> tuple[nn.Module, dict]:
    """M_c: `make_model()` trained `curriculum_epochs` with the recipe on M ∪ D_tf (`x`, `y`)."""
    seed_everything(seed)
    model = make_model()
    result = train_model(model, x, y, context.recipe(params, epochs=params.curriculum_epochs), device=device,
                         seed=seed, progress=params.progress, desc="curriculum M_c")
    return model, {"seconds": result.seconds, "losses": result.losses}


def raw_features(params: Params, model: nn.Module, curriculum: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                 bank_x: torch.Tensor, bank_y: torch.Tensor, device: torch.device,
                 names: list[str] | None = None, input_range: InputRange | None = None) -> dict[str, torch.Tensor]:
    """Raw DF/AF/CF of (x, y) under `model` and M_c, the DF bank (bank_x, bank_y) read by `model`; AF's
    radius and clamp in `input_range` (None: images in [0, 1])."""
    names = list(feats.FEATURE_NAMES) if names is None else names
    return feats.compute_features(model, curriculum, x, y, bank_x, bank_y, names, params.knn_k, params.adv_steps,
                                  params.adv_eps, device, input_range=input_range)


def fit_on_twin(original: nn.Module, twin: nn.Module, curriculum: nn.Module | None, tx: torch.Tensor,
                ty: torch.Tensor, bank_x: torch.Tensor, bank_y: torch.Tensor, params: Params, device: torch.device,
                seed: int, names: list[str] | None = None, input_range: InputRange | None = None) -> tuple[dict, dict]:
    """The twin features of D_tf (`tx`, `ty`) under M_t and M_c, their labels (is M_o right?), M_o's
    margins there, and the predictor fitted on them: (payload, meta)."""
    start = time.perf_counter()
    twin_raw = raw_features(params, twin, curriculum, tx, ty, bank_x, bank_y, device, names, input_range)
    labels = generalization_labels(original, tx, ty, device)
    unseen_margins = true_class_margins(predict(original, tx, device), ty)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    x_twin = feats.feature_matrix(twin_raw, twin_raw, params.features, params.feature_scaling)[0]
    predictor = fit_predictor(x_twin, labels, params.predictor_epochs, params.predictor_lr, seed)
    fit_s = time.perf_counter() - start
    cv = cross_validated_accuracy(x_twin, labels, params.cv_folds, params.predictor_epochs, params.predictor_lr,
                                  seed)  # a report, not part of the cost
    payload = {"predictor": predictor.state_dict(), "twin_raw": twin_raw, "twin_labels": labels,
               "unseen_margins": unseen_margins}
    return payload, {"twin_features_s": features_s, "predictor_fit_s": fit_s, "twin_cv_accuracy": cv}


def assemble(payload: dict, meta: dict, curriculum: nn.Module | None, twin_meta: dict, cur_meta: dict,
             params: Params, holdout_size: int) -> OneOff:
    """The OneOff of a fitted predictor's payload and the timings of its parts."""
    predictor = make_predictor(len(params.features))
    predictor.load_state_dict(payload["predictor"])
    timing = {"twin_s": twin_meta["seconds"], "curriculum_s": cur_meta["seconds"],
              "twin_features_s": meta["twin_features_s"], "predictor_fit_s": meta["predictor_fit_s"]}
    timing["tmu_one_off_s"] = sum(timing.values())
    return OneOff(predictor.eval(), curriculum, payload["twin_raw"], payload["twin_labels"].float().mean().item(),
                  meta["twin_cv_accuracy"], _unseen(payload), timing, params, holdout_size)


def one_off(ctx: context.Context, original: nn.Module) -> OneOff:
    """M_t, M_c, the twin features and labels, and the fitted predictor: cached, built once per M_o."""
    p, d = ctx.params, ctx.dataset
    twin_forget = independent_twin_forget(ctx)
    idx = torch.cat([ctx.splits.members, twin_forget])
    twin_set = d.train_x[idx], d.train_y[idx]
    twin, twin_meta = context.cached_model(ctx, "independent_twin", INDEPENDENT_TWIN_FIELDS,
                                           lambda: fit_twin(original, *twin_set, p, ctx.device, ctx.seeds["twin"]))
    curriculum, cur_meta = context.cached_model(
        ctx, "independent_curriculum", INDEPENDENT_CURRICULUM_FIELDS,
        lambda: fit_curriculum(lambda: context.new_model(ctx), *twin_set, p, ctx.device, ctx.seeds["curriculum"]))
    # In the twin problem every member is retained, so the DF bank comes from M.
    bank = feats.bank_indices(ctx.splits.members, d.train_y, p.bank_per_class, p.seed)
    payload, meta = ctx.cache.get_or_build(
        "independent_predictor", ctx.key(ONE_OFF_FIELDS),
        lambda: fit_on_twin(original, twin, curriculum, d.train_x[twin_forget], d.train_y[twin_forget], d.train_x[bank],
                            d.train_y[bank], p, ctx.device, ctx.seeds["unlearning"]))
    return assemble(payload, meta, curriculum, twin_meta, cur_meta, p, len(ctx.splits.holdout))


def request_features(ctx: context.Context, one: OneOff, model: nn.Module, request: torch.Tensor,
                     retain: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """Raw DF/AF/CF of a request's samples under `model` (the model the request is applied to) and M_c,
    with the DF bank drawn from what is still retained; and the seconds it took."""
    start = time.perf_counter()
    d, p = ctx.dataset, ctx.params
    bank = feats.bank_indices(retain, d.train_y, p.bank_per_class, p.seed)
    raw = raw_features(p, model, one.curriculum, d.train_x[request], d.train_y[request], d.train_x[bank],
                       d.train_y[bank], ctx.device)
    return raw, time.perf_counter() - start


def predict_with(one: OneOff, raw: dict[str, torch.Tensor], params: Params | None = None) -> PredictorOutput:
    """The fitted predictor's easy/hard call on one request (its `seconds`: inference only), with the
    feature and threshold knobs of `params` (the one-off's own by default)."""
    p = one.params if params is None else params
    start = time.perf_counter()
    x_request = feats.feature_matrix(one.twin_raw, raw, p.features, p.feature_scaling)[1]
    proba = predict_proba(one.predictor, x_request)
    easy, threshold = predict_easy(proba, p.threshold, one.twin_easy_rate)
    return PredictorOutput(proba, easy, threshold, one.twin_easy_rate, one.twin_cv_accuracy,
                           time.perf_counter() - start, one.unseen_margins)


def predict_request(ctx: context.Context, one: OneOff, raw: dict[str, torch.Tensor]) -> PredictorOutput:
    """`predict_with` at the run's knobs."""
    return predict_with(one, raw, ctx.params)


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
