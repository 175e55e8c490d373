"""Streams of deletion requests (docs/method.md, "Streams of deletion requests").

R requests arrive in order: disjoint random subsets of the members. Each method applies request r
to the model it left after request r − 1 (the deployed model; M_o before the first). After request
r the gold model is a retrain on the members minus the union of requests 1..r. TMU pays its
one-off once (`amortised.one_off`, the request-independent twin) and per request only the
request's features, the predictor's inference and the unlearning. Every deployed model and gold
model is a cache artefact keyed on the requests it has seen, so a second run trains nothing and an
interrupted stream resumes at its first unfinished request.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from torch import nn
from tqdm import tqdm

from ..core import context
from ..core.context import Outputs
from ..core.params import Params, ParamsError, params_hash
from ..core.training import predict, progress_enabled
from ..evaluation.metrics import alignment_metrics
from ..core.variants import is_tmu, reads_predictor, row
from ..method import amortised
from ..unlearning import runner
from . import runs, tuning
from .request_stream import Stream, _digest, make_stream, request_context, request_size
from .tuning import tuning_mode

# The methods a stream runs unless `methods` is set: TMU and the baselines the issue names.
STREAM_METHODS = ("tmu", "finetune", "neggrad_plus", "scrub", "salun")
# `retrain` is the gold model itself; TMU at `tmu_split` gold (tmu_oracle) reads it, and at random
# (tmu_random_rank) is a single-run control of the predictor's ranking.
NOT_IN_STREAMS = "retrain and TMU at tmu_split gold or random"
SETS = ("union", "newest")


def stream_methods(params: Params) -> list[str]:
    """params.methods when it was set, else STREAM_METHODS; in the given order."""
    default = Params().methods
    return list(STREAM_METHODS) if params.methods == default else list(params.methods)


def check(params: Params, n_requests: int, request_size: int | None, gold_every: int) -> None:
    """Raise ParamsError for a stream that cannot run, before any data is loaded or model trained."""
    if n_requests < 1:
        raise ParamsError(f"--requests must be at least 1; got {n_requests}")
    if request_size is not None and request_size < 1:
        raise ParamsError(f"--request-size must be at least 1 (a request of {request_size} samples deletes nothing)")
    if not 1 <= gold_every <= n_requests:
        raise ParamsError(f"--gold-every must lie in [1, --requests = {n_requests}]; got {gold_every}")
    if params.forget_scenario != "random":
        raise ParamsError(f"request streams need forget_scenario 'random' (the twin is drawn independently of "
                          f"the requests); got {params.forget_scenario!r}")
    if tuning_mode(params) != "fixed":
        raise ParamsError(f"request streams run at fixed knobs, and tuning {params.tuning!r} tunes on the twin problem "
                          f"for {params.dataset}/{params.arch}: set tuning=fixed")
    bad = [m for m in stream_methods(params) if m == "retrain" or (
        is_tmu(row(params, m)) and row(params, m).params.tmu_split in ("gold", "random"))]
    if bad:
        raise ParamsError(f"method {bad[0]!r} cannot run in a stream ({NOT_IN_STREAMS} cannot)")


def _cached_state(ctx: context.Context, kind: str, key: str, build) -> tuple[nn.Module, dict]:
    """Load a model artefact or build it with `build() -> (model, meta)`; the model on ctx.device."""
    def build_state():
        model, meta = build()
        return {k: v.cpu() for k, v in model.state_dict().items()}, meta

    state, meta = ctx.cache.get_or_build(kind, key, build_state)
    model = context.new_model(ctx)
    model.load_state_dict(state)
    return model.to(ctx.device).eval(), meta


def gold_model(ctx: context.Context, stream: Stream, r: int) -> tuple[nn.Module, dict]:
    """The gold model after request r: the recipe retrained on the members minus requests 1..r."""
    key = f"{ctx.key(context.MEMBER_FIELDS + context.RECIPE_FIELDS)}-{_digest(stream.union(r))}"
    return _cached_state(ctx, "stream_gold", key, lambda: context.train_from_scratch(
        request_context(ctx, stream, r), "retain", ctx.seeds["gold"], f"gold after request {r}"))


def deployed_model(ctx: context.Context, stream: Stream, method: str, r: int, original: nn.Module,
                   one: amortised.OneOff | None) -> tuple[nn.Module, dict]:
    """The model `method` leaves after requests 1..r (M_o at r = 0), and meta["stages"]: request r's
    seconds per stage (TMU: features_s, inference_s, unlearn_s; the others: unlearn_s)."""
    if r == 0 or method == "original":
        return original, {"stages": {}}
    ctx = tuning.fixed_context(ctx, method)  # streams run at fixed knobs: the method's own from the table
    seen = torch.cat(stream.requests[:r])  # in order: the chain depends on which came first
    key = f"{runner.artefact_name(method, ctx.params)}-{ctx.key(runner.method_key_fields(ctx.params))}-{_digest(seen)}"

    def build():
        previous, _ = deployed_model(ctx, stream, method, r - 1, original, one)
        rctx = request_context(ctx, stream, r)
        stages: dict[str, float] = {}
        easy, target_inputs = None, {}
        split = row(ctx.params, method).params.tmu_split if is_tmu(row(ctx.params, method)) else None
        if split == "predictor":
            raw, stages["features_s"] = amortised.request_features(rctx, one, previous, rctx.splits.forget,
                                                                   rctx.splits.retain)
            pred = amortised.predict_request(rctx, one, raw)
            stages["inference_s"] = pred.seconds
            easy = pred.easy
            target_inputs = {"easy_proba": pred.proba, "unseen_margins": pred.unseen_margins}
        elif split == "none":
            easy = torch.zeros(len(rctx.splits.forget), dtype=torch.bool)
        model, stages["unlearn_s"] = runner.unlearn(rctx, method, previous, easy, **target_inputs)
        return model, {"stages": stages}

    return _cached_state(ctx, "stream_model", key, build)


def _outputs(ctx: context.Context, model: nn.Module, sets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {name: predict(model, ctx.dataset.train_x[idx], ctx.device) for name, idx in sets.items()}
    out["test"] = predict(model, ctx.subset("test")[0], ctx.device)
    return out


def score_request(ctx: context.Context, stream: Stream, r: int, models: dict[str, nn.Module],
                  gold: nn.Module) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per method: Δforget, AD and agreement against request r's gold on the union so far and on the
    newest request, the retain and test gaps and ToW (on the union); and the gold model's accuracies."""
    rctx = request_context(ctx, stream, r)
    sets = {"union": stream.union(r), "newest": stream.requests[r - 1], "retain": rctx.splits.retain}
    labels = {name: ctx.dataset.train_y[idx] for name, idx in sets.items()}
    labels["test"] = ctx.subset("test")[1]
    g = _outputs(ctx, gold, sets)
    scores = {}
    for method, model in models.items():
        u = _outputs(ctx, model, sets)
        row: dict[str, float] = {}
        for name in SETS:
            m = alignment_metrics(Outputs(u[name], u["retain"], u["test"]), Outputs(g[name], g["retain"], g["test"]),
                                  {"forget": labels[name], "retain": labels["retain"], "test": labels["test"]})
            row.update({f"{k}_{name}": m[k] for k in ("forget_acc", "delta_forget", "activation_distance", "agreement")})
            if name == "union":  # retain, test and ToW do not depend on the forget set chosen
                row.update({k: m[k] for k in ("retain_acc", "test_acc", "delta_retain", "delta_test", "tow")})
        scores[method] = row
    gold_m = alignment_metrics(Outputs(g["union"], g["retain"], g["test"]), Outputs(g["union"], g["retain"], g["test"]),
                               {"forget": labels["union"], "retain": labels["retain"], "test": labels["test"]})
    newest = (g["newest"].argmax(1) == labels["newest"]).double().mean().item()
    return scores, {"forget_acc_union": gold_m["forget_acc"], "forget_acc_newest": newest,
                    "retain_acc": gold_m["retain_acc"], "test_acc": gold_m["test_acc"]}


