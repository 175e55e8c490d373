"""The stages of one run (docs/design.md's data flow) as cached functions, and `run(params) -> results`.

Each expensive artefact is keyed by exactly the parameters that determine it, so a sweep that only
changes unlearning parameters reuses M_o, M_g, M_t, M_c and the features, and an interrupted run
resumes where it stopped. The gold models are used only by `evaluate`: the method itself
(`tmu_predict_easy`, `unlearn`) never receives them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from . import features as feats
from .cache import Cache, default_cache_dir
from .data import Dataset, load_dataset
from .metrics import Outputs, alignment_metrics
from .mia import loss_attack, mia_gap, per_sample_loss
from .models import build_model
from .params import Params, params_hash
from .predictor import cross_validated_accuracy, fit_predictor, predict_easy, predict_proba, quality_report
from .splits import Splits, make_splits
from .training import (TrainConfig, predict, progress_enabled, resolve_device, seed_everything, set_deterministic,
                       train_model)
from .twin import MatchTarget, generalization_labels, twin_original, twin_training_set
from .twin import accuracy as twin_accuracy
from .unlearning import METHODS, UnlearnTask
from .unlearning.common import true_class_margins
from .unlearning.tmu_targets import target_variant

REPO_ROOT = Path(__file__).resolve().parent.parent
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


@dataclass
class PredictorOutput:
    """The predictor's view of the forget set, and what it learnt from the twin problem."""

    proba: torch.Tensor  # P(easy) per forget sample
    easy: torch.Tensor  # bool: predicted generalization label per forget sample
    threshold: float
    twin_easy_rate: float
    twin_cv_accuracy: float
    seconds: float
    # M_o's margins on D_tf, which M_o never saw as a retrain never sees D_f: the margin target's
    # reference (None in the class scenario, which has no twin problem)
    reference_margins: torch.Tensor | None = None


def predict_generalization(ctx: Context, raw: dict) -> PredictorOutput:
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


def tmu_predict_easy(ctx: Context, original: nn.Module) -> tuple[PredictorOutput, dict[str, float]]:
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
    twin, twin_meta = twin_model(ctx, original)
    curriculum, cur_meta = curriculum_model(ctx)
    raw, feat_meta = generalization_features(ctx, original, twin, curriculum)
    pred = predict_generalization(ctx, raw)
    start = time.perf_counter()
    tx, ty = ctx.subset("twin_forget")
    pred.reference_margins = true_class_margins(predict(original, tx, ctx.device), ty)
    pred.seconds += time.perf_counter() - start
    timing = {"twin_s": twin_meta["seconds"], "curriculum_s": cur_meta["seconds"],
              "features_s": feat_meta["seconds"], "predictor_s": pred.seconds}
    timing["tmu_one_off_s"] = sum(timing.values())
    return pred, timing


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


# Fields that change how a run is shown or stored, never what it computes. `tuning` and `tune_budget`
# only choose other fields' values (the knobs), which are themselves in every key.
PRESENTATION_FIELDS = ("name", "progress", "cache_dir", "out_dir", "sweep_dir", "population_dir", "methods",
                       "mia_max_per_side", "tuning", "tune_budget")
# Fields that reach a method's keys through its stored name (`artefact_name`) instead of the hash.
NAMED_FIELDS = ("tmu_target",)


def method_key_fields(params: Params) -> list[str]:
    """The fields hashed into a method's unlearned-output and tuning keys: every computed one, but
    `tmu_target`, which `artefact_name` covers (so no key written before it existed changed)."""
    return [f for f in params.to_dict() if f not in PRESENTATION_FIELDS and f not in NAMED_FIELDS]


def artefact_name(method: str, params: Params) -> str:
    """The name a method's artefacts are stored under: `tmu` with `tmu_target` other than hard computes
    exactly what `tmu_<target>` does (same function, seed and inputs), so it shares that entry."""
    variant = target_variant(method, params.tmu_target)
    return f"tmu_{variant}" if method == "tmu" and variant != "hard" else method


def unlearned_key(ctx: Context, method: str) -> str:
    """Cache key of `method`'s unlearned outputs in this context."""
    return f"{artefact_name(method, ctx.params)}-{ctx.key(method_key_fields(ctx.params))}"


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


