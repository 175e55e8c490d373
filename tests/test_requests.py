"""Amortised TMU and streams of deletion requests at smoke scale: the issue's acceptance (3 entries per
method, one-off once, predictor fitted once, a second run trains nothing), the stream's structure,
resuming, and clear errors before any work."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tmu_utils.__main__ import main
from tmu_utils.core import context
from tmu_utils.core.params import load_params
from tmu_utils.experiments import request_stream, requests
from tmu_utils.method import amortised, generalization
from tmu_utils.unlearning import runner

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "params" / "smoke.yaml"


class Captured(Exception):
    """Stops a training run once its inputs have been seen."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def ctx(cache_dir):
    return context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}"]))


@pytest.fixture(scope="module")
def stream_run(cache_dir, tmp_path_factory):
    """The acceptance command on an empty cache, counting the predictor's fits."""
    out = tmp_path_factory.mktemp("requests")
    fits = []
    fit = amortised.fit_predictor
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(amortised, "fit_predictor", lambda *a, **k: fits.append(1) or fit(*a, **k))
        assert main(["requests", str(SMOKE), "--requests", "3", "--out", str(out), "--set", f"cache_dir={cache_dir}"]) == 0
    return out, json.loads((out / "requests.json").read_text()), len(fits)


def test_acceptance_three_entries_per_method_one_off_once_predictor_fitted_once(stream_run):
    out, result, fits = stream_run
    assert result["methods"] == list(requests.STREAM_METHODS) and result["complete"]
    for method in requests.STREAM_METHODS:
        assert [e["request"] for e in result["entries"][method]] == [1, 2, 3]
    one_off = result["timing"]["one_off"]
    assert set(one_off) == {"twin_s", "curriculum_s", "twin_features_s", "predictor_fit_s", "tmu_one_off_s"}
    assert one_off["tmu_one_off_s"] == pytest.approx(sum(v for k, v in one_off.items() if k != "tmu_one_off_s"))
    for e in result["entries"]["tmu"]:  # a request pays its features, the inference and the unlearning only
        assert set(e["stages"]) == {"features_s", "inference_s", "unlearn_s"}
        assert e["time_s"] == pytest.approx(sum(e["stages"].values()))
    for e in result["entries"]["finetune"]:
        assert set(e["stages"]) == {"unlearn_s"}
    assert fits == 1
    tmu = result["entries"]["tmu"]
    assert tmu[0]["cumulative_s"] == pytest.approx(one_off["tmu_one_off_s"] + tmu[0]["time_s"])
    assert tmu[2]["cumulative_s"] == pytest.approx(one_off["tmu_one_off_s"] + sum(e["time_s"] for e in tmu))
    retrain = result["timing"]["retrain_per_request_s"]
    assert retrain == pytest.approx(sum(q["gold_s"] for q in result["requests"]) / 3)
    assert [e["retrain_cumulative_s"] for e in tmu] == pytest.approx([retrain, 2 * retrain, 3 * retrain])
    assert "| 3 | salun |" in (out / "requests.md").read_text()
    assert {p.name for p in (out / "figures").iterdir()} == {"alignment.png", "cumulative_cost.png"}


def test_metrics_on_the_union_and_on_the_newest_request(stream_run):
    _, result, _ = stream_run
    first, third = result["entries"]["tmu"][0], result["entries"]["tmu"][2]
    # after one request the union is the newest request; later they differ
    assert first["delta_forget_union"] == first["delta_forget_newest"]
    assert first["agreement_union"] == first["agreement_newest"]
    gold = [q["gold"] for q in result["requests"]]
    assert gold[0]["forget_acc_union"] == gold[0]["forget_acc_newest"]
    assert third["delta_forget_union"] == pytest.approx(abs(third["forget_acc_union"] - gold[2]["forget_acc_union"]))
    assert third["delta_forget_newest"] == pytest.approx(abs(third["forget_acc_newest"] - gold[2]["forget_acc_newest"]))
    assert 0 < third["tow"] <= 1 and [q["union_size"] for q in result["requests"]] == [80, 160, 240]


