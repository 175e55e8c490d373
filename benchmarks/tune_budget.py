"""How many grid points the twin tuner needs: every method's alignment with the gold model at each
`tune_budget`, on the tuning seeds only (never reported, so looking at their gold model chooses nothing
that a table reports).

Run: python -m tmu_utils sweep params/sweeps/tune_budget.yaml --out DIR --direct
     python benchmarks/tune_budget.py DIR [--out benchmarks/results/tune_budget]
Reads DIR/tune_budget=<b>/<seed>/results.json and writes <out>/budget.md: per method and budget the
mean over seeds of ToW, AD and Δforget against the gold model, and per method the seeds' ToW
differences between each budget and the largest (the same models at every budget, so the
difference is the tuner's alone). The cost of budgets 6 and 8 is in benchmarks/results/tuning/cost_*.md
(made by benchmarks/tuning_cost.py at commit fc701ba, removed since).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_sweep(root: Path) -> dict[int, dict[int, dict]]:
    """results.json per budget and seed under a sweep folder of `tune_budget` runs."""
    runs: dict[int, dict[int, dict]] = {}
    for path in sorted(root.glob("tune_budget=*/*/results.json")):
        results = json.loads(path.read_text())
        if results.get("complete"):
            runs.setdefault(int(path.parent.parent.name.split("=")[1]), {})[int(path.parent.name)] = results
    if not runs:
        raise SystemExit(f"no complete tune_budget=<b>/<seed>/results.json under {root}")
    seeds = {b: sorted(r) for b, r in runs.items()}
    if len({tuple(s) for s in seeds.values()}) != 1:
        raise SystemExit(f"the budgets were run at different seeds: {seeds}")
    return dict(sorted(runs.items()))


def markdown(runs: dict[int, dict[int, dict]]) -> str:
    budgets = list(runs)
    top = budgets[-1]
    seeds = sorted(runs[top])
    methods = list(runs[top][seeds[0]]["methods"])
    mean = lambda b, m, k: statistics.mean(runs[b][s]["methods"][m][k] for s in seeds)  # noqa: E731
    lines = [f"# Twin tuning at `tune_budget` {', '.join(map(str, budgets))} (seeds {', '.join(map(str, seeds))}; "
             "never reported)", "",
             "Mean over the seeds against each seed's gold model: ToW (higher is better), AD and Δforget in pp "
             "(lower is better). The originals, twins and gold models are the same at every budget.", "",
             "| method | " + " | ".join(f"{b} points: ToW / AD / Δforget" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for m in methods:
        cells = [f"{mean(b, m, 'tow'):.3f} / {mean(b, m, 'activation_distance'):.3f} / "
                 f"{100 * mean(b, m, 'delta_forget'):.2f}" for b in budgets]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"Per seed, ToW at each budget minus ToW at {top} points (seeds {', '.join(map(str, seeds))}):", "",
              "| method | " + " | ".join(f"{b} − {top}" for b in budgets[:-1]) + " |",
              "|---|" + "---|" * (len(budgets) - 1)]
    for m in methods:
        cells = [", ".join(f"{runs[b][s]['methods'][m]['tow'] - runs[top][s]['methods'][m]['tow']:+.3f}" for s in seeds)
                 for b in budgets[:-1]]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="the output folder of params/sweeps/tune_budget.yaml")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tune_budget"))
    args = parser.parse_args(argv)
    text = markdown(read_sweep(Path(args.sweep)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "budget.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