def score(ctx: Context, u: Outputs, g: Outputs, gold_member_rate: float) -> dict[str, float]:
    """Every per-method metric except timing; `mia_gap` is relative to the gold model's member rate
    (`gold_member_rate`, from `member_rate(ctx, g)`)."""
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    metrics = alignment_metrics(u, g, labels)
    metrics["mia_member_rate"] = member_rate(ctx, u)
    metrics["mia_gap"] = mia_gap(metrics["mia_member_rate"], gold_member_rate)
    return metrics


def member_rate(ctx: Context, outputs: Outputs) -> float:
    """The membership-inference attack's member rate on D_f for one model's outputs."""
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    return loss_attack(per_sample_loss(outputs.retain, labels["retain"]), per_sample_loss(outputs.test, labels["test"]),
                       per_sample_loss(outputs.forget, labels["forget"]), seed=ctx.params.seed,
                       max_per_side=ctx.params.mia_max_per_side).member_rate


def environment(device: torch.device) -> dict[str, str]:
    """The `env` block of results.json."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        sha = "unknown"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"torch": torch.__version__, "device": name, "device_type": device.type, "git_sha": sha}


def run_dir(params: Params) -> Path:
    """`out_dir` if given, else runs/<name>/<seed>/ under the repository."""
    return Path(params.out_dir) if params.out_dir else REPO_ROOT / "runs" / params.name / str(params.seed)


@dataclass
class References:
    """The models every evaluation compares against, and what the gold model says about D_f."""

    original: nn.Module
    gold_outputs: Outputs
    gold2_outputs: Outputs
    true_easy: torch.Tensor  # bool per D_f sample: the gold model classifies it correctly
    timing: dict[str, float]


def references(ctx: Context) -> References:
    """M_o, M_g and M_g' (trained or fetched) and the gold generalization labels of D_f."""
    original, o_meta = original_model(ctx)
    gold, g_meta = gold_model(ctx, 0)
    gold2, g2_meta = gold_model(ctx, 1)
    gold_out = model_outputs(ctx, gold)
    true_easy = gold_out.forget.argmax(1) == ctx.subset("forget")[1]
    timing = {"original_s": o_meta["seconds"], "gold_s": g_meta["seconds"], "gold2_s": g2_meta["seconds"]}
    return References(original, gold_out, model_outputs(ctx, gold2), true_easy, timing)


def method_outputs(ctx: Context, refs: References, method: str,
                   pred: PredictorOutput | None = None) -> tuple[Outputs, float]:
    """Outputs and unlearning time of one method; TMU variants get their easy/hard split here."""
    if method in TWIN_METHODS and pred is None:
        raise ValueError(f"method {method!r} needs the predictor's output (pred)")
    if ctx.params.tuning == "twin":  # with the knobs chosen on the twin problem (cached: tuned once)
        from .tuning import tune_methods, tuned_context

        ctx = tuned_context(ctx, tune_methods(ctx, refs.original, [method])[0].get(method))
    easy = {"tmu": lambda: pred.easy, "tmu_random_rank": lambda: random_rank(ctx, pred.easy),
            "tmu_oracle": lambda: refs.true_easy, "tmu_all_hard": lambda: torch.zeros_like(refs.true_easy),
            "tmu_soft": lambda: pred.easy, "tmu_margin": lambda: pred.easy}
    target_inputs = {}
    if target_variant(method, ctx.params.tmu_target) != "hard":  # soft and margin read P(easy) and the reference
        target_inputs = {"easy_proba": pred.proba, "reference_margins": pred.reference_margins}
    return unlearned_outputs(ctx, method, refs.original, easy[method]() if method in easy else None, **target_inputs)


# The TMU variants that depend on the twin problem's output, so pay its one-off cost.
TWIN_METHODS = ("tmu", "tmu_random_rank", "tmu_soft", "tmu_margin")


