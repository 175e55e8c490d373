"""Each baseline at a few values of its own knob, on the cached default models: the measurement
behind the baseline defaults in tmu_utils/core/params.py (each should forget without collapsing).

A RECORD, NOT A SOURCE OF DEFAULTS: it measures against the gold model at seed 0, a reported seed.
The knobs each method runs at under `tuning: fixed` now come from tmu_utils/fixed_knobs/default.yaml,
written by benchmarks/tune_defaults.py from twin tunings at seeds never reported (docs/tuning.md).
It forces `fixed_knobs=none`, so that the shared fields it varies are the ones the methods run at.

What it measured on the default data (3 epochs), the reasons for the shared fields' values:
- neggrad_lr is knife-edge: 1e-4 barely moves forget accuracy (97.1 -> 96.5 %), 1.5e-4 brings it to the
  gold model's (92 %, test 87.5 %), 2e-4 collapses test accuracy to 74 % and 5e-4 diverges to NaN;
- scrub_lr: 1e-3 changes nothing, 2e-3 brings forget accuracy to 90.5 % (test 87.9 %), 5e-3 takes every
  accuracy down to ~78 %.

Run: python benchmarks/baseline_defaults.py [params/default.yaml] [key=value ...]
"""
from __future__ import annotations

import sys

from tmu_utils.core import context
from tmu_utils.core.params import load_params
from tmu_utils.evaluation import scoring
from tmu_utils.unlearning import runner

GRID = {
    "neggrad": [{"neggrad_lr": v} for v in (0.0002, 0.0005, 0.001)],
    "neggrad_plus": [{"neggrad_plus_alpha": v} for v in (0.2, 0.5)],
    "scrub": [{"scrub_lr": v} for v in (0.002, 0.005, 0.01)],
    "random_label": [{}],
    "bad_teacher": [{}],
    "salun": [{}],
    "finetune": [{}],
    "l1_sparse": [{}],
}


def main() -> None:
    args = sys.argv[1:]
    path = args.pop(0) if args and args[0].endswith(".yaml") else "params/default.yaml"
    ctx = context.prepare(load_params(path, args + ["progress=false", "fixed_knobs=none"]))
    original, _ = context.original_model(ctx)
    gold, _ = context.gold_model(ctx, 0)
    gold_out = context.model_outputs(ctx, gold)
    gold_rate = scoring.member_rate(ctx, gold_out)
    print("| method | setting | forget % | retain % | test % | Δforget pp | AD | time s |")
    print("|---|---|---|---|---|---|---|---|")
    for method, settings in GRID.items():
        for setting in settings:
            ctx.params = load_params(path, args + ["progress=false", "fixed_knobs=none"] + [f"{k}={v}" for k, v in setting.items()])
            model, seconds = runner.unlearn(ctx, method, original)
            m = scoring.score(ctx, context.model_outputs(ctx, model), gold_out, gold_rate)
            label = ", ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
            print(f"| {method} | {label} | {100 * m['forget_acc']:.2f} | {100 * m['retain_acc']:.2f} | "
                  f"{100 * m['test_acc']:.2f} | {100 * m['delta_forget']:.2f} | {m['activation_distance']:.3f} | "
                  f"{seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
