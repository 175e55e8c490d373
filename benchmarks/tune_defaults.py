"""Re-derive the fixed knobs (`tuning: fixed`) with the twin tuner, on seeds that are never reported.

Run: python benchmarks/tune_defaults.py [params/default.yaml] [--seeds 100 101 102] [--budget 8]
                                        [--out benchmarks/results/tuning] [--tables DIR] [--set key=value ...]
For each seed it trains or fetches M_o, M_t, M_c and the features, and tunes every method in
`methods` on the twin problem (tmu_utils/experiments/tuning/) with `--budget` grid points each; it never trains
or reads a gold model. The table is derived once and read by every fixed run, so it affords more
points than a run's own tuning (`tune_budget`, 6 by default; docs/tuning.md). Per method
and knob the fixed value is the lower median of the values chosen at the seeds, always one of them
(with three seeds, the middle one). It writes
- tmu_utils/fixed_knobs/<params name>.yaml: the table `fixed_knobs: <params name>` reads, per method
  (by its stored name: `tmu` at the hard_only target is tmu_hard_only) its own knobs, and the data set
  and architecture it was tuned for (`tuning: auto` runs tune on the twin problem anywhere else);
- <out>/<params name>.json (per seed and method: grid, scores, chosen knobs) and <out>/<params name>.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

from tmu_utils.core.choices import FIXED_KNOBS_DIR, fixed_knobs_path
from tmu_utils.core.params import Params, load_params
from tmu_utils.experiments.tuning import grids as tuning_grids
from tmu_utils.unlearning import runner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_seeds import tune_seed  # noqa: E402  (a sibling module: one seed's twin tuning)

REPO = Path(__file__).resolve().parent.parent


# Grid points per method of the tunings a table is derived from.
TABLE_BUDGET = 8
# each method at its own twin choice, not at a fixed-knobs table's
FORCED = ["fixed_knobs=none"]


def by_stored_name(params: Params, records: dict[str, dict]) -> dict[str, dict]:
    """One seed's tuning records of every tunable method, by stored name."""
    # the controls run at tmu's knobs (tuning.grids.tuned_as): no choice of their own to report
    return {runner.artefact_name(m, params): r for m, r in records.items() if "tuned_as" not in r}


def medians(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per method and knob, the lower median of the values chosen across seeds."""
    first = next(iter(per_seed.values()))  # stored names (tmu_hard_only_distill_last_block): their own knobs
    return {m: {knob: statistics.median_low(per_seed[s][m]["chosen"][knob] for s in per_seed)
                for knob in record["chosen"]} for m, record in first.items()}


def markdown(name: str, per_seed: dict[int, dict[str, dict]], chosen: dict[str, dict], before: dict[str, dict],
             defaults: Params) -> str:
    """The per-seed choices, their medians (the new fixed values) and the fixed values before."""
    seeds = list(per_seed)
    lines = [f"# Twin-tuned knobs of `{name}` (seeds {', '.join(map(str, seeds))}; never reported)", "",
             f"The median column is `tmu_utils/fixed_knobs/{name}.yaml`, the knobs each method runs at under "
             "`tuning: fixed`; the last column is what it ran at before this table was written.", "",
             "| method | knob | " + " | ".join(f"seed {s}" for s in seeds) + " | median (fixed) | before |",
             "|---|---|" + "---|" * (len(seeds) + 2)]
    for method, knobs in chosen.items():
        for knob, value in knobs.items():
            picks = " | ".join(str(per_seed[s][method]["chosen"][knob]) for s in seeds)
            old = before.get(method, {}).get(knob, getattr(defaults, knob))
            lines.append(f"| {method} | {knob} | {picks} | {value} | {old} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/default.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--budget", type=int, default=TABLE_BUDGET, help="grid points each method is tuned over")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tuning"))
    parser.add_argument("--tables", default=str(FIXED_KNOBS_DIR), help="where the fixed-knobs table goes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if any(o.split("=", 1)[0].strip() == "tune_budget" for o in args.overrides):
        parser.error("set the tunings' grid points with --budget, not --set tune_budget")
    overrides = args.overrides + [f"tune_budget={args.budget}"]
    per_seed = {}
    for seed in args.seeds:
        params, records = tune_seed(args.params, overrides, seed, forced=FORCED)
        per_seed[seed] = by_stored_name(params, records)
        print(f"seed {seed}: " + "; ".join(f"{m} {r['chosen']}" for m, r in per_seed[seed].items()), flush=True)
    defaults = load_params(args.params, overrides + ["fixed_knobs=none"])
    chosen = medians(per_seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.params).stem
    table = Path(args.tables) / f"{name}.yaml"
    before = tuning_grids.fixed_table(name) if fixed_knobs_path(name).is_file() else {}
    (out / f"{name}.json").write_text(json.dumps({"params": args.params, "overrides": overrides,
                                                  "seeds": per_seed, "median": chosen}, indent=1))
    (out / f"{name}.md").write_text(markdown(name, per_seed, chosen, before, defaults))
    header = (f"# Written by benchmarks/tune_defaults.py {args.params} --seeds {' '.join(map(str, args.seeds))}"
              f" --budget {args.budget}{''.join(' --set ' + o for o in args.overrides)}: per method (by stored name)"
              " the lower median\n"
              "# of the knobs twin tuning chose at those seeds, which no table reports. `tuning: fixed` runs read it.\n"
              f"# Tuned at twin_match {defaults.twin_match}, tuning_criterion {defaults.tuning_criterion}.\n")
    # what the table holds for: `tuning: auto` reads it on that data set and architecture only
    tuned_for = {"tuned_for": {k: getattr(defaults, k) for k in tuning_grids.TUNED_FOR_FIELDS}}
    table.write_text(header + yaml.safe_dump(tuned_for | chosen, sort_keys=False, default_flow_style=None))
    print((out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
