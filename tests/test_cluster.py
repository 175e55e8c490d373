"""The smoke sweep as a job array on a real SLURM (`make test-cluster` starts one with .ci/slurm.sh).

Skipped unless TMU_SLURM=1, so a plain `pytest` never needs SLURM.
"""
import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tmu_utils.__main__ import main
from tmu_utils.experiments.executors import Job, SlurmOptions, run_commands

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(os.environ.get("TMU_SLURM") != "1", reason="needs SLURM: run `make test-cluster`")]


@pytest.mark.timeout(900)
def test_smoke_sweep_runs_as_a_slurm_job_array(tmp_path, monkeypatch, capsys):
    assert shutil.which("sbatch"), "TMU_SLURM=1 but there is no sbatch on PATH"
    monkeypatch.setenv("TMU_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sweep"
    argv = ["sweep", str(ROOT / "params" / "sweeps" / "smoke2.yaml"), "--out", str(out), "--direct",
            "--executor", "slurm", "--cpus-per-job", "1", "--timeout-min", "10"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    with capsys.disabled():  # the per-job wall times, for the record
        print("\n" + "\n".join(line for line in printed.splitlines() if "seed" in line or "array" in line))
    array = re.search(r"submitted 2 jobs as SLURM job array (\d+)", printed)
    assert array, printed
    # submitit names each task's files <array id>_<task>: both tasks of one array ran.
    logs = sorted(p.name for p in (out / ".submitit").glob("*/*_log.out"))
    assert logs == [f"{array.group(1)}_0_0_log.out", f"{array.group(1)}_1_0_log.out"], logs
    for seed in (0, 1):
        results = json.loads((out / "base" / str(seed) / "results.json").read_text())
        assert results["complete"] and results["params"]["seed"] == seed
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    tmu = [r for r in rows if r["method"] == "tmu" and r["metric"] == "delta_forget"]
    assert len(tmu) == 1 and tmu[0]["n"] == "2"  # one row averaging both seeds

    # A re-run finds both runs finished and submits nothing.
    assert main(argv) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_a_failing_slurm_job_is_reported_with_its_log_and_the_other_finishes(tmp_path):
    ok = Job("ok", [sys.executable, "-c", "import os; print('task', os.environ['SLURM_ARRAY_TASK_ID'])"],
             tmp_path / "ok" / "run.log")
    fails = Job("fails", [sys.executable, "-c", "print('giving up'); raise SystemExit(4)"], tmp_path / "fails" / "run.log")
    failures = run_commands([ok, fails], "slurm", slurm=SlurmOptions(timeout_min=5), log=lambda line: None,
                            folder=tmp_path / "submitit")
    assert failures == {"fails": [f"exit 4, log {tmp_path / 'fails' / 'run.log'}"]}
    assert (tmp_path / "ok" / "run.log").read_text() == "task 0\n"  # it ran as task 0 of a SLURM array
    assert (tmp_path / "fails" / "run.log").read_text() == "giving up\n"
