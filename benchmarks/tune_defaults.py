"""Re-derive the fixed knobs (`tuning: fixed`) with the twin tuner, on seeds that are never reported.

Run: python benchmarks/tune_defaults.py [params/default.yaml] [--seeds 100 101 102]
                                        [--out benchmarks/results/tuning] [--set key=value ...]
For each seed it trains or fetches M_o, M_t, M_c and the features, and tunes every method in
`methods` on the twin problem (tmu_utils/tuning.py); it never trains or reads a gold model. It writes
<out>/<params name>.json (per seed and method: grid, scores, chosen knobs) and <out>/<params name>.md:
per method and knob the value chosen at each seed and their lower median, which is always one of the
chosen values (with three seeds, the middle one). A knob that several methods share in Params
(unlearn_lr, unlearn_epochs, hard_repeat) can take only one fixed value: the table says where the
methods disagree, and the choice is left to whoever sets the defaults.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tmu_utils import pipeline, tuning, tuning_grids
from tmu_utils.params import Params, load_params

REPO = Path(__file__).resolve().parent.parent


def tune_seed(path: str, overrides: list[str], seed: int) -> dict[str, dict]:
    """The tuning records of every tunable method for one seed of the params file."""
    params = load_params(path, overrides + [f"seed={seed}", "tuning=twin", "progress=false"])
    ctx = pipeline.prepare(params)
    original, _ = pipeline.original_model(ctx)
    records, _ = tuning.tune_methods(ctx, original, params.methods)
    # the controls run at tmu's knobs (tuning_grids.TUNED_AS): no choice of their own to report
    return {m: r for m, r in records.items() if "tuned_as" not in r}


def medians(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per method and knob, the lower median of the values chosen across seeds."""
    methods = next(iter(per_seed.values()))
    return {m: {knob: statistics.median_low(per_seed[s][m]["chosen"][knob] for s in per_seed)
                for knob in tuning_grids.KNOBS[m]} for m in methods}


def markdown(name: str, per_seed: dict[int, dict[str, dict]], chosen: dict[str, dict], defaults: Params) -> str:
    """The per-seed choices, their medians and the current fixed values, plus shared-knob conflicts."""
    seeds = list(per_seed)
    lines = [f"# Twin-tuned knobs of `{name}` (seeds {', '.join(map(str, seeds))}; never reported)", "",
             "| method | knob | " + " | ".join(f"seed {s}" for s in seeds) + " | median | fixed now |",
             "|---|---|" + "---|" * (len(seeds) + 2)]
    for method, knobs in chosen.items():
        for knob, value in knobs.items():
            picks = " | ".join(str(per_seed[s][method]["chosen"][knob]) for s in seeds)
            lines.append(f"| {method} | {knob} | {picks} | {value} | {getattr(defaults, knob)} |")
    by_knob: dict[str, dict[str, object]] = {}
    for method, knobs in chosen.items():
        for knob, value in knobs.items():
            by_knob.setdefault(knob, {})[method] = value
    lines += ["", "## Proposed fixed values", ""]
    for knob, values in by_knob.items():
        if len(set(values.values())) == 1:
            lines.append(f"- `{knob}: {next(iter(values.values()))}` ({', '.join(values)})")
        else:
            lines.append(f"- `{knob}`: the methods disagree: " + ", ".join(f"{m} {v}" for m, v in values.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/default.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tuning"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = tune_seed(args.params, args.overrides, seed)
        print(f"seed {seed}: " + "; ".join(f"{m} {r['chosen']}" for m, r in per_seed[seed].items()), flush=True)
    defaults = load_params(args.params, args.overrides)
    chosen = medians(per_seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.params).stem
    (out / f"{name}.json").write_text(json.dumps({"params": args.params, "overrides": args.overrides,
                                                  "seeds": per_seed, "median": chosen}, indent=1))
    (out / f"{name}.md").write_text(markdown(name, per_seed, chosen, defaults))
    print((out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