def test_requests_are_disjoint_members_and_the_first_of_one_is_the_single_run_forget_set(ctx):
    stream = request_stream.make_stream(ctx, 3, 80)
    union = stream.union(3)
    assert len(union) == len(union.unique()) == 240
    assert torch.isin(union, ctx.splits.members).all()
    assert torch.equal(request_stream.make_stream(ctx, 1, len(ctx.splits.forget)).requests[0], ctx.splits.forget)
    retain = request_stream.request_context(ctx, stream, 2).splits.retain
    assert len(retain) == len(ctx.splits.members) - 160 and not torch.isin(retain, stream.union(2)).any()
    assert torch.isin(stream.requests[2], retain).all()  # request 3 is still retained after request 2


def test_each_request_is_applied_to_the_model_the_previous_one_left(stream_run, ctx):
    stream = request_stream.make_stream(ctx, 3, 80)
    original = context.original_model(ctx)[0]
    after_1 = requests.deployed_model(ctx, stream, "finetune", 1, original, None)[0]
    after_2 = requests.deployed_model(ctx, stream, "finetune", 2, original, None)[0]
    rctx = request_stream.request_context(ctx, stream, 2)
    again = runner.unlearn(rctx, "finetune", after_1)[0]
    from_original = runner.unlearn(rctx, "finetune", original)[0]
    x = ctx.subset("test")[0][:200]
    logits = context.predict(after_2, x, ctx.device)
    assert torch.allclose(logits, context.predict(again, x, ctx.device), atol=1e-5)
    assert not torch.allclose(logits, context.predict(from_original, x, ctx.device), atol=1e-3)


def test_the_gold_model_of_request_r_is_retrained_without_the_union(ctx, tmp_path, monkeypatch):
    fresh = dataclasses.replace(ctx, cache=context.Cache(tmp_path))
    stream = request_stream.make_stream(fresh, 3, 80)
    seen = []

    def capture(model, x, y, *args, **kwargs):
        seen.append(y)
        raise Captured

    monkeypatch.setattr(context, "train_model", capture)
    with pytest.raises(Captured):
        requests.gold_model(fresh, stream, 2)
    retain = request_stream.request_context(fresh, stream, 2).splits.retain
    assert torch.equal(seen[0], ctx.dataset.train_y[retain]) and len(seen[0]) == len(ctx.splits.members) - 160


