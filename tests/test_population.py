"""The population command at smoke scale: outputs and their structure, resuming from the cache, and
clear errors before anything trains."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tmu_utils.__main__ import main
from tmu_utils.core import context
from tmu_utils.core.params import load_params
from tmu_utils.evaluation import forgetting_score
from tmu_utils.experiments import population, replicas
from tmu_utils.experiments.tuning import knobs
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
        assert 0 <= forgetting["F"] <= 1 and 0 <= forgetting["epsilon_median"] <= forgetting["epsilon_cap"]
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


def run_without_training(monkeypatch, why: str, out, cache) -> dict:
    """The smoke population again into `out` with `cache`, any training an error; its population.json."""
    def no_training(*args, **kwargs):
        raise AssertionError(why)

    for module, name in ((context, "train_model"), (stages, "twin_original"), (runner, "unlearn")):
        monkeypatch.setattr(module, name, no_training)
    assert main(["population", str(SMOKE), "--models", "3", "--out", str(out), "--set", f"cache_dir={cache}",
                 "--set", METHODS]) == 0
    return json.loads((out / "population.json").read_text())


def test_a_second_run_trains_nothing(smoke_population, cache_dir, tmp_path, monkeypatch):
    again = run_without_training(monkeypatch, "a cached model was trained again", tmp_path, cache_dir)
    first = json.loads((smoke_population / "population.json").read_text())
    assert again["methods"]["tmu"]["klom"] == first["methods"]["tmu"]["klom"]


@pytest.mark.parametrize("argv, message", [
    (["--models", "2"], "at least 3"),
    (["--models", "3", "--set", "methods=[tmu,finetuned]"], "'finetuned' is neither a method nor a variant"),
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


def test_the_forgetting_score_is_the_published_one_on_the_stored_confidences(smoke_population):
    """F comes from the per-model logit-scaled confidences that population_samples.npz keeps (float32,
    beside the margins), and the table calls it the challenge's F."""
    result = json.loads((smoke_population / "population.json").read_text())
    samples = np.load(smoke_population / "population_samples.npz")
    assert result["evaluation"]["forgetting"] == forgetting_score.DEFINITION
    reference = samples["confidence/retrain_a"]
    assert reference.dtype == np.float32 and reference.shape == samples["margins/retrain_a"].shape
    for name, row in {"retrain_b": result["floor"], **result["methods"]}.items():
        again = forgetting_score.forgetting_quality(samples[f"confidence/{name}"], reference)
        assert row["forgetting"]["F"] == again["F"] and row["forgetting"]["statistic"] == "logit_scaled_confidence"
    text = (smoke_population / "population.md").read_text()
    assert "| challenge F | challenge score |" in text and "earlier" not in text


@pytest.mark.parametrize("folder", ["population", "population_twin"])
def test_committed_populations_label_their_f_as_the_earlier_margins_one(folder):
    """The committed populations predate the stored confidences: they still load and print, and their F
    is labelled as the earlier margins-based one, never as the challenge's."""
    from tmu_utils.reporting.tables import EARLIER_F, forgetting_label, population_table

    committed = json.loads((ROOT / "benchmarks" / "results" / folder / "population.json").read_text())
    text = population_table(committed)
    assert forgetting_label(committed) == EARLIER_F and f"| {EARLIER_F} |" in text and "challenge F" not in text
    assert text == (ROOT / "benchmarks" / "results" / folder / "population.md").read_text()


def test_a_population_resumes_from_its_folder_on_a_machine_without_the_cache(smoke_population, tmp_path,
                                                                             monkeypatch):
    # a new machine: the population's folder (as committed) and an empty artefact cache
    out = tmp_path / "copy"
    shutil.copytree(smoke_population, out)
    again = run_without_training(monkeypatch, "a model whose replica file exists was trained again", out,
                                 tmp_path / "empty_cache")
    first = json.loads((smoke_population / "population.json").read_text())
    assert again["methods"] == first["methods"] and again["floor"] == first["floor"]
    saved = json.loads(replicas.replica_path(out, 2).with_suffix(".json").read_text())
    assert saved["models"] == sorted(["retrain_a", "retrain_b", "original", "tmu", "tmu_random_rank", "finetune"])


