"""The stages of one run (docs/design.md's data flow) as cached functions.

Each expensive artefact is keyed by exactly the parameters that determine it, so a sweep that only
changes unlearning parameters reuses M_o, M_g, M_t, M_c and the features, and an interrupted run
resumes where it stopped. The gold models are only trained here; they are read by scoring.py, and
the method itself (`tmu_predict_easy`, `unlearn`) never receives them. runs.py scores a whole run.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import features as feats
from .cache import Cache, default_cache_dir
from .data import Dataset, load_dataset
from .metrics import Outputs
from .models import build_model
from .params import Params, params_hash
from .splits import Splits, make_splits
from .training import TrainConfig, predict, resolve_device, seed_everything, set_deterministic, train_model
from .twin import MatchTarget, generalization_labels, twin_original, twin_training_set
from .twin import accuracy as twin_accuracy
from .unlearning import METHODS, UnlearnTask
from .unlearning.tmu_targets import RANK_CONTROLS, target_variant

DATA_FIELDS = ("dataset", "data_dir", "image_size", "train_limit", "test_limit")
MEMBER_FIELDS = DATA_FIELDS + ("member_fraction", "seed")
FORGET_FIELDS = MEMBER_FIELDS + ("forget_scenario", "forget_fraction", "forget_class")
RECIPE_FIELDS = ("arch", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "augment")
TWIN_FIELDS = FORGET_FIELDS + RECIPE_FIELDS + ("twin_epochs", "twin_lr")
CURRICULUM_FIELDS = FORGET_FIELDS + RECIPE_FIELDS + ("curriculum_epochs",)
FEATURE_FIELDS = TWIN_FIELDS + ("curriculum_epochs", "knn_k", "bank_per_class", "adv_steps", "adv_eps")
# Every trained model gets its own initialisation and data-order seed, derived from `seed` (the seed
# of the splits) and the replica index r: r = 0 is a single run, r = 0..N-1 a population
# (docs/method.md, "Seeds"). A gold model that shared M_o's initialisation would make per-sample
# comparisons with M_o look closer than two independent retrains are.
SEED_OFFSETS = {"original": 0, "gold": 1000, "gold2": 2000, "curriculum": 3000, "twin": 4000, "unlearning": 5000}
MAX_REPLICAS = 1000  # the offsets above are 1000 apart


def model_seeds(seed: int, replica: int = 0) -> dict[str, int]:
    """The seed of each model role for split seed `seed` and replica `replica`."""
    if not 0 <= replica < MAX_REPLICAS:
        raise ValueError(f"replica must lie in [0, {MAX_REPLICAS}); got {replica}")
    return {role: seed + offset + replica for role, offset in SEED_OFFSETS.items()}


@dataclass
class Context:
    """What every stage needs: parameters, data, splits, device and the artefact cache."""

    params: Params
    dataset: Dataset
    splits: Splits
    device: torch.device
    cache: Cache
    replica: int = 0  # which member of a population (0 for a single run): selects the model seeds

    @property
    def seeds(self) -> dict[str, int]:
        """The seeds of M_o, M_g, M_g', M_c, M_t and the unlearning randomness of this replica."""
        return model_seeds(self.params.seed, self.replica)

    def for_replica(self, replica: int) -> "Context":
        """The same data, splits and cache, for another replica's models."""
        return dataclasses.replace(self, replica=replica)

    def key(self, fields: tuple[str, ...] | list[str]) -> str:
        """Cache key of an artefact: the hash of the parameters that determine it, the replica, and the
        device type, because a CPU and a GPU run of the same parameters differ in timings and numerics."""
        return f"{params_hash(self.params, fields)}-r{self.replica}-{self.device.type}"

    def subset(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of one split by name; `test` comes from the test set."""
        idx = getattr(self.splits, name)
        if name == "test":
            return self.dataset.test_x[idx], self.dataset.test_y[idx]
        return self.dataset.train_x[idx], self.dataset.train_y[idx]


@functools.lru_cache(maxsize=2)
def _load_dataset_cached(name: str, data_dir: str, image_size: int) -> Dataset:
    kwargs = {"image_size": image_size} if name == "imagefolder" else {}
    return load_dataset(name, data_dir or None, **kwargs)


def prepare(params: Params) -> Context:
    """Load the data set, make the splits, choose the device (and its determinism) and open the cache."""
    dataset = _load_dataset_cached(params.dataset, params.data_dir, params.image_size)
    splits = make_splits(dataset.train_y, dataset.test_y, params)
    device = resolve_device(params.device)
    set_deterministic(params.deterministic, device)
    return Context(params, dataset, splits, device, Cache(default_cache_dir(params.cache_dir)))


def recipe(params: Params, **changes: Any) -> TrainConfig:
    """The training recipe of M_o (and so of M_g, M_g' and M_c)."""
    cfg = TrainConfig(epochs=params.epochs, batch_size=params.batch_size, optimizer=params.optimizer, lr=params.lr,
                      momentum=params.momentum, weight_decay=params.weight_decay, schedule=params.schedule,
                      augment=params.augment)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def new_model(ctx: Context) -> nn.Module:
    """An untrained model of the run's architecture, shaped for its data set."""
    d = ctx.dataset
    return build_model(ctx.params.arch, d.num_classes, d.in_channels, d.image_size)


def _cached_model(ctx: Context, kind: str, fields: tuple[str, ...], build) -> tuple[nn.Module, dict]:
    """Load a model artefact or train it with `build() -> (model, meta)` and store it."""
    key = ctx.key(fields)

    def build_state():
        model, meta = build()
        return {k: v.cpu() for k, v in model.state_dict().items()}, meta

    state, meta = ctx.cache.get_or_build(kind, key, build_state)
    model = new_model(ctx)
    model.load_state_dict(state)
    return model.to(ctx.device).eval(), meta


def _train_from_scratch(ctx: Context, split: str | tuple[torch.Tensor, torch.Tensor], seed: int, desc: str,
                        **changes: Any) -> tuple[nn.Module, dict]:
    """Train a fresh model with the recipe on a named split or on given (images, labels)."""
    seed_everything(seed)
    model = new_model(ctx)
    x, y = ctx.subset(split) if isinstance(split, str) else split
    result = train_model(model, x, y, recipe(ctx.params, **changes), device=ctx.device, seed=seed,
                         progress=ctx.params.progress, desc=desc)
    return model, {"seconds": result.seconds, "losses": result.losses}


def original_model(ctx: Context) -> tuple[nn.Module, dict]:
    """M_o: trained from scratch on the members M."""
    return _cached_model(ctx, "original", MEMBER_FIELDS + RECIPE_FIELDS,
                         lambda: _train_from_scratch(ctx, "members", ctx.seeds["original"], "original M_o"))


def gold_model(ctx: Context, copy: int = 0) -> tuple[nn.Module, dict]:
    """M_g (copy 0) or M_g' (copy 1): the same recipe retrained from scratch on D_r, each with its own seed.

    In a population, copy 0 of every replica forms retrain set A and copy 1 retrain set B.
    """
    seed = ctx.seeds["gold" if copy == 0 else "gold2"]
    name = "gold M_g" if copy == 0 else "gold M_g'"
    return _cached_model(ctx, f"gold{copy}", FORGET_FIELDS + RECIPE_FIELDS,
                         lambda: _train_from_scratch(ctx, "retain", seed, name))


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
        return _cached_model(ctx, "twin_matched", TWIN_FIELDS + ("twin_max_epochs",), build)
    return _cached_model(ctx, "twin", TWIN_FIELDS, build)


def curriculum_model(ctx: Context) -> tuple[nn.Module, dict]:
    """M_c: the recipe stopped after `curriculum_epochs` epochs on M ∪ D_tf."""
    p = ctx.params
    return _cached_model(ctx, "curriculum", CURRICULUM_FIELDS,
                         lambda: _train_from_scratch(ctx, _twin_set(ctx), ctx.seeds["curriculum"], "curriculum M_c",
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


def model_outputs(ctx: Context, model: nn.Module) -> Outputs:
    """A model's logits on D_f, D_r and the test set."""
    return Outputs(*(predict(model, ctx.subset(s)[0], ctx.device) for s in ("forget", "retain", "test")))


# Fields that change how a run is shown or stored, never what it computes. The tuner's fields only
# choose other fields' values (the knobs), which are themselves in every key.
TUNER_FIELDS = ("tuning", "tune_budget", "twin_match", "twin_max_epochs")
PRESENTATION_FIELDS = ("name", "progress", "cache_dir", "out_dir", "sweep_dir", "population_dir", "requests_dir",
                       "methods", "mia_max_per_side") + TUNER_FIELDS
# Fields that reach a method's keys through its stored name (`artefact_name`) instead of the hash.
# `twin_forget` changes only the twin-based methods, whose keys name it (`unlearned_key`).
NAMED_FIELDS = ("tmu_target", "twin_forget")
# Fields that reach the keys through the knob values they set (tuning.fixed_context), not themselves.
RESOLVED_FIELDS = ("fixed_knobs",)


def method_key_fields(params: Params) -> list[str]:
    """The fields hashed into a method's unlearned-output and tuning keys: every computed one, but
    `tmu_target` and `fixed_knobs`, which the name and the knobs cover (so no key written before they
    existed changed)."""
    skip = PRESENTATION_FIELDS + NAMED_FIELDS + RESOLVED_FIELDS
    return [f for f in params.to_dict() if f not in skip]


def artefact_name(method: str, params: Params) -> str:
    """The name a method's artefacts are stored under. Methods that compute the same thing share one:
    `tmu` at `tmu_target` hard and `tmu_hard` are `tmu`; `tmu` at any other target is `tmu_<target>`;
    a ranking control at the hard_only target is `<control>_hard_only`."""
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
TWIN_METHODS = ("tmu", "tmu_random_rank", "tmu_hard", "tmu_soft", "tmu_margin", "tmu_hard_only")


def random_rank(ctx: Context, easy: torch.Tensor) -> torch.Tensor:
    """The control `tmu_random_rank`: as many easy samples as `easy` has, chosen at random from D_f.

    Its gap to `tmu` is what the predictor's per-sample ranking buys beyond getting the count right.
    """
    generator = torch.Generator().manual_seed(ctx.seeds["unlearning"] * 7919 + 17)
    chosen = torch.randperm(len(easy), generator=generator)[: int(easy.sum())]
    random_easy = torch.zeros_like(easy, dtype=torch.bool)
    random_easy[chosen] = True
    return random_easy
