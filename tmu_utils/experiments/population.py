"""Population evaluation: is an unlearned model distributed like a retrained one, sample by sample?

For one fixed member set and forget request (the splits of `params.seed`): N originals, 2N
retrains without D_f (halves A and B), all independently seeded, and every method run once from
each original. Each model's margins on D_f, a fixed retain subset and a fixed test subset are
compared with retrain A's by KLoM and U-LiRA, and its logit-scaled confidences on D_f by the unlearning
challenge's forgetting quality; retrain B against A, computed the same way, is the floor
(docs/method.md, "Population evaluation"). Replica r of the population is
`context.Context.for_replica(r)`: its original, its retrains A and B, TMU's twin and every
unlearned model are cached artefacts, and what the statistics read from each replica is also kept
in the population's folder (experiments/replicas.py): a larger N trains only the new replicas, and
an interrupted population resumes, on this machine or on another one given the folder.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core import context
from ..core.params import Params, ParamsError
from ..core.training import progress_enabled
from ..evaluation import scoring
from ..evaluation.forgetting_score import DEFINITION, challenge_score, forgetting_quality, logit_scaled_confidence
from ..evaluation.population_metrics import klom, margins, sturges_bins, summarize, ulira
from ..method import generalization
from ..core.seeds import generator
from ..core.variants import is_tmu, reads_predictor, row
from ..unlearning.tmu_step import step_parameters
from . import runs
from .replicas import Replica, load, save
from .executors import Job, SlurmOptions, python_command, run_commands
from .sweep import mean_ci

SETS = ("forget", "retain", "test")
SUBSET_SIZE = 2000  # retain and test samples whose margins are compared (D_f is used whole)
FORGETTING_EVALUATION = DEFINITION  # recorded in population.json; populations before it kept margins only
RUN_METRICS = ("delta_forget", "tow", "activation_distance", "agreement", "mia_gap", "forget_acc", "retain_acc",
               "test_acc", "time_s")


def population_methods(params: Params) -> list[str]:
    """The compared methods: params.methods without `retrain`, which is the reference itself."""
    return [m for m in params.methods if m != "retrain"]


def check(params: Params, n_models: int) -> None:
    """Raise ParamsError for a population that cannot be evaluated, before anything trains."""
    if n_models < 3:
        raise ParamsError(f"--models must be at least 3 (got {n_models}): U-LiRA fits each side's Gaussian on "
                          "the models left after holding one out, and a variance needs two of them")
    if n_models > context.MAX_REPLICAS:
        raise ParamsError(f"--models must be at most {context.MAX_REPLICAS}; got {n_models}")
    if not population_methods(params):
        raise ParamsError("parameter 'methods' names no method to compare with the retrained models")


def not_applicable(ctx: context.Context, methods: list[str]) -> dict[str, str]:
    """The TMU rows whose step updates a set of parameters the architecture does not have
    (`tmu_bn` on a model without BatchNorm), each with the reason. The population leaves them out
    and says so in population.json and its table, instead of failing after the models are built."""
    model = context.new_model(ctx)
    skipped = {}
    for method in methods:
        r = row(ctx.params, method)
        if is_tmu(r):
            try:
                step_parameters(model, r.params.tmu_update)
            except ValueError as error:
                skipped[method] = f"{ctx.params.arch}: {error}"
    return skipped


def runnable_methods(ctx: context.Context) -> tuple[list[str], dict[str, str]]:
    """The population's methods that can run on its architecture, and those that cannot, with why."""
    skipped = not_applicable(ctx, population_methods(ctx.params))
    methods = [m for m in population_methods(ctx.params) if m not in skipped]
    if not methods:
        raise ParamsError("no method in 'methods' can run on this architecture: " + "; ".join(
            f"{m}: {why}" for m, why in skipped.items()))
    return methods, skipped


def population_seeds(ctx: context.Context, n_models: int) -> dict[str, list[int]]:
    """The initialisation seeds of the originals and of retrain sets A and B."""
    seeds = [ctx.for_replica(r).seeds for r in range(n_models)]
    return {"originals": [s["original"] for s in seeds], "retrain_a": [s["gold"] for s in seeds],
            "retrain_b": [s["gold2"] for s in seeds]}


def evaluation_subsets(ctx: context.Context) -> dict[str, torch.Tensor]:
    """Positions, within each set's outputs, of the samples whose margins are compared (seeded, fixed)."""
    draws = generator(ctx.params.seed, "population/subsets")
    subsets = {"forget": torch.arange(len(ctx.splits.forget))}
    for name in ("retain", "test"):
        n = len(getattr(ctx.splits, name))
        subsets[name] = torch.randperm(n, generator=draws)[:SUBSET_SIZE].sort().values
    return subsets


