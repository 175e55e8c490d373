"""Amortised TMU on a stream of deletion requests: what a request costs against a gold retrain, and
whether the request-independent twin aligns as well as the matched one (issue 10).

Run: python benchmarks/requests_speed.py [params/default.yaml] [--requests 10] [--gold-every 2]
                                         [--seeds 100 101 102 103 104] [--out benchmarks/results/requests]
                                         [--set key=value ...]
1. The stream (`tmu_utils/experiments/requests.py`) at the params file's seed: R requests of forget_fraction / R
   of the members each, TMU and the baselines on the deployed model, a gold retrain every k-th
   request. It writes requests.json, requests.md and figures/ to <out>. From the same run: TMU's
   per-request cost (features, predictor inference, unlearning) against the mean gold retrain time,
   and the same with the one-off spread over the R requests, with a stage breakdown that includes
   the time spent scoring against the gold models.
2. Alignment over `--seeds` (each its own splits, M_o and M_g): single-request TMU on the whole D_f
   with the matched twin (today's default) and with the independent one, both scored against M_g.
Everything is cached (TMU_CACHE_DIR), so a rerun only re-reads, and a stream already in <out> is
resumed with its recorded times (speed.md then says so): measure in one run with a fresh --out.
It writes <out>/speed.json and <out>/speed.md and prints the latter.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from tmu_utils.core import context
from tmu_utils.core.params import load_params
from tmu_utils.evaluation import scoring
from tmu_utils.experiments import requests
from tmu_utils.experiments.sweep import mean_ci
from tmu_utils.method import generalization
from tmu_utils.method.predictor import quality_report
from tmu_utils.unlearning import runner

REPO = Path(__file__).resolve().parent.parent
GOAL_PER_REQUEST, GOAL_AMORTISED = 30.0, 10.0  # retrain time over TMU's, per request and with the one-off spread
ALIGNMENT = ("delta_forget", "tow", "activation_distance", "agreement", "mia_gap", "test_acc")


def verdict(ratio: float, goal: float) -> str:
    return f"goal ≥ {goal:g}×: {'met' if ratio >= goal else 'not met'}"


def stream_speed(path: str, overrides: list[str], n_requests: int, gold_every: int, out: Path) -> dict:
    """Run (or re-read) the stream; TMU's per-request cost, the retrain's, and where the time goes."""
    params = load_params(path, overrides + ["progress=false"])
    scoring_s = []
    score = requests.score_request

    def timed(*args):
        start = time.perf_counter()
        result = score(*args)
        scoring_s.append(time.perf_counter() - start)
        return result

    requests.score_request = timed
    try:
        result = requests.evaluate_stream(params, n_requests, out, gold_every=gold_every)
    finally:
        requests.score_request = score
    one_off = result["timing"]["one_off"]
    tmu = result["entries"]["tmu"]
    stages = {k: statistics.fmean(e["stages"][k] for e in tmu) for k in ("features_s", "inference_s", "unlearn_s")}
    per_request = statistics.fmean(e["time_s"] for e in tmu)
    retrain = result["timing"]["retrain_per_request_s"]
    return {"seed": params.seed, "n_requests": n_requests, "request_size": result["request_size"],
            "gold_every": gold_every, "one_off": one_off, "tmu_per_request_stages_s": stages,
            "tmu_per_request_s": per_request, "retrain_s": retrain,
            "retrain_s_each": [q["gold_s"] for q in result["requests"] if q["gold_s"] is not None],
            "scoring_s_per_evaluated_request": statistics.fmean(scoring_s) if scoring_s else None,
            "scoring_measured_here": bool(scoring_s), "resumed_requests": result["resumed_requests"],
            "ratio_per_request": retrain / per_request,
            "ratio_amortised": retrain / (per_request + one_off["tmu_one_off_s"] / n_requests),
            "baselines_per_request_s": {m: statistics.fmean(e["time_s"] for e in entries)
                                        for m, entries in result["entries"].items() if m != "tmu"}}


def alignment_seed(path: str, overrides: list[str], seed: int) -> dict[str, dict]:
    """Single-request TMU at one seed, matched and independent twin, against that seed's M_g."""
    out = {}
    for twin in ("matched", "independent"):
        params = load_params(path, overrides + [f"seed={seed}", "progress=false", f"twin_forget={twin}",
                                                "methods=[tmu]"])
        ctx = context.prepare(params)
        original, o_meta = context.original_model(ctx)
        gold, g_meta = context.gold_model(ctx, 0)
        gold_out = context.model_outputs(ctx, gold)
        true_easy = gold_out.forget.argmax(1) == ctx.subset("forget")[1]
        pred, timing = generalization.tmu_predict_easy(ctx, original)
        outputs, seconds = runner.unlearned_outputs(ctx, "tmu", original, pred.easy)
        metrics = scoring.score(ctx, outputs, gold_out, scoring.member_rate(ctx, gold_out))
        quality = quality_report(pred.proba, pred.easy, true_easy, pred.twin_easy_rate, pred.twin_cv_accuracy)
        out[twin] = {**{k: metrics[k] for k in ALIGNMENT}, "unlearn_s": seconds, "gold_s": g_meta["seconds"],
                     "original_s": o_meta["seconds"], "timing": timing,
                     "predictor_balanced_accuracy": quality["balanced_accuracy"], "predictor_auc": quality["auc"],
                     "twin_easy_rate": quality["twin_easy_rate"], "true_easy_rate": quality["true_easy_rate"]}
        if twin == "matched":  # doing nothing, the reference
            original_metrics = scoring.score(ctx, context.model_outputs(ctx, original), gold_out,
                                              scoring.member_rate(ctx, gold_out))
            out["original"] = {k: original_metrics[k] for k in ALIGNMENT}
    return out