def test_a_second_run_trains_nothing(stream_run, cache_dir, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("a cached artefact was built again")

    for module, name in ((context, "train_model"), (runner, "unlearn"), (amortised, "twin_original"),
                         (amortised, "fit_predictor"), (amortised, "request_features")):
        monkeypatch.setattr(module, name, no_work)
    assert main(["requests", str(SMOKE), "--requests", "3", "--out", str(tmp_path), "--set",
                 f"cache_dir={cache_dir}"]) == 0
    again = json.loads((tmp_path / "requests.json").read_text())
    first = stream_run[1]
    assert again["entries"] == first["entries"] and again["timing"]["one_off"] == first["timing"]["one_off"]


def test_an_interrupted_stream_resumes_at_its_first_unfinished_request(stream_run, cache_dir, tmp_path, monkeypatch):
    params = load_params(SMOKE, [f"cache_dir={cache_dir}"])
    scored = []
    score = requests.score_request

    def interrupted(ctx, stream, r, *args):
        scored.append(r)
        if r == 3:
            raise KeyboardInterrupt
        return score(ctx, stream, r, *args)

    monkeypatch.setattr(requests, "score_request", interrupted)
    with pytest.raises(KeyboardInterrupt):
        requests.evaluate_stream(params, 3, tmp_path)
    partial = json.loads((tmp_path / "requests.json").read_text())
    assert not partial["complete"] and len(partial["requests"]) == 2
    scored.clear()
    monkeypatch.setattr(requests, "score_request", lambda ctx, stream, r, *a: scored.append(r) or score(ctx, stream, r, *a))
    resumed = requests.evaluate_stream(params, 3, tmp_path)
    assert scored == [3] and resumed["complete"] and resumed["resumed_requests"] == 2
    assert resumed["entries"]["tmu"] == stream_run[1]["entries"]["tmu"]


def test_gold_every_k_scores_every_kth_request_only(stream_run, cache_dir, tmp_path):
    assert main(["requests", str(SMOKE), "--requests", "3", "--gold-every", "2", "--out", str(tmp_path), "--set",
                 f"cache_dir={cache_dir}", "--set", "methods=[tmu,finetune]"]) == 0
    result = json.loads((tmp_path / "requests.json").read_text())
    assert [q["evaluated"] for q in result["requests"]] == [False, True, False]
    assert "delta_forget_union" in result["entries"]["tmu"][1]
    assert "delta_forget_union" not in result["entries"]["tmu"][0]
    assert result["entries"]["tmu"][1]["delta_forget_union"] == stream_run[1]["entries"]["tmu"][1]["delta_forget_union"]


@pytest.mark.parametrize("argv, message", [
    (["--requests", "0"], "--requests must be at least 1"),
    (["--requests", "3", "--request-size", "0"], "--request-size must be at least 1"),
    (["--requests", "3", "--gold-every", "4"], "--gold-every must lie in [1, --requests = 3]"),
    (["--requests", "3", "--set", "forget_scenario=class"], "forget_scenario 'random'"),
    (["--requests", "3", "--set", "methods=[tmu,tmu_oracle]"], "'tmu_oracle' cannot run in a stream"),
    (["--requests", "3", "--set", "tuning=twin"], "tuning 'twin' tunes on the twin problem"),
    # auto on data the fixed knobs were not tuned for (smoke's mlp) means twin tuning: not in a stream
    (["--requests", "3", "--set", "fixed_knobs=default"], "tuning 'auto' tunes on the twin problem"),
])
def test_bad_arguments_are_a_clear_error_before_the_data_is_loaded(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(context, "prepare", lambda *a: pytest.fail("work started despite bad input"))
    assert main(["requests", str(SMOKE), "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--requests", "3", "--request-size", "800"], "3 requests of 800 samples do not fit in the 2400 members"),
    (["--requests", "500"], "a request size of 0"),
])
def test_requests_that_cannot_be_drawn_are_a_clear_error_before_any_training(argv, message, cache_dir, tmp_path,
                                                                             monkeypatch, capsys):
    monkeypatch.setattr(context, "train_model", lambda *a, **k: pytest.fail("a model trained despite bad input"))
    monkeypatch.setattr(context, "original_model", lambda *a, **k: pytest.fail("work started despite bad input"))
    assert main(["requests", str(SMOKE), "--out", str(tmp_path), "--set", f"cache_dir={cache_dir}", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "requests.json").exists()


def test_the_independent_twin_ignores_the_request(ctx):
    twin = amortised.independent_twin_forget(ctx)
    assert len(twin) == round(ctx.params.forget_fraction * len(ctx.splits.members))
    assert torch.isin(twin, ctx.splits.holdout).all() and not torch.isin(twin, ctx.splits.members).any()
    other = request_stream.make_stream(ctx, 2, 100).requests[1]
    moved = dataclasses.replace(ctx, splits=dataclasses.replace(ctx.splits, forget=other))
    assert torch.equal(amortised.independent_twin_forget(moved), twin)
    matched = ctx.splits.twin_forget
    assert not torch.equal(matched.sort().values, twin.sort().values)


def test_independent_twin_in_a_single_run_has_its_own_tmu_key_and_the_baselines_keep_theirs(cache_dir):
    matched = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}"]))
    independent = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", "twin_forget=independent"]))
    assert runner.unlearned_key(matched, "tmu") != runner.unlearned_key(independent, "tmu")
    assert runner.unlearned_key(matched, "finetune") == runner.unlearned_key(independent, "finetune")
    original = context.original_model(independent)[0]
    pred, timing = generalization.tmu_predict_easy(independent, original)
    assert len(pred.easy) == len(independent.splits.forget)
    assert pred.easy.sum() == round(pred.twin_easy_rate * len(pred.easy))  # rate_match on the twin's easy rate
    assert 0 < timing["tmu_per_request_s"] < timing["tmu_one_off_s"]
    assert timing["tmu_one_off_s"] == pytest.approx(timing["twin_s"] + timing["curriculum_s"] + timing["features_s"]
                                                    + timing["predictor_s"])
