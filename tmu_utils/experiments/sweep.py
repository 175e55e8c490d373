"""Parameter sweeps: a base params file × value grids × seeds, each run in its own process (here, N
at a time, or as a SLURM job array: see executors.py); failures are recorded without stopping the
others, finished runs are skipped on a re-run, and the results are summarised as mean ± 95 % CI
across seeds.

A sweep file:
    base: params/default.yaml
    seeds: [0, 1, 2]
    grid: {forget_fraction: [0.05, 0.1]}     # every combination of the lists
    set: {methods: [original, retrain, tmu]}  # optional fixed overrides
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

from ..core.params import ParamsError, load_params
from ..evaluation.metrics import METRIC_KEYS
from ..reporting import tables
from .executors import Job, SlurmOptions, python_command, run_commands

SWEEP_KEYS = {"base", "seeds", "grid", "set"}


@dataclass
class SweepRun:
    """One point of the grid at one seed."""

    label: str  # e.g. "forget_fraction=0.05" ("base" when the grid is empty)
    seed: int
    overrides: list[str]  # key=value strings, seed included
    out: Path

    @property
    def done(self) -> bool:
        """A complete results.json exists."""
        path = self.out / "results.json"
        try:
            return json.loads(path.read_text()).get("complete", False)
        except (OSError, ValueError):
            return False


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def expand(sweep_file: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, list[SweepRun]]:
    """Read a sweep file and list its runs; every run's parameters are validated before any runs."""
    sweep_file = Path(sweep_file)
    spec = yaml.safe_load(sweep_file.read_text()) or {}
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise ParamsError(f"{sweep_file}: unknown sweep key(s) {sorted(unknown)}; allowed: {sorted(SWEEP_KEYS)}")
    if "base" not in spec:
        raise ParamsError(f"{sweep_file}: 'base' (a params file) is required")
    base = Path(spec["base"])
    if not base.is_absolute() and not base.exists():
        base = sweep_file.parent / base
        if not base.exists():
            base = Path(__file__).resolve().parents[2] / spec["base"]
    grid = spec.get("grid") or {}
    fixed = [f"{k}={_yaml_value(v)}" for k, v in (spec.get("set") or {}).items()]
    seeds = spec.get("seeds") or [0]
    runs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        point = [f"{k}={_yaml_value(v)}" for k, v in zip(keys, values)]
        label = ",".join(point) if point else "base"
        for seed in seeds:
            overrides = fixed + point + [f"seed={seed}"]
            runs.append(SweepRun(label, seed, overrides, Path(out) / _safe(label) / str(seed)))
    return base, runs


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "=,._-" else "_" for c in label)


def validate_runs(base: Path, runs: list[SweepRun]) -> dict[str, str]:
    """Parameter errors per run label (a bad grid value fails only its own runs)."""
    errors = {}
    for run in runs:
        try:
            load_params(base, run.overrides)
        except ParamsError as e:
            errors[run.label] = str(e)
    return errors


def execute(base: Path, runs: list[SweepRun], jobs: int = 1, direct: bool = False, log=print,
            executor: str = "local", slurm: SlurmOptions | None = None) -> dict[str, list[str]]:
    """Run every unfinished run with `executor` (local: `jobs` at a time), each in its own process;
    return failures by label."""
    errors = validate_runs(base, runs)
    todo = [r for r in runs if not r.done and r.label not in errors]
    skipped = sum(r.done for r in runs)
    how = {"local": f"{jobs} at a time", "slurm": "as a SLURM job array", "debug": "in this process"}[executor]
    log(f"sweep: {len(runs)} runs, {skipped} already done, {len(todo)} to run, "
        f"{sum(r.label in errors for r in runs)} with bad parameters; {how}")
    failures: dict[str, list[str]] = {label: [msg] for label, msg in errors.items()}
    sweep_root = runs[0].out.parent.parent.resolve() if runs else Path(".")
    commands = []
    for run in todo:
        # Absolute paths: a SLURM job may start in another folder than this process.
        cmd = python_command("run", str(Path(base).resolve()), "--out", str(run.out.resolve()), "--quiet")
        if direct:
            cmd.append("--direct")
        for o in run.overrides:
            cmd += ["--set", o]
        commands.append(Job(f"{run.label} seed {run.seed}", cmd, run.out / "run.log", {"TMU_PROGRESS": "0"}))
    by_job = run_commands(commands, executor, jobs, slurm, log, folder=sweep_root / ".submitit")
    for run in todo:
        for message in by_job.get(f"{run.label} seed {run.seed}", []):
            failures.setdefault(run.label, []).append(f"seed {run.seed}: {message}")
    return failures


