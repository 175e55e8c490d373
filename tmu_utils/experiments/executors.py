"""Run a list of shell-free commands, each in its own process: here (`local`), as a SLURM job array
(`slurm`) or in this process one after the other (`debug`). The scheduling is submitit's; this
module only says what one job is and collects the outcomes.

`sweep` and `population` both call `run_commands`:

    jobs = [Job(label="seed 0", argv=[sys.executable, "-m", "tmu_utils", "run", ...], log=out / "run.log")]
    failures = run_commands(jobs, executor="slurm", slurm=SlurmOptions(partition="gpu", gpus_per_job=1))

Every job writes its command's stdout and stderr to its own log file, in the shared output
folder; a failed job is reported with that log and never stops the others.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import yaml

EXECUTORS = ("local", "slurm", "debug")


class SubmissionError(RuntimeError):
    """The jobs could not be submitted at all (no SLURM here, controller down, options refused)."""


@dataclass
class Job:
    """One command to run in its own process."""

    label: str  # how the job is named in progress lines and failures, e.g. "forget_fraction=0.1 seed 0"
    argv: list[str]  # the full command, e.g. [sys.executable, "-m", "tmu_utils", "run", ...]
    log: Path  # the command's stdout and stderr go here
    env: dict[str, str] = field(default_factory=dict)  # set on top of the environment the job runs in
    cwd: str = field(default_factory=os.getcwd)  # relative paths in argv resolve from here


@dataclass
class SlurmOptions:
    """What each job of the array asks SLURM for."""

    partition: str = ""  # empty means the cluster's default partition
    gpus_per_job: int = 0  # GPUs per job (0 asks for none)
    cpus_per_job: int = 1  # CPU cores per job; the job's torch uses this many threads
    timeout_min: int = 60  # SLURM kills a job after this many minutes
    array_parallelism: int = 0  # jobs of the array running at once (0 = as many as SLURM allows)


def run_command(job: Job) -> tuple[int, float]:
    """Run one job's command and return (exit status, wall seconds): the body of every executor."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(job.log, "w") as log:
        try:
            code = subprocess.run(job.argv, stdout=log, stderr=subprocess.STDOUT, cwd=job.cwd,
                                  env={**os.environ, **job.env}).returncode
        except OSError as e:  # e.g. no such program: a failure of this job, not of the others
            print(f"cannot start {job.argv[0]!r}: {e}", file=log)
            code = 127
    return code, time.perf_counter() - start