def build_replica(ctx: context.Context, methods: list[str], subsets: dict[str, torch.Tensor],
                  step=lambda label: None, out_dir: Path | None = None) -> Replica:
    """Train or fetch replica `ctx.replica`'s models, run every method once, and measure them.

    With `out_dir`, the models its replica file already holds are not run again, and the file is
    written after each model (experiments/replicas.py)."""
    r = ctx.replica
    out = load(out_dir, ctx) if out_dir is not None else Replica()
    todo = [m for m in methods if m not in out.margins]
    twin = any(reads_predictor(row(ctx.params, m)) for m in methods)
    if not todo and {"retrain_a", "retrain_b"} <= set(out.margins) and "floor" in out.metrics:
        for label in ["original", "retrain_a", "retrain_b", *(["twin"] if twin else []), *methods]:
            step(label)
        return out
    env = runs.environment(ctx.device)

    def saved() -> None:
        if out_dir is not None:
            save(out_dir, ctx, out, env)

    for label, build in (("original", lambda: context.original_model(ctx)),
                         ("retrain_a", lambda: context.gold_model(ctx, 0)),
                         ("retrain_b", lambda: context.gold_model(ctx, 1))):
        out.seconds[f"{label}_{r}"] = build()[1]["seconds"]
        step(label)
    refs = scoring.references(ctx)
    labels = {s: ctx.subset(s)[1] for s in SETS}

    def keep(name: str, outputs) -> None:
        if name in out.margins:  # read from the replica file: the file's numbers stand
            return
        out.margins[name] = {s: margins(getattr(outputs, s)[subsets[s]], labels[s][subsets[s]]).astype(np.float32)
                             for s in SETS}
        forget = subsets["forget"]
        out.confidences[name] = logit_scaled_confidence(outputs.forget[forget], labels["forget"][forget])

    gold_rate = scoring.member_rate(ctx, refs.gold_outputs)
    keep("retrain_a", refs.gold_outputs)
    keep("retrain_b", refs.gold2_outputs)
    out.metrics.setdefault("floor", dict(scoring.score(ctx, refs.gold2_outputs, refs.gold_outputs, gold_rate),
                                         time_s=refs.timing["gold2_s"]))
    saved()
    pred = None
    if any(reads_predictor(row(ctx.params, m)) for m in todo):
        pred, timing = generalization.tmu_predict_easy(ctx, refs.original)
        out.seconds[f"tmu_one_off_{r}"] = timing["tmu_one_off_s"]
    if twin:
        step("twin")
    for method in methods:
        if method not in todo:
            step(method)
            continue
        if method == "original":
            outputs, seconds = context.model_outputs(ctx, refs.original), 0.0
        else:
            outputs, seconds = runs.method_outputs(ctx, refs, method, pred)
        keep(method, outputs)
        out.metrics[method] = dict(scoring.score(ctx, outputs, refs.gold_outputs, gold_rate), time_s=seconds)
        saved()
        step(method)
    return out


