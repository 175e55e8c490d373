"""The population command at smoke scale: outputs and their structure, resuming from the cache, and
clear errors before anything trains."""
import json
from pathlib import Path

import numpy as np
import pytest

from tmu_utils.__main__ import main
from tmu_utils.core import context
from tmu_utils.core.params import load_params
from tmu_utils.experiments import population
from tmu_utils.method import stages
from tmu_utils.unlearning import runner

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "params" / "smoke.yaml"
METHODS = "methods=[original,retrain,tmu,tmu_random_rank,tmu_bn,finetune]"  # tmu_bn: smoke's model has no BatchNorm


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def smoke_population(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("population")
    code = main(["population", str(SMOKE), "--models", "3", "--out", str(out), "--set", f"cache_dir={cache_dir}",
                 "--set", METHODS])
    assert code == 0
    return out


def test_population_writes_json_markdown_and_figures(smoke_population):
    result = json.loads((smoke_population / "population.json").read_text())
    assert result["n_models"] == 3
    assert result["data"]["dataset"] == "fashion_mnist" and len(result["data"]["checksum"]) == 16
    seeds = result["seeds"]
    assert all(len(seeds[k]) == 3 for k in ("originals", "retrain_a", "retrain_b"))
    assert len(set(seeds["originals"] + seeds["retrain_a"] + seeds["retrain_b"])) == 9  # all independent
    assert list(result["methods"]) == ["original", "tmu", "tmu_random_rank", "finetune"]
    # a step the architecture cannot take is left out and said so, not a failure after the models are built
    assert list(result["not_applicable"]) == ["tmu_bn"] and "BatchNorm" in result["not_applicable"]["tmu_bn"]
    assert "Not run: `tmu_bn`" in (smoke_population / "population.md").read_text()
    for row in [result["floor"], *result["methods"].values()]:
        for split in ("forget", "retain", "test"):
            klom = row["klom"][split]
            assert klom["p95_ci95"][0] <= klom["p95"] <= klom["p95_ci95"][1] and klom["mean"] >= 0
        assert 0 <= row["ulira"]["balanced_accuracy"] <= 1 and set(row["ulira"]) >= {"tpr_at_1fpr", "tpr_at_5fpr"}
        for key in ("delta_forget", "tow", "activation_distance", "retain_acc", "time_s"):
            assert set(row[key]) == {"mean", "ci95"}
        forgetting, floor = row["forgetting"], result["floor"]
        assert 0 < forgetting["F"] <= 1 and 0 <= forgetting["epsilon_median"] <= forgetting["epsilon_max"]
        assert forgetting["score"] == pytest.approx(
            forgetting["F"] * row["retain_acc"]["mean"] / floor["retain_acc"]["mean"]
            * row["test_acc"]["mean"] / floor["test_acc"]["mean"])
    assert result["timing"]["total_s"] > 0 and len(result["timing"]["per_model_s"]) >= 9
    assert "| tmu |" in (smoke_population / "population.md").read_text()
    assert {p.name for p in (smoke_population / "figures").iterdir()} == {"klom_cdf_forget.png", "ulira_roc.png"}
    samples = np.load(smoke_population / "population_samples.npz")
    assert samples["tmu/forget"].shape == (result["evaluation"]["sets"]["forget"],)
    assert samples["margins/tmu"].shape == (3, result["evaluation"]["sets"]["forget"])


def test_floor_compares_two_different_retrain_sets(smoke_population):
    samples = np.load(smoke_population / "population_samples.npz")
    # B vs A is a real comparison: a floor of A against itself would be exactly zero everywhere
    assert samples["floor/forget"].mean() > 0
    assert not np.array_equal(samples["margins/retrain_a"], samples["margins/retrain_b"])


def test_a_second_run_trains_nothing(smoke_population, cache_dir, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(context, "train_model", no_training)
    monkeypatch.setattr(stages, "twin_original", no_training)
    monkeypatch.setattr(runner, "unlearn", no_training)
    assert main(["population", str(SMOKE), "--models", "3", "--out", str(tmp_path), "--set",
                 f"cache_dir={cache_dir}", "--set", METHODS]) == 0
    again = json.loads((tmp_path / "population.json").read_text())
    first = json.loads((smoke_population / "population.json").read_text())
    assert again["methods"]["tmu"]["klom"] == first["methods"]["tmu"]["klom"]


@pytest.mark.parametrize("argv, message", [
    (["--models", "2"], "at least 3"),
    (["--models", "3", "--set", "methods=[tmu,finetuned]"], "unknown method 'finetuned'"),
    (["--models", "3", "--set", "methods=[retrain]"], "no method"),
])
def test_bad_input_is_a_clear_error_before_anything_trains(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(context, "prepare", lambda *a: pytest.fail("work started despite bad input"))
    assert main(["population", str(SMOKE), "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMU_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    code = main(["population", str(SMOKE), "--models", "3", "--out", str(tmp_path / "out"),
                 "--set", "dataset=cifar10", "--set", f"cache_dir={tmp_path}"])
    assert code == 3 and str(tmp_path / "nowhere") in capsys.readouterr().err


def test_replicas_use_their_own_models(cache_dir):
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}"]))
    seeds = population.population_seeds(ctx, 3)
    assert seeds["originals"][0] == ctx.seeds["original"] and seeds["retrain_a"][0] == ctx.seeds["gold"]
    first = next(context.original_model(ctx)[0].parameters())
    second = next(context.original_model(ctx.for_replica(1))[0].parameters())
    assert not np.array_equal(first.detach().numpy(), second.detach().numpy())


def test_replicas_run_as_jobs_through_the_sweep_runner(smoke_population, cache_dir, tmp_path):
    # each replica is one job (here in-process, one after the other); the assembly then reads the cache
    code = main(["population", str(SMOKE), "--models", "3", "--out", str(tmp_path), "--executor", "debug",
                 "--set", f"cache_dir={cache_dir}", "--set", METHODS])
    assert code == 0
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["replica_0.log", "replica_1.log", "replica_2.log"]
    assert json.loads((tmp_path / "population.json").read_text())["n_models"] == 3


def test_the_forgetting_score_is_recomputed_from_the_saved_margins(smoke_population, benchmark_script, tmp_path):
    """benchmarks/population_forgetting_score.py on a population written without the score gives
    the score the population command computes (up to the float16 margins it reads)."""
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(smoke_population, folder)
    written = json.loads((folder / "population.json").read_text())
    for row in [written["floor"], *written["methods"].values()]:
        row.pop("forgetting")
    (folder / "population.json").write_text(json.dumps(written))
    assert benchmark_script("population_forgetting_score").main([str(folder)]) == 0
    again = json.loads((folder / "population.json").read_text())
    first = json.loads((smoke_population / "population.json").read_text())
    for name in ["floor", *first["methods"]]:
        row_again = again["floor"] if name == "floor" else again["methods"][name]
        row_first = first["floor"] if name == "floor" else first["methods"][name]
        assert row_again["forgetting"]["F"] == pytest.approx(row_first["forgetting"]["F"], abs=0.02)
    assert "challenge F" in (folder / "population.md").read_text()