def markdown(speed: dict, per_seed: dict[int, dict], params_name: str) -> str:
    one, st = speed["one_off"], speed["tmu_per_request_stages_s"]
    per = speed["tmu_per_request_s"]
    lines = [f"# Amortised TMU on a stream of deletion requests: `{params_name}`", "",
             f"## Speed (one stream, seed {speed['seed']}: {speed['n_requests']} requests of {speed['request_size']} "
             f"samples, gold retrain every {speed['gold_every']} request(s))", "",
             f"- Gold retrain: {speed['retrain_s']:.1f} s (mean of {len(speed['retrain_s_each'])}: "
             + ", ".join(f"{s:.1f}" for s in speed["retrain_s_each"]) + ").",
             f"- TMU per request: {per:.2f} s = features {st['features_s']:.2f} s + predictor inference "
             f"{st['inference_s']:.4f} s + unlearning {st['unlearn_s']:.2f} s (means over the requests).",
             f"- TMU one-off, once: {one['tmu_one_off_s']:.1f} s = M_t {one['twin_s']:.1f} s + M_c "
             f"{one['curriculum_s']:.1f} s + twin features {one['twin_features_s']:.1f} s + predictor fit "
             f"{one['predictor_fit_s']:.2f} s.",
             f"- **Per-request TMU cost against a gold retrain: {speed['ratio_per_request']:.1f}×** "
             f"({verdict(speed['ratio_per_request'], GOAL_PER_REQUEST)}).",
             f"- **With the one-off spread over the {speed['n_requests']} requests: {speed['ratio_amortised']:.1f}×** "
             f"({verdict(speed['ratio_amortised'], GOAL_AMORTISED)})."]
    if speed.get("resumed_requests"):
        lines.append(f"- **Not one run**: {speed['resumed_requests']} of the {speed['n_requests']} requests were read "
                     "back from an earlier run's requests.json in the output folder, with that run's times. Measure "
                     "the ratios in one run with a fresh `--out`.")
    if speed["scoring_s_per_evaluated_request"] is not None:
        lines.append(f"- Evaluation (scoring every method against the request's gold model, not part of any "
                     f"method's cost): {speed['scoring_s_per_evaluated_request']:.1f} s per evaluated request.")
    lines.append("- Baselines per request: " + ", ".join(f"{m} {s:.2f} s"
                                                        for m, s in speed["baselines_per_request_s"].items()) + ".")
    shares = {"unlearning": st["unlearn_s"], "features": st["features_s"], "inference": st["inference_s"]}
    lines += ["- Where a request's time goes: " + ", ".join(f"{k} {100 * v / per:.0f} %" for k, v in shares.items())
              + ".", ""]
    seeds = list(per_seed)
    lines += [f"## Alignment: independent against matched twin, single request (seeds {', '.join(map(str, seeds))})",
              "", "Each seed has its own splits, M_o and M_g; TMU unlearns the whole D_f once; mean ± 95 % CI over "
              f"the {len(seeds)} seeds.", "",
              "| twin | Δ forget pp | ToW | AD | agreement % | MIA gap pp | test % | predictor bal. acc. % | "
              "one-off s | per request s (before unlearning) | unlearning s | RTE | RTE with one-off |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for twin in ("matched", "independent", "original"):
        rows = [per_seed[s][twin] for s in seeds]

        def cell(key, scale=1.0, digits=2):
            mean, ci = mean_ci([scale * r[key] for r in rows])
            return f"{mean:.{digits}f} ± {ci:.{digits}f}"

        cols = [cell("delta_forget", 100), cell("tow", 1, 3), cell("activation_distance", 1, 3),
                cell("agreement", 100, 1), cell("mia_gap", 100, 1), cell("test_acc", 100)]
        if twin == "original":
            cols += ["–"] * 7
        else:
            one_off = statistics.fmean(r["timing"]["tmu_one_off_s"] for r in rows)
            before = statistics.fmean(r["timing"].get("tmu_per_request_s", r["timing"]["tmu_one_off_s"]) for r in rows)
            unlearn = statistics.fmean(r["unlearn_s"] for r in rows)
            gold = statistics.fmean(r["gold_s"] for r in rows)
            cols += [cell("predictor_balanced_accuracy", 100, 1), f"{one_off:.1f}", f"{before:.2f}", f"{unlearn:.2f}",
                     f"{gold / unlearn:.1f}", f"{gold / (unlearn + one_off):.1f}"]
        lines.append(f"| {twin if twin != 'original' else 'original (no unlearning)'} | " + " | ".join(cols) + " |")
    lines += ["", "Per request, before unlearning: the matched twin pays its whole one-off again; the independent "
              "twin only the request's features and the predictor's inference (`timing.tmu_per_request_s`).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default=str(REPO / "params" / "default.yaml"))
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--gold-every", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="*", default=[100, 101, 102, 103, 104])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "requests"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    speed = stream_speed(args.params, args.overrides, args.requests, args.gold_every, out)
    print(f"stream done ({time.perf_counter() - start:.0f} s)", flush=True)
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = alignment_seed(args.params, args.overrides, seed)
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    name = load_params(args.params, args.overrides).name
    record = {"params_file": str(Path(args.params)), "overrides": args.overrides, "speed": speed,
              "alignment": {str(s): v for s, v in per_seed.items()}, "total_s": time.perf_counter() - start}
    (out / "speed.json").write_text(json.dumps(record, indent=1, allow_nan=True))
    text = markdown(speed, per_seed, name)
    (out / "speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
