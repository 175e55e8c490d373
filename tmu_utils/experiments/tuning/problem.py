"""The twin problem as the tuner poses it (docs/tuning.md): original M_t, forget set D_tf, retain set
the members M, gold model M_o, which never saw D_tf; and what TMU's rows are handed on it in
place of the real run's inputs: the easy/hard split its predictor makes for samples it never
trained on (out-of-fold), the out-of-fold P(easy), and M_t's margins on holdout samples it never
saw. Nothing here touches M_g or M_g'.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ...core import context
from ...core.context import Outputs
from ...core.seeds import generator
from ...core.training import predict, true_class_margins
from ...method import features as feats
from ...method import stages
from ...method.predictor import fit_predictor, predict_easy, predict_proba
from ...unlearning import runner

# Members and test images each grid point is scored on (and all of D_tf): an accuracy's standard
# error stays below 1.1 pp, the same images score every point, and scoring stays cheap.
TWIN_EVAL_SAMPLES = 2000


@dataclass
class TwinProblem:
    """The twin unlearning problem: original M_t, forget set D_tf, retain set M, gold M_o."""

    original: nn.Module  # M_t
    forget_x: torch.Tensor  # D_tf
    forget_y: torch.Tensor
    retain_x: torch.Tensor  # M
    retain_y: torch.Tensor
    eval_x: dict[str, torch.Tensor]  # forget (D_tf), retain (a subsample of M), test (a subsample)
    labels: dict[str, torch.Tensor]
    gold_outputs: Outputs  # M_o's logits on eval_x


def _subsample(n: int, seed: int, stream: str) -> torch.Tensor:
    return torch.randperm(n, generator=generator(seed, stream))[:TWIN_EVAL_SAMPLES].sort().values


def tuning_twin(ctx: context.Context, original: nn.Module) -> tuple[nn.Module, dict]:
    """The twin problem's original: M_t matched to M_o's memorisation (twin_match `members`), trained from
    scratch on M ∪ D_tf (`scratch`), or the predictor's M_t (`none`)."""
    if ctx.params.twin_match == "scratch":
        return stages.scratch_twin(ctx)
    return stages.twin_model(ctx, original, matched=ctx.params.twin_match == "members")


