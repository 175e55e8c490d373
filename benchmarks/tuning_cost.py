"""What `tuning: twin` costs: the wall time of a whole run with it, against the same run with `tuning: fixed`.

Run: python benchmarks/tuning_cost.py [params/default.yaml] [--seed 100] [--out benchmarks/results/tuning]

Both `--direct` runs (the pipeline without the notebooks) start from an empty cache of their own (every model trained, as a new user's first run),
one after the other in this process's environment (pin it, e.g. `taskset -c 0`, and run nothing
else meanwhile). Then both run again on their caches with the unlearned outputs and tunings removed
(the models kept): the cost of the method stage alone. Prints and writes <out>/cost_<name>.md with
the wall times, their ratios and the stage times the twin run recorded.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_run(params: str, seed: int, tuning: str, cache: Path, out: Path) -> tuple[float, dict]:
    command = [sys.executable, "-m", "tmu_utils", "run", params, "--direct"]
    for item in (f"seed={seed}", f"tuning={tuning}", f"cache_dir={cache}", f"out_dir={out}", "progress=false"):
        command += ["--set", item]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/default.yaml")
    parser.add_argument("--seed", type=int, default=100)  # a tuning seed, never reported
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tuning"))
    args = parser.parse_args(argv)
    wall: dict[str, dict[str, float]] = {"fresh": {}, "models cached": {}}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tuning in ("fixed", "twin"):
            cache, out = Path(tmp) / f"cache-{tuning}", Path(tmp) / f"out-{tuning}"
            wall["fresh"][tuning], results[tuning] = timed_run(args.params, args.seed, tuning, cache, out)
            print(f"fresh {tuning}: {wall['fresh'][tuning]:.1f} s", flush=True)
        for tuning in ("fixed", "twin"):
            cache, out = Path(tmp) / f"cache-{tuning}", Path(tmp) / f"out-{tuning}"
            for kind in ("unlearned", "tuning", "twin_matched"):
                shutil.rmtree(cache / kind, ignore_errors=True)
            wall["models cached"][tuning], _ = timed_run(args.params, args.seed, tuning, cache, out)
            print(f"models cached {tuning}: {wall['models cached'][tuning]:.1f} s", flush=True)
    timing = results["twin"]["timing"]
    tuning_s = {m: r["tuning_s"] for m, r in results["twin"]["tuning"].items() if "tuned_as" not in r}
    lines = [f"# Cost of `tuning: twin` on `{args.params}` (seed {args.seed})", "",
             "Whole `python -m tmu_utils run` wall times, one process at a time.", "",
             "| start | fixed (s) | twin (s) | twin / fixed |", "|---|---|---|---|"]
    for start, w in wall.items():
        lines.append(f"| {start} | {w['fixed']:.1f} | {w['twin']:.1f} | {w['twin'] / w['fixed']:.2f} |")
    lines += ["", f"The twin run's shared tuning cost (its M_t, TMU's out-of-fold splits): "
              f"{timing.get('tuning_shared_s', 0.0):.1f} s; per method (controls run at tmu's knobs and cost "
              "nothing):", "", "| method | tuning (s) |", "|---|---|"]
    lines += [f"| {m} | {s:.1f} |" for m, s in sorted(tuning_s.items(), key=lambda kv: -kv[1])]
    lines += ["", f"Sum over methods: {sum(tuning_s.values()):.1f} s."]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cost_{Path(args.params).stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