def stream_signature(params: Params, n_requests: int, size: int, gold_every: int, methods: list[str]) -> dict:
    """What must match for an earlier requests.json to be resumed."""
    return {"params_hash": params_hash(params, [f for f in params.to_dict() if f not in runner.PRESENTATION_FIELDS]),
            "n_requests": n_requests, "request_size": size, "gold_every": gold_every, "methods": methods}


def _previous(out: Path, signature: dict) -> dict | None:
    path = out / "requests.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return old if old.get("signature") == signature else None


def evaluate_stream(params: Params, n_requests: int, out: str | os.PathLike, request_size_given: int | None = None,
                    gold_every: int = 1) -> dict:
    """Run (or resume) the stream and write requests.json, requests.md and figures/ to `out`."""
    check(params, n_requests, request_size_given, gold_every)
    start = time.perf_counter()
    ctx = context.prepare(params)  # a missing data set or an impossible split fails here
    size = request_size(params, len(ctx.splits.members), n_requests, request_size_given)
    if any(reads_predictor(row(params, m)) for m in stream_methods(params)):
        amortised.independent_twin_forget(ctx)  # a holdout too small for the twin fails before any training
    methods = stream_methods(params)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    signature = stream_signature(params, n_requests, size, gold_every, methods)
    previous = _previous(out, signature)
    stream = make_stream(ctx, n_requests, size)
    bar = tqdm(total=n_requests * len(methods) + 2, desc="requests", unit="step",
               disable=not progress_enabled(params.progress))
    bar.set_postfix_str("original M_o")
    original, o_meta = context.original_model(ctx)
    bar.update()
    one = None
    if any(reads_predictor(row(params, m)) for m in methods):
        bar.set_postfix_str("TMU one-off")
        one = amortised.one_off(ctx, original)
    bar.update()
    result: dict[str, Any] = {
        "params": params.to_dict(), "signature": signature, "env": runs.environment(ctx.device),
        "n_requests": n_requests, "request_size": size, "gold_every": gold_every, "methods": methods,
        "members": len(ctx.splits.members), "complete": False,
        # requests read back from an earlier run's requests.json: their times were measured there
        "resumed_requests": 0,
        "timing": {"original_s": o_meta["seconds"], "one_off": one.timing if one else None},
        "requests": [], "entries": {m: [] for m in methods},
        "one_off_rows": [m for m in methods if reads_predictor(row(params, m))]}  # the rows that pay TMU's one-off
    if one is not None:
        result["predictor"] = {"twin_easy_rate": one.twin_easy_rate, "twin_cv_accuracy": one.twin_cv_accuracy}
    for r in range(1, n_requests + 1):
        done = previous is not None and len(previous["requests"]) >= r
        if done:  # resumed: request r was finished and recorded by an earlier run
            result["requests"].append(previous["requests"][r - 1])
            result["resumed_requests"] += 1
            for m in methods:
                result["entries"][m].append(previous["entries"][m][r - 1])
            bar.update(len(methods))
            continue
        models, entries = {}, {}
        for m in methods:
            bar.set_postfix_str(f"request {r}/{n_requests}: {m}")
            models[m], meta = deployed_model(ctx, stream, m, r, original, one)
            stages = meta["stages"]
            entries[m] = {"request": r, "time_s": sum(stages.values()), "stages": stages}
            bar.update()
        info = {"request": r, "size": size, "union_size": r * size, "evaluated": r % gold_every == 0,
                "gold_s": None, "gold": None}
        if info["evaluated"]:
            bar.set_postfix_str(f"request {r}/{n_requests}: gold")
            gold, g_meta = gold_model(ctx, stream, r)
            scores, info["gold"] = score_request(ctx, stream, r, models, gold)
            info["gold_s"] = g_meta["seconds"]
            for m in methods:
                entries[m].update(scores[m])
        result["requests"].append(info)
        for m in methods:
            result["entries"][m].append(entries[m])
        write(result, out)
    bar.close()
    result["complete"] = True
    result["timing"]["total_s"] = time.perf_counter() - start
    write(result, out, final=True)
    return result


