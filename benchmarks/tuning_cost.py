"""What `tuning: twin` costs: the wall time of a whole run with it, against the same run with `tuning: fixed`.

Run: python benchmarks/tuning_cost.py [params/default.yaml] [--seed 100] [--out benchmarks/results/tuning]
                                      [--set key=value ...]

Both `--direct` runs (the pipeline without the notebooks) start from an empty cache of their own, so
every model is trained, as in a new user's first run; they run one after the other in this process's
environment (pin it, e.g. `taskset -c 0`, and run nothing else meanwhile). Prints and writes
<out>/cost_<name>.md with the wall times, their ratio and the tuning times the twin run recorded.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_run(params: str, seed: int, tuning: str, cache: Path, out: Path, overrides: list[str]) -> tuple[float, dict]:
    command = [sys.executable, "-m", "tmu_utils", "run", params, "--direct"]
    for item in (f"seed={seed}", f"tuning={tuning}", f"cache_dir={cache}", f"out_dir={out}", "progress=false",
                 *overrides):
        command += ["--set", item]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/default.yaml")
    parser.add_argument("--seed", type=int, default=100)  # a tuning seed, never reported
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tuning"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    wall, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for tuning in ("fixed", "twin"):
            cache, out = Path(tmp) / f"cache-{tuning}", Path(tmp) / f"out-{tuning}"
            wall[tuning], results[tuning] = timed_run(args.params, args.seed, tuning, cache, out, args.overrides)
            print(f"{tuning}: {wall[tuning]:.1f} s", flush=True)
    timing = results["twin"]["timing"]
    tuning_s = {m: r["tuning_s"] for m, r in results["twin"]["tuning"].items() if "tuned_as" not in r}
    overrides = f" with {', '.join(args.overrides)}" if args.overrides else ""
    lines = [f"# Cost of `tuning: twin` on `{args.params}`{overrides} (seed {args.seed})", "",
             "Whole `python -m tmu_utils run --direct` wall times from an empty cache, one process at a time.", "",
             "| fixed (s) | twin (s) | twin / fixed |", "|---|---|---|",
             f"| {wall['fixed']:.1f} | {wall['twin']:.1f} | {wall['twin'] / wall['fixed']:.2f} |"]
    lines += ["", f"The twin run's shared tuning cost (its M_t, TMU's out-of-fold splits): "
              f"{timing.get('tuning_shared_s', 0.0):.1f} s; per method (controls run at tmu's knobs and cost "
              "nothing):", "", "| method | tuning (s) |", "|---|---|"]
    lines += [f"| {m} | {s:.1f} |" for m, s in sorted(tuning_s.items(), key=lambda kv: -kv[1])]
    lines += ["", f"Sum over methods: {sum(tuning_s.values()):.1f} s."]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "".join(f"_{o.replace('=', '')}" for o in args.overrides)
    (out / f"cost_{Path(args.params).stem}{suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