def find_runs(folder: str | os.PathLike) -> list[SweepRun]:
    """Every complete run below `folder`: `<folder>/<seed>/results.json` (labelled "base") or
    `<folder>/<setting>/<seed>/results.json`, as a sweep writes them."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.glob("**/results.json")):
        label = "/".join(path.parent.relative_to(folder).parts[:-1]) or "base"
        found.append(SweepRun(label, json.loads(path.read_text())["params"]["seed"], [], path.parent))
    return [run for run in found if run.done]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % Student-t confidence interval (NaN for one value)."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return float("nan"), float("nan")
    n = len(clean)
    mean = sum(clean) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    return mean, stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def collect(runs: list[SweepRun]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(label, method): {metric: [value per seed]}} from every complete results.json."""
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    for run in runs:
        if not run.done:
            continue
        results = json.loads((run.out / "results.json").read_text())
        rows = dict(results["methods"])
        rows["noise_floor"] = results["noise_floor"]
        for method, metrics in rows.items():
            cell = table.setdefault((run.label, method), {})
            for key in METRIC_KEYS:
                cell.setdefault(key, []).append(metrics.get(key))
        if "predictor" in results:
            cell = table.setdefault((run.label, "predictor"), {})
            for key, value in results["predictor"].items():
                cell.setdefault(key, []).append(value)
    return table


SUMMARY_METRICS = ("delta_forget", "avg_gap", "tow", "activation_distance", "js_divergence", "agreement",
                   "forget_acc", "test_acc", "mia_gap", "time_s", "rte", "rte_with_one_off")


def summarize(runs: list[SweepRun], out: str | os.PathLike) -> Path:
    """Write summary.csv (every metric: mean, ci95, n) and summary.md (key metrics, mean ± CI)."""
    out = Path(out)
    table = collect(runs)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "method", "metric", "mean", "ci95", "n"])
        for (label, method), metrics in table.items():
            for key, values in metrics.items():
                mean, ci = mean_ci(values)
                writer.writerow([label, method, key, f"{mean:.6g}", f"{ci:.6g}", len(values)])
    path = out / "summary.md"
    path.write_text(summary_markdown(table))
    return path


def summary_markdown(table: dict[tuple[str, str], dict[str, list[float]]]) -> str:
    """summary.md of `collect`'s table: per setting, each method's key metrics as mean ± 95 % CI."""
    lines = ["# Sweep summary", "", "Mean ± 95 % CI across seeds (Student t). Accuracies, gaps and "
             "agreement in percent (pp for gaps); AD and JS raw; time in seconds.", ""]
    for label in dict.fromkeys(label for label, _ in table):
        rows = []
        for (row_label, method), metrics in table.items():
            if row_label != label or method == "predictor":
                continue
            n = max(len([v for v in vals if v is not None]) for vals in metrics.values())
            name = tables.NOISE_FLOOR_LABEL if method == "noise_floor" else method
            rows.append([name, n, *(tables.fmt(key, *mean_ci(metrics.get(key, []))) for key in SUMMARY_METRICS)])
        lines += [f"## {label}", "",
                  tables.markdown_table(["method", "n", *(tables.label(key) for key in SUMMARY_METRICS)], rows)]
        if (label, "predictor") in table:
            pred = table[(label, "predictor")]
            parts = [f"{k} {mean_ci(pred[k])[0]:.3f}" for k in ("auc", "accuracy", "twin_easy_rate",
                                                                 "true_easy_rate") if k in pred]
            lines += ["", "Predictor: " + ", ".join(parts)]
        lines.append("")
    return "\n".join(lines)
