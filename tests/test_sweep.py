"""Sweeps: expansion, 95 % CIs, failure isolation, resume, and the summary files."""
import argparse
import csv
import math
import os
import sys
from pathlib import Path

import pytest

from tmu_utils.__main__ import main
from tmu_utils.core.params import ParamsError
from tmu_utils.experiments.executors import Job, add_executor_arguments, run_commands, slurm_options
from tmu_utils.experiments.sweep import SUMMARY_METRICS, expand, mean_ci
from tmu_utils.reporting import tables

ROOT = Path(__file__).resolve().parent.parent


def test_expand_grid_times_seeds(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {ROOT / 'params' / 'smoke.yaml'}\nseeds: [0, 1, 2]\n"
                    "grid: {forget_fraction: [0.05, 0.1], features: [[df], [df, cf]]}\nset: {epochs: 2}\n")
    base, runs = expand(spec, tmp_path / "out")
    assert base.name == "smoke.yaml" and len(runs) == 2 * 2 * 3
    labels = {r.label for r in runs}
    assert "forget_fraction=0.05,features=[df, cf]" in labels
    assert all("epochs=2" in r.overrides and f"seed={r.seed}" in r.overrides for r in runs)
    assert len({r.out for r in runs}) == len(runs)


def test_expand_rejects_unknown_sweep_keys(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("base: params/smoke.yaml\nseed: [0]\n")
    with pytest.raises(ParamsError, match="unknown sweep key"):
        expand(spec, tmp_path)


def test_mean_ci_matches_student_t():
    mean, ci = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_ci([5.0])[1]) and mean_ci([5.0])[0] == 5.0
    assert mean_ci([1.0, float("nan"), 3.0])[0] == 2.0


def test_markdown_table_has_one_line_per_row_and_equal_column_counts():
    table = tables.markdown_table(["method", "n"], [["tmu", 2], ["scrub", 3]]).splitlines()
    assert table == ["| method | n |", "|---|---|", "| tmu | 2 |", "| scrub | 3 |"]
    assert tables.fmt("delta_forget", 0.0123, 0.0045) == "1.23 ± 0.45" and tables.fmt("tow", None) == "–"


def test_sweep_isolates_failures_resumes_and_summarises(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMU_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"base: {ROOT / 'params' / 'smoke.yaml'}\nseeds: [0, 1]\n"
                    "grid: {forget_fraction: [0.1, 1.5]}\n"  # 1.5 is impossible: those runs must fail alone
                    "set: {methods: [original, retrain, tmu, tmu_all_hard]}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--jobs", "2", "--direct"]) == 1
    captured = capsys.readouterr()
    assert "failed: forget_fraction=1.5" in captured.err and "forget_fraction" in captured.err
    assert (out / "forget_fraction=0.1" / "0" / "results.json").exists()
    assert (out / "forget_fraction=0.1" / "1" / "results.json").exists()
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"label", "method", "metric", "mean", "ci95", "n"}
    tmu = [r for r in rows if r["method"] == "tmu" and r["metric"] == "delta_forget"]
    assert len(tmu) == 1 and tmu[0]["n"] == "2" and math.isfinite(float(tmu[0]["ci95"]))
    summary = (out / "summary.md").read_text()
    assert "± " in summary
    # the same column labels as the run's own table (tables.results_table) and the notebooks
    header = next(line for line in summary.splitlines() if line.startswith("| method | n |"))
    assert [cell.strip() for cell in header.strip("|").split("|")][2:] == [tables.label(k) for k in SUMMARY_METRICS]
    assert "Δforget pp" in header and f"| {tables.NOISE_FLOOR_LABEL} |" in summary

    assert main(["sweep", str(spec), "--out", str(out), "--jobs", "2", "--direct"]) == 1
    assert "2 already done, 0 to run" in capsys.readouterr().out


    # 06 reads only results: once over the finished sweep (as `sweep` without --direct runs it)
    from tmu_utils.experiments import notebooks, sweep

    assert {(r.label, r.seed) for r in sweep.find_runs(out)} == {("forget_fraction=0.1", 0), ("forget_fraction=0.1", 1)}
    report_nb = notebooks.run_sweep_report(out)
    assert report_nb.is_file() and (out / "figures" / "sweep_delta_0.png").is_file()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("executor", ["local", "debug"])
def test_run_commands_isolates_failures_and_shares_cores(tmp_path, executor):
    jobs = [Job("threads", _python("import os; print(os.environ['OMP_NUM_THREADS'], os.environ['EXTRA'])"),
                tmp_path / "a" / "run.log", {"EXTRA": "yes"}),
            Job("exit 3", _python("print('about to fail'); raise SystemExit(3)"), tmp_path / "b" / "run.log"),
            Job("no program", [str(tmp_path / "missing")], tmp_path / "c" / "run.log")]
    lines = []
    failures = run_commands(jobs, executor, jobs_at_once=2, log=lines.append, folder=tmp_path / "submitit")
    assert set(failures) == {"exit 3", "no program"}
    assert failures["exit 3"] == [f"exit 3, log {tmp_path / 'b' / 'run.log'}"]
    assert "about to fail" in (tmp_path / "b" / "run.log").read_text()
    at_once = 2 if executor == "local" else 1  # debug runs one job at a time
    expected = max(1, (os.cpu_count() or 1) // at_once)
    assert (tmp_path / "a" / "run.log").read_text().split() == [str(expected), "yes"]
    assert any(line.startswith("  threads: ok") for line in lines)


def test_slurm_options_from_a_cluster_file_and_flags(tmp_path):
    parser = argparse.ArgumentParser()
    add_executor_arguments(parser)
    args = parser.parse_args(["--cluster", str(ROOT / "params" / "cluster" / "gpu.yaml"), "--timeout-min", "5"])
    options = slurm_options(args)
    assert options.gpus_per_job == 1 and options.partition and options.timeout_min == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus: 1\n")
    with pytest.raises(ValueError, match="unknown SLURM option"):
        slurm_options(parser.parse_args(["--cluster", str(bad)]))


def test_sweep_with_the_debug_executor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMU_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"base: {ROOT / 'params' / 'smoke.yaml'}\nseeds: [0]\nset: {{methods: [original, retrain]}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--executor", "debug", "--direct"]) == 0
    assert "in this process" in capsys.readouterr().out
    assert (out / "base" / "0" / "results.json").exists() and (out / "summary.csv").exists()


def test_slurm_executor_without_slurm_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    argv = ["sweep", str(ROOT / "params" / "sweeps" / "smoke2.yaml"), "--out", str(tmp_path / "out"), "--direct",
            "--executor", "slurm"]
    assert main(argv) == 2
    assert "cannot use the slurm executor here" in capsys.readouterr().err
