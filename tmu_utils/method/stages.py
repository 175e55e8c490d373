"""The method's cached stages on a run's context: the twin original M_t, the curriculum model M_c,
and the raw DF/AF/CF features with the twin generalization labels (docs/method.md). Gold-free: they
read M_o and the splits, never M_g.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..core.context import Context, FORGET_FIELDS, RECIPE_FIELDS, cached_model, train_from_scratch
from . import features as feats
from .twin import MatchTarget, accuracy as twin_accuracy, generalization_labels, twin_original, twin_training_set

TWIN_FIELDS = FORGET_FIELDS + RECIPE_FIELDS + ("twin_epochs", "twin_lr")
CURRICULUM_FIELDS = FORGET_FIELDS + RECIPE_FIELDS + ("curriculum_epochs",)
FEATURE_FIELDS = TWIN_FIELDS + ("curriculum_epochs", "knn_k", "bank_per_class", "adv_steps", "adv_eps")


def _twin_set(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    idx = twin_training_set(ctx.splits.members, ctx.splits.twin_forget)
    return ctx.dataset.train_x[idx], ctx.dataset.train_y[idx]


# Members on which M_o's accuracy, the matched twin's target, is measured (a seeded subsample).
MATCH_MEMBERS = 5000


def twin_model(ctx: Context, original: nn.Module, matched: bool = False) -> tuple[nn.Module, dict]:
    """M_t: M_o fine-tuned on M ∪ D_tf; TMU's predictor reads this one.

    `matched` (the tuner's twin, with twin_match `members`): fine-tuned instead until M_t's accuracy
    on D_tf reaches M_o's on its members, so that seeing D_tf is worth to M_t what seeing D_f is
    worth to M_o (docs/tuning.md).
    """
    def build():
        start = time.perf_counter()
        match = None
        if matched:
            members = ctx.splits.members
            pick = torch.randperm(len(members), generator=torch.Generator().manual_seed(ctx.seeds["twin"]))
            idx = members[pick[:MATCH_MEMBERS]]
            target = twin_accuracy(original, ctx.dataset.train_x[idx], ctx.dataset.train_y[idx], ctx.device)
            match = MatchTarget(*ctx.subset("twin_forget"), target)
        model, result, forget_acc = twin_original(original, *_twin_set(ctx), ctx.params, ctx.device,
                                                  ctx.seeds["twin"], match)
        meta = {"seconds": time.perf_counter() - start, "losses": result.losses, "epochs": len(result.losses)}
        if match is not None:
            meta.update(match_accuracy=match.accuracy, twin_forget_accuracy=forget_acc)
        return model, meta

    if matched:
        return cached_model(ctx, "twin_matched", TWIN_FIELDS + ("twin_max_epochs",), build)
    return cached_model(ctx, "twin", TWIN_FIELDS, build)


def scratch_twin(ctx: Context) -> tuple[nn.Module, dict]:
    """The tuner's M_t at twin_match `scratch`: the recipe run from scratch on M ∪ D_tf with its own seed,
    as M_o was on M ∪ D_f. M_o, trained on M alone, is then to M_t what M_g is to M_o: an independent
    model that never saw the forget set (docs/tuning.md, "A twin trained from scratch")."""
    return cached_model(ctx, "twin_scratch", FORGET_FIELDS + RECIPE_FIELDS,
                        lambda: train_from_scratch(ctx, _twin_set(ctx), ctx.seeds["twin_scratch"], "twin M_t (scratch)"))


def curriculum_model(ctx: Context) -> tuple[nn.Module, dict]:
    """M_c: the recipe stopped after `curriculum_epochs` epochs on M ∪ D_tf."""
    p = ctx.params
    return cached_model(ctx, "curriculum", CURRICULUM_FIELDS,
                         lambda: train_from_scratch(ctx, _twin_set(ctx), ctx.seeds["curriculum"], "curriculum M_c",
                                                     epochs=p.curriculum_epochs))


def generalization_features(ctx: Context, original: nn.Module, twin: nn.Module,
                            curriculum: nn.Module) -> tuple[dict, dict]:
    """Raw DF/AF/CF on (M_t, D_tf) and (M_o, D_f), and the twin generalization labels g.

    All three features are always computed and cached, so a feature ablation costs nothing extra.
    """
    p = ctx.params

    def build():
        start = time.perf_counter()
        bank = feats.bank_indices(ctx.splits.retain, ctx.dataset.train_y, p.bank_per_class, p.seed)
        bank_x, bank_y = ctx.dataset.train_x[bank], ctx.dataset.train_y[bank]
        common = dict(bank_x=bank_x, bank_y=bank_y, names=list(feats.FEATURE_NAMES), knn_k=p.knn_k,
                      adv_steps=p.adv_steps, adv_eps=p.adv_eps, device=ctx.device)
        tx, ty = ctx.subset("twin_forget")
        fx, fy = ctx.subset("forget")
        payload = {"twin": feats.compute_features(twin, curriculum, tx, ty, **common),
                   "forget": feats.compute_features(original, curriculum, fx, fy, **common),
                   "twin_labels": generalization_labels(original, tx, ty, ctx.device)}
        return payload, {"seconds": time.perf_counter() - start}

    return ctx.cache.get_or_build("features", ctx.key(FEATURE_FIELDS), build)
