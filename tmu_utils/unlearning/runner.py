"""A row (a method, or a variant: a method at some knobs, core/variants.py) as a stage of a run: run on a
copy of M_o, seeded and timed, and its outputs cached under a key of exactly the parameters that change
them (docs/design.md); the name its artefacts are stored under; the random-ranking control's split.
"""
from __future__ import annotations

import dataclasses
import time

import torch
from torch import nn

from ..core.choices import REFERENCE_STEP
from ..core.context import Context, Outputs, model_outputs
from ..core.params import Params
from ..core.seeds import generator
from ..core.training import seed_everything
from ..core.variants import Row, reads_predictor, row
from . import UnlearnTask, unlearn_row
from .tmu import target_of


def unlearn(ctx: Context, name: str, original: nn.Module, easy: torch.Tensor | None = None, *,
            easy_proba: torch.Tensor | None = None,
            unseen_margins: torch.Tensor | None = None) -> tuple[nn.Module, float]:
    """Run the row `name` (a method or a variant) on a copy of M_o; return the model and its wall time.

    `easy`, `easy_proba` and `unseen_margins` are TMU's inputs (UnlearnTask)."""
    rx, ry = ctx.subset("retain")
    fx, fy = ctx.subset("forget")
    seed = ctx.seeds["unlearning"]
    task = UnlearnTask(original, rx, ry, fx, fy, ctx.dataset.num_classes, ctx.params, ctx.device, easy=easy, seed=seed,
                       easy_proba=easy_proba, unseen_margins=unseen_margins)
    seed_everything(seed)
    start = time.perf_counter()
    model = unlearn_row(task, name)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return model, time.perf_counter() - start


# Fields that change how a run is shown or stored, never what it computes. The tuner's fields only
# choose other fields' values (the knobs), which are themselves in every key.
TUNER_FIELDS = ("tuning", "tune_budget", "twin_match", "twin_max_epochs", "tuning_criterion")
# `variants` only chooses other fields' values for a row, which are themselves in its key.
PRESENTATION_FIELDS = ("name", "progress", "cache_dir", "out_dir", "sweep_dir", "population_dir", "requests_dir",
                       "methods", "variants", "mia_max_per_side") + TUNER_FIELDS
# Fields that reach a method's keys through its stored name (`artefact_name`) instead of the hash.
# `twin_forget` changes only the rows that read the predictor, whose keys name it (`unlearned_key`).
NAMED_FIELDS = ("tmu_target", "tmu_split", "twin_forget") + tuple(REFERENCE_STEP)
# Fields that reach the keys through the knob values they set or keep (tuning.fixed_context), not themselves.
RESOLVED_FIELDS = ("fixed_knobs", "pinned")


def method_key_fields(params: Params) -> list[str]:
    """The fields hashed into a method's unlearned-output and tuning keys: every computed one, but TMU's
    target, split and step knobs and `fixed_knobs`, which the stored name and the knobs cover (so no key
    written before they existed changed)."""
    skip = PRESENTATION_FIELDS + NAMED_FIELDS + RESOLVED_FIELDS
    return [f for f in params.to_dict() if f not in skip]


# The stored name of TMU at each split: the names its controls were first stored under.
SPLIT_NAMES = {"predictor": "tmu", "gold": "tmu_oracle", "random": "tmu_random_rank", "none": "tmu_all_hard"}


def stored_name(r: Row) -> str:
    """The name a row's artefacts (and its fixed-knobs row) are stored under: what it computes, not what the
    row is called, so rows that compute the same thing share one. A baseline is its method; TMU is named by
    its split, then its target where it is not the hard flip (`tmu_soft`, `tmu_oracle_hard_only`; with no
    easy sample the hard flip and hard_only agree), then its step where it is not the reference
    (`tmu_hard_only_distill_last_block`)."""
    if r.method != "tmu":
        return r.method
    p = r.params
    name = SPLIT_NAMES[p.tmu_split]
    target = target_of(p)
    if target != "hard" and p.tmu_split != "none":
        name += f"_{target}"
    step = [p.tmu_retain_loss if p.tmu_retain_loss != "ce" else "", p.tmu_update if p.tmu_update != "all" else "",
            "calibrated" if p.tmu_calibrate else "", f"perturb{p.tmu_perturb:g}" if p.tmu_perturb else ""]
    return name + "".join(f"_{part}" for part in step if part)


def artefact_name(name: str, params: Params) -> str:
    """The stored name of the row `name` of a run with `params` (stored_name)."""
    return stored_name(row(params, name))


def unlearned_key(ctx: Context, name: str) -> str:
    """Cache key of the row `name`'s unlearned outputs in this context."""
    r = row(ctx.params, name)
    twin = "-independent_twin" if reads_predictor(r) and r.params.twin_forget == "independent" else ""
    return f"{stored_name(r)}{twin}-{dataclasses.replace(ctx, params=r.params).key(method_key_fields(r.params))}"


def unlearned_outputs(ctx: Context, name: str, original: nn.Module, easy: torch.Tensor | None = None,
                      **target_inputs: torch.Tensor | None) -> tuple[Outputs, float]:
    """The logits of the row `name`'s unlearned model and its unlearning time, cached per row.

    The key covers every parameter that can change the result (the inputs, `easy` and the TMU
    variants' `target_inputs` for `unlearn`, follow from them), so 04_unlearning computes and
    05_evaluation (or a re-run) fetches.
    """
    key = unlearned_key(ctx, name)

    def build():
        model, seconds = unlearn(ctx, name, original, easy, **target_inputs)
        out = model_outputs(ctx, model)
        return {"forget": out.forget, "retain": out.retain, "test": out.test}, {"seconds": seconds}

    payload, meta = ctx.cache.get_or_build("unlearned", key, build)
    return Outputs(payload["forget"], payload["retain"], payload["test"]), meta["seconds"]


def random_rank(ctx: Context, easy: torch.Tensor) -> torch.Tensor:
    """The split `tmu_split: random` (the control `tmu_random_rank`): as many easy samples as `easy` has,
    chosen at random from D_f.

    Its gap to `tmu` is what the predictor's per-sample ranking buys beyond getting the count right.
    """
    chosen = torch.randperm(len(easy), generator=generator(ctx.seeds["unlearning"], "random_rank"))[: int(easy.sum())]
    random_easy = torch.zeros_like(easy, dtype=torch.bool)
    random_easy[chosen] = True
    return random_easy