def _thread_env(executor: str, jobs_at_once: int, slurm: SlurmOptions) -> str:
    if executor == "slurm":
        return str(max(1, slurm.cpus_per_job))
    # Several torch processes each using every core thrash (measured 15x slower); share them out.
    at_once = 1 if executor == "debug" else max(1, jobs_at_once)
    return str(max(1, (os.cpu_count() or 1) // at_once))


def run_commands(jobs: list[Job], executor: str = "local", jobs_at_once: int = 1, slurm: SlurmOptions | None = None,
                 log: Callable[[str], None] = print, folder: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Run every job with `executor` and wait for all of them; return {label: [failure message]}.

    local: `jobs_at_once` processes at a time on this machine. slurm: one SLURM job array, one
    task per job, sized by `slurm`. debug: in this process, one job after the other. Each job
    gets OMP_NUM_THREADS (unless its env sets it): the cores shared out between the local jobs
    running at once, or `slurm.cpus_per_job`. `folder` holds submitit's job files and SLURM's own
    logs (default: `.submitit` next to the first job's log folder).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    slurm = slurm or SlurmOptions()
    threads = _thread_env(executor, jobs_at_once, slurm)
    jobs = [Job(j.label, list(j.argv), Path(j.log).resolve(), {"OMP_NUM_THREADS": threads, **j.env}, j.cwd)
            for j in jobs]
    failures: dict[str, list[str]] = {}

    def report(job: Job, code: int, seconds: float, log_path: Path) -> None:
        status = "ok" if code == 0 else f"FAILED (exit {code}, see {log_path})"
        log(f"  {job.label}: {status} in {seconds:.0f}s")
        if code != 0:
            failures.setdefault(job.label, []).append(f"exit {code}, log {log_path}")

    if not jobs:
        return failures
    if executor == "local":
        with ThreadPoolExecutor(max_workers=max(1, jobs_at_once)) as pool:
            for job, (code, seconds) in zip(jobs, pool.map(run_command, jobs)):
                report(job, code, seconds, job.log)
        return failures

    import submitit  # only the cluster and debug executors need it

    folder = Path(folder) if folder else jobs[0].log.parent.parent / ".submitit"
    try:
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=executor)
    except RuntimeError as e:  # submitit finds no `srun` on this machine
        raise SubmissionError(f"cannot use the {executor} executor here: {e}") from None
    options = {"timeout_min": slurm.timeout_min, "cpus_per_task": slurm.cpus_per_job, "name": "tmu"}
    if slurm.gpus_per_job:  # a CPU-only cluster may not know the GPU resource at all: name it only when wanted
        options["gpus_per_node"] = slurm.gpus_per_job
    if slurm.partition:
        options["slurm_partition"] = slurm.partition
    if slurm.array_parallelism:
        options["slurm_array_parallelism"] = slurm.array_parallelism
    ex.update_parameters(**options)
    try:
        submitted = ex.map_array(run_command, jobs)
    except submitit.core.utils.FailedJobError as e:  # sbatch said no: nothing was submitted
        raise SubmissionError(f"SLURM refused the job array: {str(e).strip()}") from None
    if executor == "slurm":
        array_ids = sorted({j.job_id.split("_")[0] for j in submitted})
        log(f"  submitted {len(submitted)} jobs as SLURM job array {', '.join(array_ids)}; "
            f"submitit files in {folder}")
    for job, handle in zip(jobs, submitted):
        try:
            code, seconds = handle.result()
        except Exception as e:  # noqa: BLE001 - the job died outside the command (killed, timed out, no python)
            failures.setdefault(job.label, []).append(f"job {handle.job_id} failed ({type(e).__name__}), "
                                                      f"log {handle.paths.stderr}")
            log(f"  {job.label}: FAILED as a job (see {handle.paths.stderr})")
            continue
        report(job, code, seconds, job.log)
    return failures


_OPTION_DOCS = {
    "partition": "partition to submit to (default: the cluster's)",
    "gpus_per_job": "GPUs per job (default 0)",
    "cpus_per_job": "CPU cores per job (default 1)",
    "timeout_min": "minutes before SLURM kills a job (default 60)",
    "array_parallelism": "jobs of the array at once (default: no limit)",
}


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """The --executor, --jobs and SLURM options shared by `sweep` and `population`."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: --jobs processes here; slurm: a SLURM job array; debug: in this process")
    parser.add_argument("--jobs", type=int, default=1, help="local executor: runs at a time, each in its own process")
    parser.add_argument("--cluster", metavar="FILE",
                        help="a YAML file of SLURM options (e.g. params/cluster/gpu.yaml); flags override it")
    defaults = SlurmOptions()
    for f in fields(SlurmOptions):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(getattr(defaults, f.name)),
                            default=None, help=f"slurm executor: {_OPTION_DOCS[f.name]}")


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    """SlurmOptions from --cluster FILE, then the individual flags; unknown keys in the file are errors."""
    values = {}
    if getattr(args, "cluster", None):
        try:
            values = yaml.safe_load(Path(args.cluster).read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{args.cluster}: {e}") from None
        names = {f.name for f in fields(SlurmOptions)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"{args.cluster}: unknown SLURM option(s) {sorted(unknown)}; allowed: {sorted(names)}")
    for f in fields(SlurmOptions):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    return SlurmOptions(**values)


def python_command(*args: str) -> list[str]:
    """argv for `python -m tmu_utils ARGS` with this interpreter, which the jobs share."""
    return [sys.executable, "-m", "tmu_utils", *args]
