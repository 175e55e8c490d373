"""Choose TMU's default step (retain loss, updated parameters, calibration) and tuning criterion on the
twin problem, gold-free, on seeds never reported. The rule is benchmarks/results/step_choice/RULE.md,
committed before any population with the step variants was run; `decide` is that rule as code.

Run: python benchmarks/choose_step.py [params/demo.yaml] [--seeds 100 101 102]
                                      [--out benchmarks/results/step_choice] [--set key=value ...]
Per seed it trains or fetches M_o, the twin problem and the features, and tunes every candidate
(CANDIDATES) on the twin problem with `tune_budget` grid points; each point is scored under both
criteria from one run (tuning.py records ToW, AD and the margin distance of every point). It never
trains or reads a gold model. It writes <out>/<params name>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from torch import nn

from tmu_utils.core.choices import REFERENCE_STEP
from tmu_utils.core.params import Params
from tmu_utils.experiments import tuning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_seeds import tune_seed  # noqa: E402  (a sibling module: one seed's twin tuning)

REPO = Path(__file__).resolve().parent.parent
# `tmu` is the reference step here (the params file's step knobs are overridden); tmu_bn is left out
# where the architecture has no BatchNorm (small_cnn, mlp).
CANDIDATES = ("tmu", "tmu_distill", "tmu_head", "tmu_last_block", "tmu_calibrated", "tmu_distill_calibrated",
              "tmu_distill_last_block", "tmu_bn")
REFERENCE = [f"{k}={str(v).lower()}" for k, v in REFERENCE_STEP.items()]
TOW_SLACK = 0.01  # the twin ToW a per-sample choice may give up (RULE.md)
TIE = 0.02  # relative margin distance within which two candidates tie (RULE.md)
# fewer parameters updated first, then no distillation, then no calibration (RULE.md's tie order)
SIMPLER = ("tmu_head", "tmu_last_block", "tmu", "tmu_calibrated", "tmu_distill_last_block", "tmu_distill",
           "tmu_distill_calibrated", "tmu_bn")


def chosen_at(record: dict, criterion: str) -> int:
    """The grid point `criterion` chooses in a tuning record (first on ties, as tune_method)."""
    scores = [tuning.point_score(criterion, t, a, d) for t, a, d in
              zip(record["tow"], record["activation_distance"], record["margin_distance"])]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def candidates(params: Params, original: nn.Module) -> list[str]:
    """CANDIDATES, without tmu_bn where the model has no BatchNorm."""
    has_bn = any("BatchNorm" in type(m).__name__ for m in original.modules())
    return [m for m in CANDIDATES if m != "tmu_bn" or has_bn]


def choices_per_criterion(records: dict[str, dict]) -> dict[str, dict]:
    """Per candidate at one seed: for each criterion the knobs it chooses and their ToW, AD, distance."""
    out = {}
    for method, record in records.items():
        out[method] = {}
        for criterion in ("alignment", "margins"):
            i = chosen_at(record, criterion)
            out[method][criterion] = {"chosen": record["grid"][i], "tow": record["tow"][i],
                                      "activation_distance": record["activation_distance"][i],
                                      "margin_distance": record["margin_distance"][i]}
    return out


def mean(per_seed: dict, method: str, criterion: str, key: str) -> float:
    return statistics.fmean(per_seed[s][method][criterion][key] for s in per_seed)


def decide(per_seed: dict[int, dict[str, dict]]) -> dict:
    """RULE.md as code: the step and the criterion, from twin-problem numbers only."""
    methods = [m for m in CANDIDATES if all(m in per_seed[s] for s in per_seed)]
    reference_tow = mean(per_seed, "tmu", "alignment", "tow")
    eligible = [m for m in methods if mean(per_seed, m, "margins", "tow") >= reference_tow - TOW_SLACK]
    if not eligible:
        return {"step": "tmu", "criterion": "alignment", "eligible": [], "reference_tow": reference_tow,
                "why": "no candidate kept the twin ToW within the slack under the margins criterion"}
    best = min(mean(per_seed, m, "margins", "margin_distance") for m in eligible)
    tied = [m for m in eligible if mean(per_seed, m, "margins", "margin_distance") <= best * (1 + TIE)]
    step = min(tied, key=SIMPLER.index)
    # the criterion: margins if its choice for the chosen step keeps the ToW the alignment choice reaches
    keeps = mean(per_seed, step, "margins", "tow") >= mean(per_seed, step, "alignment", "tow") - TOW_SLACK
    criterion = "margins" if keeps else "alignment"
    knobs = {k: statistics.median_low(per_seed[s][step][criterion]["chosen"][k] for s in per_seed)
             for k in per_seed[next(iter(per_seed))][step][criterion]["chosen"]}
    return {"step": step, "criterion": criterion, "knobs": knobs, "eligible": eligible, "tied": tied,
            "reference_tow": reference_tow}


def markdown(name: str, per_seed: dict[int, dict[str, dict]], decision: dict) -> str:
    seeds = list(per_seed)
    lines = [f"# TMU's step and tuning criterion on the twin problem: `{name}` (seeds {', '.join(map(str, seeds))}; "
             "never reported)", "",
             "Means over the seeds, at the knobs each criterion chooses on each candidate's grid. ToW and AD against "
             "M_o on the twin problem (higher ToW, lower AD is better); margin distance: mean |margin under the "
             "unlearned twin − margin under M_o| on D_tf and on members, averaged (lower is better). No gold model "
             "was trained or read. The rule: RULE.md.", "",
             "| candidate | ToW (alignment) | AD (alignment) | distance (alignment) | ToW (margins) | "
             "distance (margins) | knobs chosen by margins, per seed |", "|---|---|---|---|---|---|---|"]
    for m in per_seed[seeds[0]]:
        knobs = "; ".join(json.dumps(per_seed[s][m]["margins"]["chosen"], sort_keys=True) for s in seeds)
        lines.append(f"| {m} | {mean(per_seed, m, 'alignment', 'tow'):.4f} | "
                     f"{mean(per_seed, m, 'alignment', 'activation_distance'):.4f} | "
                     f"{mean(per_seed, m, 'alignment', 'margin_distance'):.3f} | {mean(per_seed, m, 'margins', 'tow'):.4f} | "
                     f"{mean(per_seed, m, 'margins', 'margin_distance'):.3f} | {knobs} |")
    lines += ["", f"Reference step's ToW (alignment): {decision['reference_tow']:.4f}; eligible (margins ToW within "
              f"{TOW_SLACK} of it): {', '.join(decision['eligible']) or 'none'}.", "",
              f"Decision: step `{decision['step']}`, `tuning_criterion: {decision['criterion']}`"
              + (f", knobs {json.dumps(decision['knobs'], sort_keys=True)} (lower median over the seeds)."
                 if "knobs" in decision else f" ({decision['why']}).")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "step_choice"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    per_seed = {}
    for seed in args.seeds:
        _, records = tune_seed(args.params, args.overrides, seed, forced=REFERENCE, methods=candidates)
        per_seed[seed] = choices_per_criterion(records)
        print(f"seed {seed}: " + "; ".join(f"{m} {r['margins']['margin_distance']:.3f}"
                                           for m, r in per_seed[seed].items()), flush=True)
    decision = decide(per_seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.params).stem
    (out / f"{name}.json").write_text(json.dumps({"params": args.params, "overrides": args.overrides,
                                                  "seeds": per_seed, "decision": decision}, indent=1))
    (out / f"{name}.md").write_text(markdown(name, per_seed, decision))
    print((out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