def twin_test(ctx: context.Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The twin problem's unseen samples: the holdout without D_tf, which neither M_o nor M_t trained on.
    Never the real test split, so no test image reaches a choice of knobs."""
    holdout = ctx.splits.holdout[~torch.isin(ctx.splits.holdout, ctx.splits.twin_forget)]
    if len(holdout) == 0:
        raise ValueError("the twin problem needs holdout samples outside the twin forget set to score on; "
                         "the whole holdout is D_tf: lower forget_fraction or raise the holdout's share")
    return ctx.dataset.train_x[holdout], ctx.dataset.train_y[holdout]


def twin_problem(ctx: context.Context, original: nn.Module) -> TwinProblem:
    """The twin problem of this run, with M_o's outputs on its scoring sets."""
    twin, _ = tuning_twin(ctx, original)
    forget_x, forget_y = ctx.subset("twin_forget")
    retain_x, retain_y = ctx.subset("members")
    test_x, test_y = twin_test(ctx)
    r, t = _subsample(len(retain_y), ctx.params.seed, "twin_eval/retain"), _subsample(len(test_y), ctx.params.seed, "twin_eval/test")
    eval_x = {"forget": forget_x, "retain": retain_x[r], "test": test_x[t]}
    labels = {"forget": forget_y, "retain": retain_y[r], "test": test_y[t]}
    gold = Outputs(*(predict(original, eval_x[s], ctx.device) for s in ("forget", "retain", "test")))
    return TwinProblem(twin, forget_x, forget_y, retain_x, retain_y, eval_x, labels, gold)


def _rows(raw: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: values[idx] for name, values in raw.items()}


def out_of_fold_easy(ctx: context.Context, raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """TMU's easy/hard split of D_tf and P(easy), each fold labelled by a predictor fitted on the other
    folds, with the real run's scaling and threshold rule (rate_match: the training folds' easy rate).

    The folds are those of the reported twin CV accuracy (same seed)."""
    p = ctx.params
    g = raw["twin_labels"]
    order = torch.randperm(len(g), generator=torch.Generator().manual_seed(ctx.seeds["unlearning"]))
    easy = torch.zeros(len(g), dtype=torch.bool)
    proba = torch.zeros(len(g))
    for fold in order.chunk(p.cv_folds):
        train = order[~torch.isin(order, fold)]
        x_train, x_fold = feats.feature_matrix(_rows(raw["twin"], train), _rows(raw["twin"], fold), p.features,
                                               p.feature_scaling)
        model = fit_predictor(x_train, g[train], p.predictor_epochs, p.predictor_lr, ctx.seeds["unlearning"])
        proba[fold] = predict_proba(model, x_fold)
        easy[fold], _ = predict_easy(proba[fold], p.threshold, g[train].float().mean().item())
    return easy, proba


# What fixes the easy/hard splits of D_tf: the twin features, the predictor and its threshold rule.
EASY_FIELDS = stages.FEATURE_FIELDS + ("features", "feature_scaling", "predictor_epochs", "predictor_lr",
                                         "threshold", "cv_folds")


def twin_easy_splits(ctx: context.Context,
                     original: nn.Module) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
    """The easy/hard split of D_tf at each `tmu_split`, the out-of-fold P(easy) (cached), and the seconds
    they took."""
    def build():
        if ctx.params.forget_scenario == "class":  # the real run's rule: every forget sample is hard
            nothing_easy = torch.zeros(len(ctx.splits.twin_forget), dtype=torch.bool)
            return {"predicted": nothing_easy, "labels": nothing_easy, "proba": nothing_easy.float()}, {"seconds": 0.0}
        twin, _ = stages.twin_model(ctx, original)
        curriculum, _ = stages.curriculum_model(ctx)
        raw, _ = stages.generalization_features(ctx, original, twin, curriculum)
        start = time.perf_counter()
        predicted, proba = out_of_fold_easy(ctx, raw)
        return ({"predicted": predicted, "labels": raw["twin_labels"], "proba": proba},
                {"seconds": time.perf_counter() - start})

    payload, meta = ctx.cache.get_or_build("twin_easy", ctx.key(EASY_FIELDS), build)
    if "proba" not in payload:  # stored before the target variants needed P(easy): the same fits, redone
        payload, meta = build()
        ctx.cache.save("twin_easy", ctx.key(EASY_FIELDS), payload, meta)
    predicted = payload["predicted"]
    # Only the oracle, an upper bound, is handed the twin labels themselves.
    splits = {"predictor": predicted, "gold": payload["labels"], "random": runner.random_rank(ctx, predicted),
              "none": torch.zeros_like(predicted)}
    return splits, payload["proba"], meta["seconds"]


def twin_unseen_indices(ctx: context.Context) -> torch.Tensor:
    """Training-set indices of the samples whose margins under M_t are the twin margin target's reference.

    In the real run the reference is M_o's margins on D_tf; on the twin problem M_o is the gold model,
    so it must not be used. M_t was fine-tuned on M ∪ D_tf, so the samples it never saw are the holdout
    outside D_tf: per class as many as D_tf has (seeded), or all there are where fewer are left (then
    the reference is smaller than D_tf, and its quantiles are interpolated).
    """
    labels = ctx.dataset.train_y
    unseen = ctx.splits.holdout[~torch.isin(ctx.splits.holdout, ctx.splits.twin_forget)]
    draws = generator(ctx.params.seed, "twin_unseen")
    wanted = torch.bincount(labels[ctx.splits.twin_forget], minlength=ctx.dataset.num_classes)
    chosen = []
    for c in range(ctx.dataset.num_classes):
        pool = unseen[labels[unseen] == c]
        chosen.append(pool[torch.randperm(len(pool), generator=draws)[: int(wanted[c])]])
    return torch.cat(chosen).sort().values


def twin_unseen_margins(ctx: context.Context, twin: nn.Module) -> torch.Tensor | None:
    """M_t's margins on `twin_unseen_indices`; None in the class scenario, which has no twin
    problem (the margin target then relabels all of D_tf, as the real run does D_f)."""
    if ctx.params.forget_scenario == "class":
        return None
    idx = twin_unseen_indices(ctx)
    return true_class_margins(predict(twin, ctx.dataset.train_x[idx], ctx.device), ctx.dataset.train_y[idx])