def test_only_the_models_a_replica_file_lacks_are_run(smoke_population, cache_dir, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(smoke_population, out)
    meta_path = replicas.replica_path(out, 1).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["models"].remove("finetune")
    meta_path.write_text(json.dumps(meta))
    ran = []
    real = population.runs.method_outputs
    monkeypatch.setattr(population.runs, "method_outputs", lambda ctx, refs, name, pred=None: (
        ran.append((ctx.replica, name)), real(ctx, refs, name, pred))[1])
    assert main(["population", str(SMOKE), "--models", "3", "--out", str(out), "--set", f"cache_dir={cache_dir}",
                 "--set", METHODS]) == 0
    assert ran == [(1, "finetune")]


def test_a_replica_file_made_under_other_parameters_is_not_read(smoke_population, cache_dir, tmp_path):
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS]))
    assert replicas.load(smoke_population, ctx.for_replica(0)).margins  # the same parameters: read
    assert not replicas.load(smoke_population, ctx.for_replica(3)).margins  # no such replica
    for change in ("seed=7", "epochs=2"):
        other = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS, change]))
        assert not replicas.load(smoke_population, other).margins, change
    # a knob only the unlearning rows read, changed in the params file (`--set` would also pin it): the
    # references stay, every row reading it is run again
    other = context.prepare(dataclasses.replace(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS]),
                                                unlearn_lr=0.0123))
    assert set(replicas.load(smoke_population, other).margins) == {"original", "retrain_a", "retrain_b"}
    # where it is kept, the run's name, its method list and its folders change no number
    moved = context.prepare(load_params(SMOKE, [f"cache_dir={tmp_path}", "name=renamed", "methods=[tmu]"]))
    assert replicas.load(smoke_population, moved).margins


def test_a_replica_file_survives_a_field_added_at_its_default_and_a_new_variant(smoke_population, cache_dir,
                                                                                  tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(smoke_population, out)
    meta_path = replicas.replica_path(out, 0).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["params"]["knn_k"]  # as if the file predates the field
    meta_path.write_text(json.dumps(meta))
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS]))
    assert set(replicas.load(out, ctx).margins) == set(meta["models"])
    # ... but not where the field is set away from its default: the file cannot have run that
    other_k = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS, "knn_k=3"]))
    assert not replicas.load(out, other_k).margins
    # the tuner's fields choose nothing at fixed knobs (smoke's `auto` is fixed): another twin keeps the file
    members = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS, "twin_match=members",
                                                  "tuning_criterion=margins"]))
    assert set(replicas.load(out, members).margins) == set(meta["models"])
    # a step knob changed (as when TMU's default step moves): only the rows that run TMU's step are redone
    perturbed = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS, "tmu_perturb=0.5"]))
    assert set(replicas.load(out, perturbed).margins) == {"original", "retrain_a", "retrain_b", "finetune"}
    # a row's record that predates a field counts as made at the field's default, and no other value
    for model in meta["rows"].values():
        if model is not None:
            del model["tmu_perturb"]
    meta_path.write_text(json.dumps(meta))
    assert set(replicas.load(out, ctx).margins) == set(meta["models"])
    assert "tmu" not in replicas.load(out, perturbed).margins
    # a new built-in row changes no saved one; a saved row redefined is dropped alone
    more = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS,
                                               "variants={tmu_new: {hard_repeat: 2}}"]))
    assert set(replicas.load(out, more).margins) == set(meta["models"])
    moved = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS,
                                                "variants={tmu_random_rank: {tmu_split: random, hard_repeat: 2}}"]))
    assert set(replicas.load(out, moved).margins) == set(meta["models"]) - {"tmu_random_rank"}


def test_a_row_whose_fixed_knobs_changed_is_run_again(smoke_population, cache_dir, monkeypatch):
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", METHODS]))
    assert set(replicas.load(smoke_population, ctx).margins) >= {"tmu", "finetune"}
    monkeypatch.setattr(knobs, "fixed_table", lambda name: {"finetune": {"unlearn_lr": 0.0321}})
    assert set(replicas.load(smoke_population, ctx).margins) == {
        "original", "retrain_a", "retrain_b", "tmu", "tmu_random_rank"}
