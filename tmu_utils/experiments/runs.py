"""One run: each method's outputs with the easy/hard split it is handed (`method_outputs`), its
folder and environment, `evaluate(ctx)` scoring every method into results.json (docs/design.md gives
the schema), and `run(params)` for the whole run in this process."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..core import context
from ..core.context import Outputs
from ..core.params import Params, params_hash
from ..core.variants import Row, is_tmu, reads_predictor, row, rows
from ..core.training import progress_enabled
from ..evaluation.scoring import References, member_rate, references, score
from ..method.generalization import tmu_predict_easy
from ..method.predictor import PredictorOutput, quality_report
from ..unlearning import runner
from .tuning import method_context, ran_knobs, tune_methods, tuned_elsewhere, tuning_mode

REPO_ROOT = Path(__file__).resolve().parents[2]


def easy_split(ctx: context.Context, refs: References, r: Row, pred: PredictorOutput | None) -> torch.Tensor | None:
    """The easy/hard split of D_f a TMU row is handed (`tmu_split`); None for a baseline."""
    if not is_tmu(r):
        return None
    split = r.params.tmu_split
    if split == "gold":  # the oracle control: the gold model's own split, an upper bound
        return refs.true_easy
    if split == "none":
        return torch.zeros_like(refs.true_easy)
    return runner.random_rank(ctx, pred.easy) if split == "random" else pred.easy


def method_outputs(ctx: context.Context, refs: References, name: str,
                   pred: PredictorOutput | None = None) -> tuple[Outputs, float]:
    """Outputs and unlearning time of one row (a method or a variant); TMU rows get their split here."""
    ctx = method_context(ctx, refs.original, name)  # its knobs: twin-tuned (cached) or the fixed table's
    r = row(ctx.params, name)
    if reads_predictor(r) and pred is None:
        raise ValueError(f"row {name!r} needs the predictor's output (pred)")
    target_inputs = {}
    if is_tmu(r) and pred is not None:  # soft, margin, the calibrated step: P(easy), the unseen margins
        target_inputs = {"easy_proba": pred.proba, "unseen_margins": pred.unseen_margins}
    return runner.unlearned_outputs(ctx, name, refs.original, easy_split(ctx, refs, r, pred), **target_inputs)


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


def evaluate(ctx: context.Context) -> dict:
    """Every stage and every method in `params.methods`, scored against the gold model (docs/method.md).

    results.json is rewritten after each method, so an interrupted run keeps what it measured.
    """
    params = ctx.params
    out_dir = run_dir(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(ctx.splits.to_dict(), out_dir / "splits.pt")
    results: dict[str, Any] = {"params": params.to_dict(), "params_hash": params_hash(params, params.to_dict()),
                               "env": environment(ctx.device), "data": ctx.dataset.provenance(),
                               "splits": ctx.splits.sizes(),
                               "seeds": {"splits": params.seed, "original": ctx.seeds["original"],
                                         "gold": ctx.seeds["gold"], "gold2": ctx.seeds["gold2"]},
                               "tuning_mode": tuning_mode(params), "complete": False}
    elsewhere = tuned_elsewhere(params)
    if elsewhere and results["tuning_mode"] == "fixed":
        print(f"tuning: fixed knobs ({params.fixed_knobs}) tuned on {elsewhere['dataset']}/{elsewhere['arch']}, "
              f"run on {params.dataset}/{params.arch}; tuning=auto would tune every method on this run's twin "
              "problem here (docs/tuning.md)", flush=True)
    elif elsewhere and params.tuning == "auto":
        print(f"tuning: auto -> twin: the fixed knobs ({params.fixed_knobs}) were tuned on {elsewhere['dataset']}/"
              f"{elsewhere['arch']}, not {params.dataset}/{params.arch}, so every method is tuned on this run's twin "
              f"problem (twin_match {params.twin_match}; docs/tuning.md; tuning=fixed reads the table instead)",
              flush=True)
    refs = references(ctx)
    results["timing"] = dict(refs.timing)
    gold_rate = member_rate(ctx, refs.gold_outputs)
    gold_metrics = score(ctx, refs.gold_outputs, refs.gold_outputs, gold_rate)
    floor = score(ctx, refs.gold2_outputs, refs.gold_outputs, gold_rate)
    floor.update(time_s=refs.timing["gold2_s"], rte=refs.timing["gold_s"] / refs.timing["gold2_s"])
    floor["rte_with_one_off"] = floor["rte"]
    results["noise_floor"] = floor

    pred = None
    if any(reads_predictor(r) for r in rows(params)):
        pred, tmu_timing = tmu_predict_easy(ctx, refs.original)
        results["timing"].update(tmu_timing)
        results["predictor"] = quality_report(pred.proba, pred.easy, refs.true_easy, pred.twin_easy_rate,
                                              pred.twin_cv_accuracy)
        results["predictor"]["threshold"] = pred.threshold
        if params.forget_scenario == "class":
            results["predictor"]["note"] = ("class scenario: every forget sample is treated as hard, so TMU "
                                            "relabels all of D_f without a twin problem or predictor")

    if results["tuning_mode"] == "twin":  # each method's knobs, chosen on the twin problem (docs/tuning.md)
        results["tuning"], results["timing"]["tuning_shared_s"] = tune_methods(ctx, refs.original, params.methods)
        write_results(out_dir, results)

    results["methods"] = {}
    bar = tqdm(params.methods, desc="methods", disable=not progress_enabled(params.progress), leave=False)
    for method in bar:
        bar.set_postfix_str(method)
        if method == "original":
            metrics = score(ctx, context.model_outputs(ctx, refs.original), refs.gold_outputs, gold_rate)
            metrics.update(time_s=0.0, rte=None, rte_with_one_off=None)
        elif method == "retrain":
            metrics = dict(gold_metrics, time_s=refs.timing["gold_s"], rte=1.0, rte_with_one_off=1.0)
        else:
            outputs, seconds = method_outputs(ctx, refs, method, pred)
            metrics = score(ctx, outputs, refs.gold_outputs, gold_rate)
            # The rows that read the predictor also pay for M_t, M_c, the features and the predictor.
            one_off = results["timing"].get("tmu_one_off_s", 0.0) if reads_predictor(row(params, method)) else 0.0
            metrics.update(time_s=seconds, rte=refs.timing["gold_s"] / seconds,
                           rte_with_one_off=refs.timing["gold_s"] / (seconds + one_off),
                           knobs=ran_knobs(method_context(ctx, refs.original, method), method))
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
    from ..reporting import plots

    results = evaluate(context.prepare(params))
    plots.save_run_figures(results, run_dir(params) / "figures")
    return results