def random_rank(ctx: Context, easy: torch.Tensor) -> torch.Tensor:
    """The control `tmu_random_rank`: as many easy samples as `easy` has, chosen at random from D_f.

    Its gap to `tmu` is what the predictor's per-sample ranking buys beyond getting the count right.
    """
    generator = torch.Generator().manual_seed(ctx.seeds["unlearning"] * 7919 + 17)
    chosen = torch.randperm(len(easy), generator=generator)[: int(easy.sum())]
    random_easy = torch.zeros_like(easy, dtype=torch.bool)
    random_easy[chosen] = True
    return random_easy


def evaluate(ctx: Context) -> dict:
    """Every stage and every method in `params.methods`, scored against the gold model (docs/method.md).

    results.json is rewritten after each method, so an interrupted run keeps what it measured.
    """
    params = ctx.params
    out_dir = run_dir(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(ctx.splits.to_dict(), out_dir / "splits.pt")
    results: dict[str, Any] = {"params": params.to_dict(), "params_hash": params_hash(params, params.to_dict()),
                               "env": environment(ctx.device), "splits": ctx.splits.sizes(),
                               "seeds": {"splits": params.seed, "original": ctx.seeds["original"],
                                         "gold": ctx.seeds["gold"], "gold2": ctx.seeds["gold2"]},
                               "complete": False}
    refs = references(ctx)
    results["timing"] = dict(refs.timing)
    gold_rate = member_rate(ctx, refs.gold_outputs)
    gold_metrics = score(ctx, refs.gold_outputs, refs.gold_outputs, gold_rate)
    floor = score(ctx, refs.gold2_outputs, refs.gold_outputs, gold_rate)
    floor.update(time_s=refs.timing["gold2_s"], rte=refs.timing["gold_s"] / refs.timing["gold2_s"])
    floor["rte_with_one_off"] = floor["rte"]
    results["noise_floor"] = floor

    pred = None
    if any(m in TWIN_METHODS for m in params.methods):
        pred, tmu_timing = tmu_predict_easy(ctx, refs.original)
        results["timing"].update(tmu_timing)
        results["predictor"] = quality_report(pred.proba, pred.easy, refs.true_easy, pred.twin_easy_rate,
                                              pred.twin_cv_accuracy)
        results["predictor"]["threshold"] = pred.threshold
        if params.forget_scenario == "class":
            results["predictor"]["note"] = ("class scenario: every forget sample is treated as hard, so TMU "
                                            "relabels all of D_f without a twin problem or predictor")

    if params.tuning == "twin":  # each method's knobs, chosen on the twin problem (docs/tuning.md)
        from .tuning import tune_methods

        results["tuning"], results["timing"]["tuning_shared_s"] = tune_methods(ctx, refs.original, params.methods)
        write_results(out_dir, results)

    results["methods"] = {}
    bar = tqdm(params.methods, desc="methods", disable=not progress_enabled(params.progress), leave=False)
    for method in bar:
        bar.set_postfix_str(method)
        if method == "original":
            metrics = score(ctx, model_outputs(ctx, refs.original), refs.gold_outputs, gold_rate)
            metrics.update(time_s=0.0, rte=None, rte_with_one_off=None)
        elif method == "retrain":
            metrics = dict(gold_metrics, time_s=refs.timing["gold_s"], rte=1.0, rte_with_one_off=1.0)
        else:
            outputs, seconds = method_outputs(ctx, refs, method, pred)
            metrics = score(ctx, outputs, refs.gold_outputs, gold_rate)
            # The twin-based variants also pay for M_t, M_c, the features and the predictor.
            one_off = results["timing"].get("tmu_one_off_s", 0.0) if method in TWIN_METHODS else 0.0
            metrics.update(time_s=seconds, rte=refs.timing["gold_s"] / seconds,
                           rte_with_one_off=refs.timing["gold_s"] / (seconds + one_off))
        results["methods"][method] = metrics
        write_results(out_dir, results)
    results["complete"] = True
    write_results(out_dir, results)
    return results


def write_results(out_dir: Path, results: dict) -> Path:
    """Write results.json atomically."""
    path = Path(out_dir) / "results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, allow_nan=True))
    tmp.replace(path)
    return path


def run(params: Params) -> dict:
    """The whole pipeline in this process: results.json and the standard figures in run_dir(params)."""
    from . import plots

    results = evaluate(prepare(params))
    plots.save_run_figures(results, run_dir(params) / "figures")
    return results
