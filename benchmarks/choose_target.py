"""Choose TMU's default target variant (`tmu_target`) by the twin criterion, gold-free, on seeds never reported.

Run: python benchmarks/choose_target.py [params/default.yaml] [--seeds 100 101 102]
                                        [--out benchmarks/results/targets] [--set key=value ...]
For each seed it trains or fetches M_o, M_t, M_c and the features, and tunes `tmu` (hard flips),
`tmu_soft` and `tmu_margin` on the twin problem with the same budget and score as every method
(tmu_utils/experiments/tuning/, docs/tuning.md); it never trains or reads a gold model. A variant's result at a
seed is its best twin score, ToW × (1 − AD/√2) against M_o, over its grid. The winner has the highest
mean best score over the seeds; on a tie the earlier of hard, soft, margin (the current default
first). It writes <out>/<params name>.json (per seed and variant: best score, its ToW and AD, chosen
knobs) and <out>/<params name>.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_seeds import tune_seed  # noqa: E402  (a sibling module: one seed's twin tuning)

REPO = Path(__file__).resolve().parent.parent
# tmu_target value -> method tuned
VARIANTS = {"hard": "tmu", "soft": "tmu_soft", "margin": "tmu_margin", "hard_only": "tmu_hard_only"}
# `tmu` is the hard variant here whatever the params file says
FORCED = ["tmu_target=hard"]


def best_per_variant(records: dict[str, dict]) -> dict[str, dict]:
    """Per variant, the best twin score of its tuning at one seed, with the knobs that reached it."""
    out = {}
    for variant, method in VARIANTS.items():
        record = records[method]
        best = record["grid"].index(record["chosen"])
        out[variant] = {"method": method, "best_score": record["scores"][best], "tow": record["tow"][best],
                        "activation_distance": record["activation_distance"][best], "chosen": record["chosen"]}
    return out


def winner(per_seed: dict[int, dict[str, dict]]) -> tuple[str, dict[str, float]]:
    """The variant with the highest mean best score (the earlier one on a tie), and every variant's mean."""
    means = {v: statistics.fmean(per_seed[s][v]["best_score"] for s in per_seed) for v in VARIANTS}
    return max(VARIANTS, key=lambda v: (means[v], -list(VARIANTS).index(v))), means


def markdown(name: str, per_seed: dict[int, dict[str, dict]], means: dict[str, float], best: str) -> str:
    """Per variant and seed the best twin score and chosen knobs, the means and the winner."""
    seeds = list(per_seed)
    lines = [f"# TMU target variant by the twin criterion: `{name}` (seeds {', '.join(map(str, seeds))}; never "
             "reported)", "",
             "Best twin score ToW × (1 − AD/√2) against M_o over each variant's grid (higher is better); no gold "
             "model was trained or read.", "",
             "| tmu_target | method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | chosen knobs |",
             "|---|---|" + "---|" * (len(seeds) + 2)]
    for variant, method in VARIANTS.items():
        scores = " | ".join(f"{per_seed[s][variant]['best_score']:.4f}" for s in seeds)
        knobs = "; ".join(json.dumps(per_seed[s][variant]["chosen"], sort_keys=True) for s in seeds)
        lines.append(f"| {variant} | {method} | {scores} | {means[variant]:.4f} | {knobs} |")
    lines += ["", f"Winner: `tmu_target: {best}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params/default.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "targets"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    per_seed = {}
    for seed in args.seeds:
        _, records = tune_seed(args.params, args.overrides, seed, forced=FORCED,
                               methods=lambda params, original: list(VARIANTS.values()))
        per_seed[seed] = best_per_variant(records)
        print(f"seed {seed}: " + "; ".join(f"{v} {r['best_score']:.4f} {r['chosen']}"
                                           for v, r in per_seed[seed].items()), flush=True)
    best, means = winner(per_seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.params).stem
    (out / f"{name}.json").write_text(json.dumps({"params": args.params, "overrides": args.overrides,
                                                  "seeds": per_seed, "mean_best_score": means, "winner": best},
                                                 indent=1))
    (out / f"{name}.md").write_text(markdown(name, per_seed, means, best))
    print((out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