def add_cumulative(result: dict) -> None:
    """Per entry: cumulative_s (TMU's one-off counted at request 1), and retraining at every request,
    r times the mean retrain time measured in this stream."""
    gold_s = [q["gold_s"] for q in result["requests"] if q["gold_s"] is not None]
    retrain = sum(gold_s) / len(gold_s) if gold_s else None
    result["timing"]["retrain_per_request_s"] = retrain
    one_off = (result["timing"]["one_off"] or {}).get("tmu_one_off_s", 0.0)
    for method, entries in result["entries"].items():
        total = one_off if method in result["one_off_rows"] else 0.0
        for e in entries:
            total += e["time_s"]
            e["cumulative_s"] = total
            e["retrain_cumulative_s"] = retrain * e["request"] if retrain is not None else None
            e["speedup"] = e["retrain_cumulative_s"] / total if retrain is not None and total > 0 else None


def write(result: dict, out: Path, final: bool = False) -> None:
    """requests.json (atomically, after every request); at the end also requests.md and figures/."""
    add_cumulative(result)
    tmp = out / "requests.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, allow_nan=True))
    tmp.replace(out / "requests.json")
    if final:
        from ..reporting.plots import save_fig
        from ..reporting.requests_report import plot_alignment, plot_cost, requests_table

        (out / "requests.md").write_text(requests_table(result))
        save_fig(plot_alignment(result), "alignment", out / "figures")
        save_fig(plot_cost(result), "cumulative_cost", out / "figures")
        plt.close("all")
