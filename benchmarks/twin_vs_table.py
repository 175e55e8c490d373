"""Twin tuning (`tuning: twin`) against the fixed-knobs table (`tuning: fixed`, what `auto` runs), both
scored against the gold model: does the twin problem's choice transfer to data the table was not tuned on?

Run: python benchmarks/twin_vs_table.py [params/default.yaml] --set dataset=mnist [--seeds 100 101 102]
                                        [--out runs/twin_vs_table]
Each seed runs `tmu_utils run --direct` (in this process) twice, at tuning=twin and at
tuning=fixed, into <out>/<mode>/<seed>/results.json (the models are cached, so the second run only
unlearns); a seed whose results.json is complete is read again, not re-run, so an interrupted
comparison resumes. Writes <out>/summary.md: per method the mean ± sd over the seeds of Δforget (pp)
and the mean ToW, both ways, and the knobs twin tuning chose at each seed. The gold model only scores
here; it chooses nothing. (Named auto_vs_table.py while `auto` twin-tuned off the default data: the
folders benchmarks/results/auto_* it wrote then hold `auto/` for what is now `twin/`.)
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tmu_utils.__main__ import main as cli

REPO = Path(__file__).resolve().parent.parent
MODES = ("twin", "fixed")


def run_in(params: str, folder: Path, settings: list[str]) -> dict:
    """results.json of `tmu_utils run --direct` on `params` with `settings` into `folder`: read again
    when it is already complete there, else run in this process."""
    path = folder / "results.json"
    if not (path.is_file() and json.loads(path.read_text()).get("complete")):
        argv = ["run", str(REPO / params), "--direct", "--quiet", "--out", str(folder)]  # absolute stays so
        for item in (*settings, "progress=false"):
            argv += ["--set", item]
        if cli(argv) != 0:
            raise SystemExit(f"the run into {folder} failed")
    return json.loads(path.read_text())


def run(params: str, seed: int, mode: str, out: Path, overrides: list[str]) -> dict:
    return run_in(params, out / mode / str(seed), [*overrides, f"seed={seed}", f"tuning={mode}"])


def mean_sd(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def summary(results: dict[str, dict[int, dict]], title: str) -> str:
    seeds = list(results["twin"])
    first = results["twin"][seeds[0]]
    modes = {m: {r.get("tuning_mode") for r in results[m].values()} for m in MODES}
    lines = [f"# {title}", "", f"Seeds {', '.join(map(str, seeds))}; `tuning: twin` ran as {sorted(modes['twin'])}, "
             f"`tuning: fixed` as {sorted(modes['fixed'])}. Δforget in pp against the gold model, mean ± sd "
             "over the seeds; ToW the mean.", "",
             "| method | Δforget twin | Δforget table | ToW twin | ToW table |", "|---|---|---|---|---|"]
    for method in first["methods"]:
        delta = {m: [r["methods"][method]["delta_forget"] * 100 for r in results[m].values()] for m in MODES}
        tow = {m: [r["methods"][method]["tow"] for r in results[m].values()] for m in MODES}
        lines.append(f"| {method} | {mean_sd(delta['twin'], 2)} | {mean_sd(delta['fixed'], 2)} | "
                     f"{statistics.mean(tow['twin']):.3f} | {statistics.mean(tow['fixed']):.3f} |")
    floor = [r["noise_floor"]["delta_forget"] * 100 for r in results["twin"].values()]
    lines += [f"| noise floor (M_g') | {mean_sd(floor, 2)} | | | |", "",
              "Per seed, Δforget pp twin / table (the two runs share M_o, M_g and the predictor):", "",
              "| seed | noise floor | " + " | ".join(first["methods"]) + " |",
              "|---|---|" + "---|" * len(first["methods"])]
    for seed, r in results["twin"].items():
        pairs = [f"{r['methods'][m]['delta_forget'] * 100:.2f} / "
                 f"{results['fixed'][seed]['methods'][m]['delta_forget'] * 100:.2f}" for m in first["methods"]]
        lines.append(f"| {seed} | {r['noise_floor']['delta_forget'] * 100:.2f} | " + " | ".join(pairs) + " |")
    lines += ["", "Knobs twin tuning chose:", ""]
    for seed, r in results["twin"].items():
        chosen = {m: t["chosen"] for m, t in r.get("tuning", {}).items() if "tuned_as" not in t}
        lines.append(f"- seed {seed}: " + "; ".join(f"{m} {k}" for m, k in chosen.items()))
    lines += ["", "Chosen on an edge of the values tried (a sign the grid may be too narrow there):", ""]
    for seed, r in results["twin"].items():
        edges = [f"{m} {e}" for m, t in r.get("tuning", {}).items() if "tuned_as" not in t for e in grid_edges(t)]
        lines.append(f"- seed {seed}: " + ("; ".join(edges) if edges else "none"))
    lines += ["", "The predictor (the same at both modes: tuning never changes it) and the cost of tuning:", "",
              "| seed | twin easy rate | true easy rate | predicted easy rate | AUC | tuning s (twin) |",
              "|---|---|---|---|---|---|"]
    for seed, r in results["twin"].items():
        p = r["predictor"]
        spent = r["timing"].get("tuning_shared_s", 0.0) + sum(t.get("tuning_s", 0.0) for t in r.get("tuning", {}).values()
                                                                 if "tuned_as" not in t)  # a shared tuning once
        lines.append(f"| {seed} | {p['twin_easy_rate']:.3f} | {p['true_easy_rate']:.3f} | "
                     f"{p['predicted_easy_rate']:.3f} | {p['auc']:.3f} | {spent:.0f} |")
    return "\n".join(lines) + "\n"


def grid_edges(tuned: dict) -> list[str]:
    """Each knob whose chosen value is the lowest or highest among the grid points tuning tried,
    as 'knob=value (lowest)' or '(highest)'; a knob tried at one value only has no edge."""
    found = []
    for knob, value in tuned["chosen"].items():
        tried = sorted({point[knob] for point in tuned["grid"]})
        if len(tried) > 1 and value in (tried[0], tried[-1]):
            found.append(f"{knob}={value} ({'lowest' if value == tried[0] else 'highest'})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/default.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--out", default=str(REPO / "runs" / "twin_vs_table"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = {mode: {seed: run(args.params, seed, mode, out, args.overrides) for seed in args.seeds}
               for mode in MODES}
    shown = [o for o in args.overrides if not o.startswith("cache_dir=")]  # where models live is no setting
    title = f"Twin tuning against the fixed-knobs table: {args.params} {' '.join(shown)}".strip()
    (out / "summary.md").write_text(summary(results, title))
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