def build_replicas_as_jobs(params_file: str, overrides: list[str], n_models: int, out: Path, executor: str,
                          jobs: int, slurm: SlurmOptions | None) -> None:
    """Build every replica's models in its own job, through the runner `sweep` uses (local processes,
    a SLURM array or in-process); each job fills the cache and its replica file, which the assembly then reads."""
    commands = [Job(f"replica {r}", python_command("population", params_file, "--models", str(n_models), "--out",
                                                   str(out), "--only-replica", str(r), *sum((["--set", o] for o in overrides), [])),
                    out / "logs" / f"replica_{r}.log", {"TMU_PROGRESS": "0"}) for r in range(n_models)]
    failures = run_commands(commands, executor, jobs, slurm, folder=out / ".submitit")
    if failures:
        raise RuntimeError("replicas failed: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in failures.items()))


def evaluate_population(params: Params, n_models: int, out: str | os.PathLike, *, executor: str = "local",
                        jobs: int = 1, slurm: SlurmOptions | None = None, params_file: str | None = None,
                        overrides: list[str] = ()) -> dict:
    """Build (or fetch) the whole population and write population.json, population.md and figures to `out`.

    With a `params_file`, and `jobs` > 1 or another executor than `local`, the replicas are built
    as separate jobs first; the assembly in this process then only reads the cache.
    """
    check(params, n_models)
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = context.prepare(params)  # a missing data set or an impossible split fails here
    methods, skipped = runnable_methods(ctx)
    if params_file is not None and (jobs > 1 or executor != "local"):
        build_replicas_as_jobs(params_file, list(overrides), n_models, out, executor, jobs, slurm)
    subsets = evaluation_subsets(ctx)
    per_replica = len(methods) + 3 + any(reads_predictor(row(params, m)) for m in methods)
    bar = tqdm(total=n_models * per_replica, desc="population models", unit="model",
               disable=not progress_enabled(params.progress))
    replicas = []
    for r in range(n_models):
        def step(label: str, r=r) -> None:
            bar.set_postfix_str(f"replica {r + 1}/{n_models}: {label}")
            bar.update()
        replicas.append(build_replica(ctx.for_replica(r), methods, subsets, step, out))
    bar.close()
    result = assemble(ctx, replicas, methods, subsets)
    result["not_applicable"] = skipped
    result["timing"]["total_s"] = time.perf_counter() - start
    write(result, out)
    return result


def _stack(replicas: list[Replica], model: str, split: str) -> np.ndarray:
    return np.stack([rep.margins[model][split] for rep in replicas]).astype(np.float64)  # (models, samples)


def _confidences(replicas: list[Replica], model: str) -> np.ndarray:
    return np.stack([rep.confidences[model] for rep in replicas])  # (models, forget samples), float32


def _distributional(replicas: list[Replica], model: str, bins: int) -> tuple[dict, dict[str, np.ndarray]]:
    """KLoM per set, U-LiRA on D_f's margins and the challenge's forgetting quality on D_f's confidences,
    of one population of models against retrain A."""
    per_sample = {s: klom(_stack(replicas, model, s), _stack(replicas, "retrain_a", s), bins) for s in SETS}
    forget, reference = _stack(replicas, model, "forget"), _stack(replicas, "retrain_a", "forget")
    forgetting = forgetting_quality(_confidences(replicas, model), _confidences(replicas, "retrain_a"))
    return {"klom": {s: summarize(v) for s, v in per_sample.items()}, "ulira": ulira(forget, reference),
            "forgetting": forgetting}, per_sample


def add_challenge_scores(result: dict) -> None:
    """Each row's challenge score: its forgetting quality F times its mean retain and test accuracy
    over those of the retrained population (retrain B, the floor's models)."""
    floor = result["floor"]
    for entry in [floor, *result["methods"].values()]:
        entry["forgetting"]["score"] = challenge_score(
            entry["forgetting"]["F"], entry["retain_acc"]["mean"], floor["retain_acc"]["mean"],
            entry["test_acc"]["mean"], floor["test_acc"]["mean"])


def _per_run(replicas: list[Replica], key: str) -> dict[str, dict[str, float]]:
    out = {}
    for metric in RUN_METRICS:
        mean, ci = mean_ci([rep.metrics[key][metric] for rep in replicas])
        out[metric] = {"mean": mean, "ci95": ci}
    return out


def assemble(ctx: context.Context, replicas: list[Replica], methods: list[str],
             subsets: dict[str, torch.Tensor]) -> dict:
    """The population.json content, plus (under "samples") the per-sample arrays for notebook 07."""
    n = len(replicas)
    bins = sturges_bins(n)
    floor, floor_samples = _distributional(replicas, "retrain_b", bins)
    floor.update(_per_run(replicas, "floor"))
    result = {"params": ctx.params.to_dict(), "n_models": n, "seeds": population_seeds(ctx, n),
              "env": runs.environment(ctx.device), "data": ctx.dataset.provenance(),
              "evaluation": {"sets": {s: len(v) for s, v in subsets.items()}, "klom_bins": bins,
                             "klom_smoothing": "add-1/2 per bin", "margin_clip": 100.0,
                             "ulira": "per-sample Gaussians, one model held out of each side",
                             "forgetting": FORGETTING_EVALUATION},
              "timing": {"per_model_s": {k: v for rep in replicas for k, v in rep.seconds.items()}},
              "floor": floor, "methods": {}}
    samples = {f"floor/{s}": v for s, v in floor_samples.items()}
    for method in methods:
        entry, per_sample = _distributional(replicas, method, bins)
        entry.update(_per_run(replicas, method))
        result["methods"][method] = entry
        samples.update({f"{method}/{s}": v for s, v in per_sample.items()})
    add_challenge_scores(result)
    for model in ["retrain_a", "retrain_b"] + methods:
        samples[f"margins/{model}"] = _stack(replicas, model, "forget").astype(np.float16)
        samples[f"confidence/{model}"] = _confidences(replicas, model)
    result["samples"] = samples
    return result


def write(result: dict, out: Path) -> None:
    """population.json (without the per-sample arrays), population_samples.npz, population.md, figures."""
    from ..reporting import plots
    from ..reporting.tables import population_table

    samples = result.pop("samples")
    np.savez_compressed(out / "population_samples.npz", **{k: v.astype(np.float32) if v.dtype == np.float64 else v
                                                             for k, v in samples.items()})
    tmp = out / "population.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, allow_nan=True))
    tmp.replace(out / "population.json")
    (out / "population.md").write_text(population_table(result))
    figures = out / "figures"
    plots.save_fig(plots.plot_klom_cdf({k.split("/")[0]: v for k, v in samples.items() if k.endswith("/forget")}),
                   "klom_cdf_forget", figures)
    plots.save_fig(plots.plot_ulira_roc(result), "ulira_roc", figures)
    result["samples"] = samples
