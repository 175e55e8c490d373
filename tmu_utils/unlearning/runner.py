"""A registered method as a stage of a run: run on a copy of M_o, seeded and timed, and its outputs
cached under a key of exactly the parameters that change them (docs/design.md). Also the names of the
TMU variants that read the twin problem, and the random-ranking control of TMU's predictor.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..core.context import Context, Outputs, model_outputs
from ..core.params import Params
from ..core.training import seed_everything
from . import METHODS, UnlearnTask
from .tmu_step import STEP_FIELDS, STEP_VARIANTS, step_of, step_suffix
from .tmu_targets import RANK_CONTROLS, target_variant


def unlearn(ctx: Context, method: str, original: nn.Module, easy: torch.Tensor | None = None, *,
            easy_proba: torch.Tensor | None = None,
            reference_margins: torch.Tensor | None = None) -> tuple[nn.Module, float]:
    """Run one registered unlearning method on a copy of M_o; return the model and its wall time.

    `easy`, `easy_proba` and `reference_margins` are the TMU variants' inputs (UnlearnTask)."""
    rx, ry = ctx.subset("retain")
    fx, fy = ctx.subset("forget")
    seed = ctx.seeds["unlearning"]
    task = UnlearnTask(original, rx, ry, fx, fy, ctx.dataset.num_classes, ctx.params, ctx.device, easy=easy, seed=seed,
                       easy_proba=easy_proba, reference_margins=reference_margins)
    seed_everything(seed)
    start = time.perf_counter()
    model = METHODS[method](task)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return model, time.perf_counter() - start


# Fields that change how a run is shown or stored, never what it computes. The tuner's fields only
# choose other fields' values (the knobs), which are themselves in every key.
TUNER_FIELDS = ("tuning", "tune_budget", "twin_match", "twin_max_epochs", "tuning_criterion")
PRESENTATION_FIELDS = ("name", "progress", "cache_dir", "out_dir", "sweep_dir", "population_dir", "requests_dir",
                       "methods", "mia_max_per_side") + TUNER_FIELDS
# Fields that reach a method's keys through its stored name (`artefact_name`) instead of the hash.
# `twin_forget` changes only the twin-based methods, whose keys name it (`unlearned_key`).
NAMED_FIELDS = ("tmu_target", "twin_forget") + STEP_FIELDS
# Fields that reach the keys through the knob values they set or keep (tuning.fixed_context), not themselves.
RESOLVED_FIELDS = ("fixed_knobs", "pinned")


def method_key_fields(params: Params) -> list[str]:
    """The fields hashed into a method's unlearned-output and tuning keys: every computed one, but
    `tmu_target`, the step knobs and `fixed_knobs`, which the name and the knobs cover (so no key
    written before they existed changed)."""
    skip = PRESENTATION_FIELDS + NAMED_FIELDS + RESOLVED_FIELDS
    return [f for f in params.to_dict() if f not in skip]


def artefact_name(method: str, params: Params) -> str:
    """The name a method's artefacts are stored under. Methods that compute the same thing share one:
    `tmu` at `tmu_target` hard and `tmu_hard` are `tmu`; `tmu` at any other target is `tmu_<target>`;
    a ranking control at the hard_only target is `<control>_hard_only`. A TMU method whose step is not
    the reference adds its step's suffix (`tmu_hard_only_distill`), so a step variant and `tmu` at the
    same step knobs share one name too."""
    name = _base_name("tmu" if method in STEP_VARIANTS else method, params)
    return name + step_suffix(step_of(method, params)) if method in STEP_METHODS else name


def _base_name(method: str, params: Params) -> str:
    variant = target_variant(method, params.tmu_target)
    if method in ("tmu", "tmu_hard"):
        return "tmu" if variant == "hard" else f"tmu_{variant}"
    return f"{method}_hard_only" if method in RANK_CONTROLS and variant == "hard_only" else method


def unlearned_key(ctx: Context, method: str) -> str:
    """Cache key of `method`'s unlearned outputs in this context."""
    twin = "-independent_twin" if method in TWIN_METHODS and ctx.params.twin_forget == "independent" else ""
    return f"{artefact_name(method, ctx.params)}{twin}-{ctx.key(method_key_fields(ctx.params))}"


def unlearned_outputs(ctx: Context, method: str, original: nn.Module, easy: torch.Tensor | None = None,
                      **target_inputs: torch.Tensor | None) -> tuple[Outputs, float]:
    """The logits of `method`'s unlearned model and its unlearning time, cached per method.

    The key covers every parameter that can change the result (the inputs, `easy` and the TMU
    variants' `target_inputs` for `unlearn`, follow from them), so 04_unlearning computes and
    05_evaluation (or a re-run) fetches.
    """
    key = unlearned_key(ctx, method)

    def build():
        model, seconds = unlearn(ctx, method, original, easy, **target_inputs)
        out = model_outputs(ctx, model)
        return {"forget": out.forget, "retain": out.retain, "test": out.test}, {"seconds": seconds}

    payload, meta = ctx.cache.get_or_build("unlearned", key, build)
    return Outputs(payload["forget"], payload["retain"], payload["test"]), meta["seconds"]


# The TMU variants that depend on the twin problem's output, so pay its one-off cost.
TWIN_METHODS = ("tmu", "tmu_random_rank", "tmu_hard", "tmu_soft", "tmu_margin", "tmu_hard_only") + tuple(STEP_VARIANTS)
# The methods that run TMU's fine-tune, so read the step knobs.
STEP_METHODS = TWIN_METHODS + ("tmu_oracle", "tmu_all_hard")


def random_rank(ctx: Context, easy: torch.Tensor) -> torch.Tensor:
    """The control `tmu_random_rank`: as many easy samples as `easy` has, chosen at random from D_f.

    Its gap to `tmu` is what the predictor's per-sample ranking buys beyond getting the count right.
    """
    generator = torch.Generator().manual_seed(ctx.seeds["unlearning"] * 7919 + 17)
    chosen = torch.randperm(len(easy), generator=generator)[: int(easy.sum())]
    random_easy = torch.zeros_like(easy, dtype=torch.bool)
    random_easy[chosen] = True
    return random_easy
