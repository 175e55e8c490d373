"""A run's context and the stages every layer shares (docs/design.md's data flow).

`Context` holds the parameters, the data, the splits, the device and the artefact cache; the model
stages here, M_o, M_g and M_g', are cached functions of it. Each artefact is keyed by exactly the
parameters that determine it, so a sweep that only changes unlearning parameters reuses every model,
and an interrupted run resumes where it stopped. The gold models are only trained here and read by
evaluation/scoring.py; the method (method/, unlearning/) never receives them.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .cache import Cache, default_cache_dir
from .data import Dataset, load_dataset
from .models import build_model
from .params import Params, params_hash
from .splits import Splits, make_splits
from .training import TrainConfig, predict, resolve_device, seed_everything, set_deterministic, train_model

DATA_FIELDS = ("dataset", "data_dir", "image_size", "train_limit", "test_limit")
MEMBER_FIELDS = DATA_FIELDS + ("member_fraction", "seed")
FORGET_FIELDS = MEMBER_FIELDS + ("forget_scenario", "forget_fraction", "forget_class")
RECIPE_FIELDS = ("arch", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "augment")
# Every trained model gets its own initialisation and data-order seed, derived from `seed` (the seed
# of the splits) and the replica index r: r = 0 is a single run, r = 0..N-1 a population
# (docs/method.md, "Seeds"). A gold model that shared M_o's initialisation would make per-sample
# comparisons with M_o look closer than two independent retrains are.
SEED_OFFSETS = {"original": 0, "gold": 1000, "gold2": 2000, "curriculum": 3000, "twin": 4000, "unlearning": 5000,
                "twin_scratch": 6000}
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
        device type, because a CPU and a GPU run of the same parameters differ in timings and numerics.
        CIFAR-10 read from JPEGs adds the data checksum: both CIFAR-10 sources have the same parameters but
        not the same pixels or order, and a model trained on one must not be read back for the other."""
        d = self.dataset
        data = f"-{d.checksum}" if d is not None and (d.name, d.format) == ("cifar10", "image_folder") else ""
        return f"{params_hash(self.params, fields)}-r{self.replica}-{self.device.type}{data}"

    def subset(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of one split by name; `test` comes from the test set."""
        idx = getattr(self.splits, name)
        if name == "test":
            return self.dataset.test_x[idx], self.dataset.test_y[idx]
        return self.dataset.train_x[idx], self.dataset.train_y[idx]


@functools.lru_cache(maxsize=2)
def _load_dataset_cached(name: str, data_dir: str, image_size: int, cache_dir: str, progress: bool) -> Dataset:
    kwargs = {"image_size": image_size} if name == "imagefolder" else {}
    return load_dataset(name, data_dir or None, cache_dir=cache_dir, progress=progress, **kwargs)


def prepare(params: Params) -> Context:
    """Load the data set, make the splits, choose the device (and its determinism) and open the cache."""
    dataset = _load_dataset_cached(params.dataset, params.data_dir, params.image_size, params.cache_dir,
                                   params.progress)
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


def cached_model(ctx: Context, kind: str, fields: tuple[str, ...], build) -> tuple[nn.Module, dict]:
    """Load a model artefact or train it with `build() -> (model, meta)` and store it."""
    key = ctx.key(fields)

    def build_state():
        model, meta = build()
        return {k: v.cpu() for k, v in model.state_dict().items()}, meta

    state, meta = ctx.cache.get_or_build(kind, key, build_state)
    model = new_model(ctx)
    model.load_state_dict(state)
    return model.to(ctx.device).eval(), meta


def train_from_scratch(ctx: Context, split: str | tuple[torch.Tensor, torch.Tensor], seed: int, desc: str,
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
    return cached_model(ctx, "original", MEMBER_FIELDS + RECIPE_FIELDS,
                         lambda: train_from_scratch(ctx, "members", ctx.seeds["original"], "original M_o"))


def gold_model(ctx: Context, copy: int = 0) -> tuple[nn.Module, dict]:
    """M_g (copy 0) or M_g' (copy 1): the same recipe retrained from scratch on D_r, each with its own seed.

    In a population, copy 0 of every replica forms retrain set A and copy 1 retrain set B.
    """
    seed = ctx.seeds["gold" if copy == 0 else "gold2"]
    name = "gold M_g" if copy == 0 else "gold M_g'"
    return cached_model(ctx, f"gold{copy}", FORGET_FIELDS + RECIPE_FIELDS,
                         lambda: train_from_scratch(ctx, "retain", seed, name))


@dataclass
class Outputs:
    """One model's logits on the three evaluation sets, each (n, K) float."""

    forget: torch.Tensor
    retain: torch.Tensor
    test: torch.Tensor


def model_outputs(ctx: Context, model: nn.Module) -> Outputs:
    """A model's logits on D_f, D_r and the test set."""
    return Outputs(*(predict(model, ctx.subset(s)[0], ctx.device) for s in ("forget", "retain", "test")))


