"""End to end on params/smoke.yaml: the results.json schema, cache reuse, the CLI, and proof that
TMU itself never touches the gold model."""
import json
import math
from pathlib import Path

import pytest
import torch

from tmu_utils.__main__ import main
from tmu_utils.core import context
from tmu_utils.core.choices import DEFAULT_METHODS
from tmu_utils.core.params import load_params
from tmu_utils.evaluation import scoring
from tmu_utils.evaluation.metrics import METRIC_KEYS
from tmu_utils.experiments import runs
from tmu_utils.method import generalization, stages
from tmu_utils.unlearning import runner

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "params" / "smoke.yaml"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def smoke_run(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    params = load_params(SMOKE, [f"cache_dir={cache_dir}", f"out_dir={out}"])
    return runs.run(params), out


def test_results_json_schema(smoke_run):
    results, out = smoke_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["complete"] is True
    assert set(on_disk) >= {"params", "params_hash", "env", "splits", "predictor", "timing", "methods", "noise_floor"}
    assert set(on_disk["env"]) == {"torch", "device", "device_type", "git_sha"}
    assert on_disk["env"]["device_type"] == "cpu"
    assert set(on_disk["splits"]) == {"members", "holdout", "forget", "retain", "twin_forget", "test"}
    assert set(on_disk["predictor"]) >= {"twin_easy_rate", "true_easy_rate", "predicted_easy_rate", "accuracy",
                                         "balanced_accuracy", "auc", "twin_cv_accuracy"}
    assert set(on_disk["timing"]) >= {"original_s", "gold_s", "twin_s", "curriculum_s", "features_s", "predictor_s"}
    assert list(on_disk["methods"]) == list(DEFAULT_METHODS)
    for name, metrics in on_disk["methods"].items():
        knobs = metrics.pop("knobs", None)  # the knobs a method ran with; the references have none
        assert (knobs is None) == (name in ("original", "retrain")) and all(isinstance(v, (int, float))
                                                                            for v in (knobs or {}).values()), name
        assert set(metrics) == set(METRIC_KEYS), name
        for key, value in metrics.items():
            if not (name == "original" and key in ("rte", "rte_with_one_off")):
                assert isinstance(value, float) and math.isfinite(value), (name, key, value)
    assert set(on_disk["noise_floor"]) == set(METRIC_KEYS)
    assert on_disk["methods"]["retrain"]["delta_forget"] == 0.0
    assert on_disk["methods"]["retrain"]["tow"] == 1.0
    # only the twin-based variants pay the one-off; for the others both RTEs agree
    tmu, finetune = on_disk["methods"]["tmu"], on_disk["methods"]["finetune"]
    one_off = on_disk["timing"]["tmu_one_off_s"]
    assert tmu["rte_with_one_off"] == pytest.approx(on_disk["timing"]["gold_s"] / (tmu["time_s"] + one_off))
    assert tmu["rte_with_one_off"] < tmu["rte"] and finetune["rte_with_one_off"] == finetune["rte"]
    assert (out / "splits.pt").exists() and (out / "figures" / "delta_forget.png").exists()


def test_original_and_both_gold_models_have_their_own_recorded_seeds(smoke_run, tmp_path, monkeypatch):
    results, _ = smoke_run
    seeds = results["seeds"]
    assert len({seeds["original"], seeds["gold"], seeds["gold2"]}) == 3
    used = {}

    def record(ctx, split, seed, desc, **changes):
        used[desc] = seed
        return context.new_model(ctx), {"seconds": 1.0, "losses": [1.0]}

    monkeypatch.setattr(context, "train_from_scratch", record)
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={tmp_path}"]))
    scoring.references(ctx)
    assert used == {"original M_o": seeds["original"], "gold M_g": seeds["gold"], "gold M_g'": seeds["gold2"]}
    # no role of any replica of a population shares a seed with another
    all_seeds = [s for r in range(context.MAX_REPLICAS) for s in context.model_seeds(0, r).values()]
    assert len(all_seeds) == len(set(all_seeds))


def test_random_rank_control_keeps_the_count_and_changes_the_choice(smoke_run, cache_dir):
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}"]))
    easy = torch.zeros(len(ctx.splits.forget), dtype=torch.bool)
    easy[: len(easy) // 2] = True
    control = runner.random_rank(ctx, easy)
    assert control.sum() == easy.sum() and not torch.equal(control, easy)
    assert torch.equal(control, runner.random_rank(ctx, easy))  # seeded: the same each run
    assert not torch.equal(control, runner.random_rank(ctx.for_replica(1), easy))


def test_metrics_are_fractions(smoke_run):
    results, _ = smoke_run
    for metrics in list(results["methods"].values()) + [results["noise_floor"]]:
        for key in ("forget_acc", "retain_acc", "test_acc", "delta_forget", "agreement", "mia_member_rate"):
            assert 0.0 <= metrics[key] <= 1.0
        assert 0.0 <= metrics["js_divergence"] <= math.log(2) + 1e-9


def test_second_run_reuses_every_model(smoke_run, cache_dir, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(context, "train_model", no_training)
    monkeypatch.setattr(stages, "twin_original", no_training)
    params = load_params(SMOKE, [f"cache_dir={cache_dir}", "methods=[original,retrain,tmu]", f"out_dir={tmp_path}"])
    again = runs.run(params)
    assert again["timing"]["gold_s"] == smoke_run[0]["timing"]["gold_s"]  # measured once, stored with the model


def test_tmu_never_touches_the_gold_model(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the method asked for the gold model")

    monkeypatch.setattr(context, "gold_model", forbidden)
    params = load_params(SMOKE, [f"cache_dir={tmp_path}"])
    ctx = context.prepare(params)
    original, _ = context.original_model(ctx)
    pred, timing = generalization.tmu_predict_easy(ctx, original)
    model, seconds = runner.unlearn(ctx, "tmu", original, pred.easy, easy_proba=pred.proba,
                                    unseen_margins=pred.unseen_margins)
    assert not any((tmp_path / kind).exists() for kind in ("gold0", "gold1"))  # no gold model was ever built
    assert 0 < pred.easy.float().mean() < 1 and seconds > 0 and timing["tmu_one_off_s"] > 0
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values())]
    assert any(changed)


def test_cli_rejects_a_bad_key_naming_it(capsys):
    assert main(["run", str(SMOKE), "--set", "unlearn_epoch=2"]) == 2
    assert "unknown parameter 'unlearn_epoch'" in capsys.readouterr().err


def test_cli_missing_data_names_every_place(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMU_DATA_DIR", str(tmp_path / "data"))
    code = main(["run", str(SMOKE), "--set", "dataset=cifar10", "--set", f"cache_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 3
    assert str(tmp_path / "data") in err and str(tmp_path / "home" / ".cache" / "tmu") in err


def test_cli_run_executes_the_five_run_notebooks_on_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    # scrub_alpha: declared by no notebook, it reaches 05 through the run's params.yaml
    assert main(["run", str(SMOKE), "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}",
                 "--set", "scrub_alpha=0.5"]) == 0
    executed = sorted(p.name for p in out.glob("*.ipynb"))
    assert executed == ["01_original_and_gold.ipynb", "02_twin_problem.ipynb", "03_generalization_features.ipynb",
                        "04_unlearning.ipynb", "05_evaluation.ipynb"]
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and "| tmu |" in capsys.readouterr().out
    assert results["params"]["scrub_alpha"] == 0.5 and results["params"]["train_limit"] == load_params(SMOKE).train_limit


def test_class_scenario_treats_every_forget_sample_as_hard(tmp_path):
    params = load_params(SMOKE, [f"cache_dir={tmp_path}", "forget_scenario=class", "forget_class=2"])
    ctx = context.prepare(params)
    original, _ = context.original_model(ctx)
    pred, _ = generalization.tmu_predict_easy(ctx, original)
    assert len(pred.easy) == len(ctx.splits.forget) and not pred.easy.any()


def test_every_cached_artefact_names_the_device_type(smoke_run, cache_dir):
    kinds = {}
    for path in cache_dir.glob("*/*.pt"):
        kinds.setdefault(path.parent.name, []).append(path.stem)
    assert {"original", "gold0", "gold1", "twin", "curriculum", "features", "unlearned"} <= set(kinds)
    assert all(stem.endswith("-cpu") for stems in kinds.values() for stem in stems), kinds
