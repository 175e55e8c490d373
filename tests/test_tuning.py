"""Gold-free tuning on the twin problem (tmu_utils/experiments/tuning/), on params/smoke.yaml: the results.json
block, equal budgets, the choice rule, the cache, out-of-fold TMU splits, and no gold model."""
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from tmu_utils.__main__ import main
from tmu_utils.core import context
from tmu_utils.core.choices import TUNE_GRID_POINTS, UNLEARNING_METHODS
from tmu_utils.core.context import Outputs
from tmu_utils.core.params import ParamsError, load_params, make_params
from tmu_utils.core.variants import row
from tmu_utils.experiments import runs, tuning
from tmu_utils.experiments.tuning import grids as tuning_grids, problem as tuning_problem, search
from tmu_utils.method import generalization, stages
from tmu_utils.method.twin import accuracy
from tmu_utils.unlearning import runner
from tmu_utils.unlearning.common import EPOCH_PREFIX

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "params" / "smoke.yaml"
# Two TMU variants and two baselines keep the end-to-end run within a minute on a 2-core CPU.
METHODS = "[original,retrain,tmu,tmu_random_rank,finetune,scrub]"
TUNED = ["tmu", "tmu_random_rank", "finetune", "scrub"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def twin_run(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", str(SMOKE), "--set", "tuning=twin", "--set", f"methods={METHODS}", "--set",
                 f"cache_dir={cache_dir}", "--out", str(out), "--direct", "--quiet"])
    assert code == 0
    return json.loads((out / "results.json").read_text())


def smoke_context(cache_dir, *overrides):
    return context.prepare(load_params(SMOKE, [f"cache_dir={cache_dir}", "tuning=twin", *overrides]))


def test_cli_twin_run_records_equal_budgets_and_the_best_point(twin_run):
    tuned = twin_run["tuning"]
    assert list(tuned) == TUNED
    for method, record in tuned.items():
        grid = record["grid"]
        assert len(grid) == 6, method  # tune_budget's default, the same for every method
        assert len({json.dumps(p, sort_keys=True) for p in grid}) == len(grid), method
        assert len(record["scores"]) == len(record["seconds"]) == len(grid)
        assert all(0 <= s <= 1 for s in record["scores"]), method
        best = max(range(len(grid)), key=lambda i: (record["scores"][i], -i))
        assert record["chosen"] == grid[best], method
        runs = [i for i, r in enumerate(record["read_from"]) if r == i]  # the points actually run
        assert all(record["read_from"][r] == r for r in record["read_from"]), method
        assert record["tuning_s"] >= sum(record["seconds"][i] for i in runs) > 0
    assert twin_run["timing"]["tuning_shared_s"] > 0
    assert set(twin_run["methods"]) == {"original", "retrain", *TUNED}


def test_the_real_unlearning_runs_with_the_chosen_knobs(twin_run, cache_dir, tmp_path, monkeypatch):
    seen = {}
    fetch = runner.unlearned_outputs

    def spy(ctx, method, original, easy=None, **target_inputs):
        seen[method] = {k: getattr(ctx.params, k) for k in tuning_grids.KNOBS[row(ctx.params, method).method]}
        return fetch(ctx, method, original, easy, **target_inputs)

    monkeypatch.setattr(runner, "unlearned_outputs", spy)
    params = load_params(SMOKE, ["tuning=twin", f"methods={METHODS}", f"cache_dir={cache_dir}", f"out_dir={tmp_path}"])
    again = runs.evaluate(context.prepare(params))
    assert seen == {m: twin_run["tuning"][m]["chosen"] for m in TUNED}
    for key in ("forget_acc", "activation_distance", "time_s"):  # fetched, not re-unlearned with other knobs
        assert again["methods"]["tmu"][key] == twin_run["methods"]["tmu"][key]


def test_a_rerun_does_not_tune_again(twin_run, cache_dir, monkeypatch):
    def no_tuning(*args, **kwargs):
        raise AssertionError("a cached tuning was run again")

    monkeypatch.setattr(search, "tune_method", no_tuning)
    ctx = smoke_context(cache_dir, f"methods={METHODS}")
    records, _ = tuning.tune_methods(ctx, context.original_model(ctx)[0], ctx.params.methods)
    assert {m: r["chosen"] for m, r in records.items()} == {m: twin_run["tuning"][m]["chosen"] for m in TUNED}


def test_tuning_and_unlearning_never_touch_the_gold_model(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("tuning asked for the gold model")

    monkeypatch.setattr(context, "gold_model", forbidden)
    ctx = smoke_context(tmp_path, "tune_budget=2")
    original, _ = context.original_model(ctx)
    pred, _ = generalization.tmu_predict_easy(ctx, original)
    # every method, and TMU's controls, which are tuned as TMU at the predictor's split (the oracle's
    # gold split is the real run's, never the tuner's)
    tunable = [m for m in UNLEARNING_METHODS if m in tuning_grids.KNOBS] + ["tmu_oracle", "tmu_all_hard"]
    records, _ = tuning.tune_methods(ctx, original, tunable)
    assert list(records) == tunable and all(len(r["grid"]) == 2 for r in records.values())
    assert records["tmu_oracle"]["chosen"] == records["tmu"]["chosen"]
    for method in ("tmu", "tmu_all_hard", "finetune", "scrub"):  # the real unlearning, with the chosen knobs
        easy = {"tmu": pred.easy, "tmu_all_hard": torch.zeros_like(pred.easy)}.get(method)
        model, seconds = runner.unlearn(tuning.tuned_context(ctx, records[method]), method, original, easy,
                                        easy_proba=pred.proba, unseen_margins=pred.unseen_margins)
        assert seconds > 0
    assert not any((tmp_path / kind).exists() for kind in ("gold0", "gold1"))  # no gold model was ever built


@pytest.mark.parametrize("method", EPOCH_PREFIX)
def test_points_read_off_a_longer_run_equal_their_own_runs(method, twin_run, cache_dir):
    ctx = smoke_context(cache_dir)
    original, _ = context.original_model(ctx)
    problem = tuning_problem.twin_problem(ctx, original)
    record = tuning.tune_method(ctx, problem, method, None)
    grid = record["grid"]
    shared = [i for i, r in enumerate(record["read_from"]) if r != i]
    assert shared and all(grid[i]["unlearn_epochs"] < grid[record["read_from"][i]]["unlearn_epochs"] for i in shared)
    for i in range(len(grid)):
        (outputs, seconds), = tuning.twin_unlearn(ctx, problem, method, dataclasses.replace(ctx.params, **grid[i]),
                                                  None).values()
        _, metrics = tuning.alignment_score(outputs, problem.gold_outputs, problem.labels)
        distance = tuning.margin_distance(outputs, problem.gold_outputs, problem.labels)
        # the same bits, not merely close, in both criteria's inputs and in the score the record chose by
        assert (metrics["tow"], metrics["activation_distance"], distance) == (
            record["tow"][i], record["activation_distance"][i], record["margin_distance"][i]), (method, grid[i])
        score = tuning.point_score(record["criterion"], metrics["tow"], metrics["activation_distance"], distance)
        assert score == record["scores"][i], (method, grid[i])


def test_only_epoch_prefix_methods_are_read_after_each_epoch(twin_run, cache_dir):
    ctx = smoke_context(cache_dir)
    original, _ = context.original_model(ctx)
    problem = tuning_problem.twin_problem(ctx, original)
    grid = tuning.grid_points("l1_sparse", ctx.params)
    assert tuning.shared_runs("l1_sparse", grid) == {i: [i] for i in range(len(grid))}
    with pytest.raises(ValueError, match="scrub"):
        tuning.twin_unlearn(ctx, problem, "scrub", ctx.params, None, read_at=(1,))
    with pytest.raises(RuntimeError, match="never reached"):  # a read past the run's last epoch
        tuning.twin_unlearn(ctx, problem, "finetune", ctx.params, None, read_at=(ctx.params.unlearn_epochs + 1,))


def test_tmu_twin_split_is_out_of_fold(twin_run, cache_dir, monkeypatch):
    ctx = smoke_context(cache_dir)
    original, _ = context.original_model(ctx)
    twin, _ = stages.twin_model(ctx, original)
    raw, _ = stages.generalization_features(ctx, original, twin, stages.curriculum_model(ctx)[0])
    g = raw["twin_labels"]
    rows = []
    fit = tuning_problem.fit_predictor

    def spy(features, labels, *args):
        rows.append(len(labels))
        return fit(features, labels, *args)

    monkeypatch.setattr(tuning_problem, "fit_predictor", spy)
    easy, proba = tuning_problem.out_of_fold_easy(ctx, raw)
    n = len(g)
    # one predictor per fold, each fitted without its fold: every sample is held out exactly once
    assert len(rows) == ctx.params.cv_folds and sum(n - r for r in rows) == n
    assert not torch.equal(easy, g)
    assert abs(easy.float().mean().item() - g.float().mean().item()) < 0.02  # rate_match, per fold
    assert ((proba >= 0) & (proba <= 1)).all() and proba[easy].mean() > proba[~easy].mean()


def test_tmu_is_handed_the_out_of_fold_split_and_only_the_oracle_the_labels(twin_run, cache_dir, monkeypatch):
    # predictor_epochs=49: a new key for the splits and TMU's tuning, the cached models and features
    ctx = smoke_context(cache_dir, "predictor_epochs=49", "tune_budget=1")
    original, _ = context.original_model(ctx)
    n = len(ctx.splits.twin_forget)
    planted = torch.arange(n) % 3 == 0
    monkeypatch.setattr(tuning_problem, "out_of_fold_easy", lambda ctx, raw: (planted.clone(), planted.float()))
    splits, proba, _ = tuning_problem.twin_easy_splits(ctx, original)
    twin, _ = stages.twin_model(ctx, original)
    g = stages.generalization_features(ctx, original, twin, stages.curriculum_model(ctx)[0])[0]["twin_labels"]
    assert torch.equal(splits["predictor"], planted) and torch.equal(splits["gold"], g)
    assert torch.equal(proba, planted.float()) and not splits["none"].any()
    assert splits["random"].sum() == planted.sum() and not torch.equal(splits["random"], planted)

    handed = {}
    real = search.METHODS["tmu"]

    def spy(task):
        handed[len(handed)] = task.easy.clone()
        return real(task)

    monkeypatch.setitem(search.METHODS, "tmu", spy)
    records, _ = tuning.tune_methods(ctx, original, ["tmu_all_hard", "tmu"])
    # tmu is tuned once, on its out-of-fold split; its control runs at the knobs tmu chose
    assert len(handed) == 1 and torch.equal(handed[0], planted)
    assert records["tmu_all_hard"]["tuned_as"] == runner.artefact_name("tmu", ctx.params)
    assert records["tmu_all_hard"]["chosen"] == records["tmu"]["chosen"] and "tuned_as" not in records["tmu"]


def test_grids_give_every_method_the_same_number_of_distinct_points():
    for method in tuning_grids.KNOBS:
        for budget in (1, 8, TUNE_GRID_POINTS):
            params = make_params({"tune_budget": budget})
            points = tuning_grids.grid_points(method, params)
            assert len({json.dumps(p, sort_keys=True) for p in points}) == budget
            assert points == tuning_grids.grid_points(method, params)  # deterministic
    # on a 4 x 4 grid, 8 points take each value of each knob twice
    points = tuning_grids.grid_points("tmu", make_params({"tune_budget": 8}))
    assert sorted(p["unlearn_lr"] for p in points) == sorted([0.002, 0.005, 0.01, 0.02] * 2)  # 0.4-4x of 0.005
    assert sorted(p["hard_repeat"] for p in points) == sorted([1, 2, 4, 8] * 2)
    # the default 6 are the first 6 of those: the lowest and the second rate once, the others twice
    points = tuning_grids.grid_points("tmu", make_params({}))
    assert points == tuning_grids.grid_points("tmu", make_params({"tune_budget": 8}))[:6]
    assert sorted(p["unlearn_lr"] for p in points) == [0.002, 0.005, 0.005, 0.01, 0.02, 0.02]
    assert set(tuning_grids.KNOBS) | set(tuning_grids.NO_KNOBS) == set(UNLEARNING_METHODS)


def test_learning_rate_grids_follow_the_params_file():
    points = tuning_grids.grid_points("finetune", make_params({"unlearn_lr": 0.05, "tune_budget": 16}))
    assert sorted({p["unlearn_lr"] for p in points}) == [0.02, 0.05, 0.1, 0.2]
    assert sorted({p["unlearn_epochs"] for p in points}) == [1, 2, 3, 5]  # absolute
    neggrad = [p["neggrad_lr"] for p in tuning_grids.grid_points("neggrad", make_params({"tune_budget": 16}))]
    assert min(neggrad) < 1.5e-4 / 7 and max(neggrad) > 1.5e-4 * 20  # both sides of the default


def test_an_unknown_knob_in_a_grid_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(tuning_grids.KNOBS, "finetune", {"unlearn_rate": (0.01, 0.02, 0.03, 0.04),
                                                   "unlearn_epochs": (1, 2, 3, 5)})
    with pytest.raises(ValueError, match="method 'finetune' names 'unlearn_rate', which is not a parameter"):
        tuning_grids.grid_points("finetune", make_params({}))
    with pytest.raises(ValueError, match="'finetune'.*'unlearn_rate'"):
        tuning_grids.check_grids()
    monkeypatch.delitem(tuning_grids.KNOBS, "finetune")
    with pytest.raises(ValueError, match=r"\['finetune'\] declare no tuning grid"):
        tuning_grids.check_grids()


@pytest.mark.parametrize("budget", [0, -1, TUNE_GRID_POINTS + 1])
def test_tune_budget_out_of_range_is_a_params_error(budget, capsys):
    with pytest.raises(ParamsError, match="'tune_budget'"):
        make_params({"tune_budget": budget})
    assert main(["run", str(SMOKE), "--set", f"tune_budget={budget}"]) == 2
    assert "tune_budget" in capsys.readouterr().err
    with pytest.raises(ParamsError, match="'tuning'"):
        make_params({"tuning": "gold"})


def test_the_score_rewards_matching_the_gold_model():
    torch.manual_seed(0)
    gold = Outputs(torch.randn(50, 10), torch.randn(60, 10), torch.randn(70, 10))
    labels = {"forget": gold.forget.argmax(1), "retain": gold.retain.argmax(1), "test": gold.test.argmax(1)}
    assert tuning.alignment_score(gold, gold, labels)[0] == pytest.approx(1.0)
    # the same accuracies everywhere (ToW = 1) but flattened outputs on D_f: a lower score
    flat = dataclasses.replace(gold, forget=gold.forget / 10)
    score, metrics = tuning.alignment_score(flat, gold, labels)
    assert metrics["tow"] == 1.0 and score == pytest.approx(1 - metrics["activation_distance"] / math.sqrt(2))
    assert score < 0.99
    # the forget set destroyed: a lower score still
    wrong = dataclasses.replace(gold, forget=-gold.forget)
    assert tuning.alignment_score(wrong, gold, labels)[0] < score


@pytest.fixture(scope="module")
def tune_defaults(benchmark_script):
    return benchmark_script("tune_defaults")


def test_tune_defaults_takes_the_lower_median_of_the_seeds_choices(tune_defaults):
    picks = {100: 1e-4, 101: 3e-3, 102: 2e-4}
    per_seed = {s: {"neggrad": {"chosen": {"neggrad_lr": v}}} for s, v in picks.items()}
    assert tune_defaults.medians(per_seed) == {"neggrad": {"neggrad_lr": 2e-4}}
    del per_seed[102]
    assert tune_defaults.medians(per_seed) == {"neggrad": {"neggrad_lr": 1e-4}}  # a chosen value, never between


def test_tune_defaults_script_on_one_smoke_seed_trains_no_gold_model(tune_defaults, tmp_path, monkeypatch):
    script = tune_defaults
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert script.main([str(SMOKE), "--seeds", "100", "--out", str(out), "--set", "methods=[tmu,tmu_hard,neggrad]",
                        "--budget", "2", "--set", f"cache_dir={cache}", "--tables", str(out)]) == 0
    written = json.loads((out / "smoke.json").read_text())
    # by stored name: at the default target and step `tmu` is tmu_hard_only_distill_last_block_calibrated_perturb0.3, and
    # tmu_hard the hard flip at that step
    assert list(written["seeds"]) == ["100"] and list(written["median"]) == [
        "tmu_hard_only_distill_last_block_calibrated_perturb0.3", "tmu_distill_last_block_calibrated_perturb0.3", "neggrad"]
    monkeypatch.setattr("tmu_utils.core.choices.FIXED_KNOBS_DIR", out)
    assert tuning_grids.fixed_table("smoke") == written["median"]  # the table `fixed_knobs: smoke` would read
    import yaml

    # and what it was tuned for, which a run on other data or another architecture names
    assert yaml.safe_load((out / "smoke.yaml").read_text())["tuned_for"] == {"dataset": "fashion_mnist", "arch": "mlp"}
    assert tuning_grids.tuned_elsewhere(load_params(SMOKE, ["fixed_knobs=smoke"])) is None
    assert tuning_grids.tuned_elsewhere(load_params(SMOKE, ["fixed_knobs=smoke", "arch=small_cnn"]))["arch"] == "mlp"
    assert tuning_grids.tuning_mode(load_params(SMOKE, ["fixed_knobs=smoke"])) == "fixed"
    assert tuning_grids.tuning_mode(load_params(SMOKE, ["fixed_knobs=smoke", "arch=small_cnn"])) == "twin"
    for method, knobs in written["median"].items():
        assert knobs == written["seeds"]["100"][method]["chosen"]  # one seed: its own choice
        assert knobs in written["seeds"]["100"][method]["grid"]
    assert "| neggrad | neggrad_lr |" in (out / "smoke.md").read_text()
    assert (cache / "original").is_dir() and not any((cache / kind).exists() for kind in ("gold0", "gold1"))


def test_tune_defaults_sets_the_budget_with_its_own_flag_only(tune_defaults, capsys):
    with pytest.raises(SystemExit):
        tune_defaults.main([str(SMOKE), "--set", "tune_budget=2"])
    assert "--budget" in capsys.readouterr().err


def test_budget_table_compares_each_budget_with_the_largest_on_the_same_seeds(benchmark_script, tmp_path):
    script = benchmark_script("tune_budget")

    def write(budget: int, seed: int, tow: float, complete: bool = True) -> None:
        folder = tmp_path / f"tune_budget={budget}" / str(seed)
        folder.mkdir(parents=True)
        methods = {"tmu": {"tow": tow, "activation_distance": 0.1, "delta_forget": 0.02}}
        (folder / "results.json").write_text(json.dumps({"complete": complete, "methods": methods}))

    for seed, (low, high) in {100: (0.90, 0.95), 101: (0.97, 0.96)}.items():
        write(4, seed, low)
        write(8, seed, high)
    write(6, 100, 0.5, complete=False)  # an interrupted run is no budget
    assert script.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "budget.md").read_text()
    assert "| tmu | -0.050, +0.010 |" in text  # per seed, 4 points minus 8
    assert "| tmu | 0.935 / 0.100 / 2.00 | 0.955 / 0.100 / 2.00 |" in text
    assert "6 points" not in text
    write(6, 101, 0.9)  # a budget at other seeds than the rest
    with pytest.raises(SystemExit, match="different seeds"):
        script.main([str(tmp_path), "--out", str(tmp_path / "out")])


def test_class_scenario_hands_tmu_nothing_easy_on_the_twin_problem_too(twin_run, cache_dir, monkeypatch):
    ctx = smoke_context(cache_dir, "forget_scenario=class", "forget_class=2", "tune_budget=1")
    handed = []
    real = search.METHODS["tmu"]
    monkeypatch.setitem(search.METHODS, "tmu", lambda task: handed.append(task.easy.clone()) or real(task))
    tuning.tune_methods(ctx, context.original_model(ctx)[0], ["tmu"])
    assert len(handed) == 1 and len(handed[0]) == len(ctx.splits.twin_forget) and not handed[0].any()


def test_the_tuner_twin_is_matched_and_the_predictor_twin_is_not(twin_run, cache_dir):
    ctx = smoke_context(cache_dir, "twin_match=members")
    original, _ = context.original_model(ctx)
    problem = tuning_problem.twin_problem(ctx, original)
    _, meta = stages.twin_model(ctx, original, matched=True)
    tx, ty = ctx.subset("twin_forget")
    reached = accuracy(problem.original, tx, ty, ctx.device)
    assert reached == meta["twin_forget_accuracy"][-1]  # the twin problem's original is the matched M_t
    assert reached >= meta["match_accuracy"] or meta["epochs"] == ctx.params.twin_max_epochs
    # TMU's predictor reads the twin_epochs M_t whatever twin_match says
    plain = smoke_context(cache_dir, "twin_match=none")
    a, _ = stages.twin_model(ctx, original)
    b, _ = stages.twin_model(plain, original)
    def same(m, n):
        return all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), n.state_dict().values()))

    assert same(a, b) and same(tuning_problem.twin_problem(plain, original).original, a)
    assert not same(problem.original, a)
    # a tuning on the other twin is another tuning; the real unlearning's key holds only the knobs
    assert tuning.tuning_key(ctx, "tmu") != tuning.tuning_key(plain, "tmu")
    assert runner.unlearned_key(ctx, "tmu") == runner.unlearned_key(plain, "tmu")


def test_the_scratch_twin_is_the_recipe_on_members_and_twin_forget_with_its_own_seed(cache_dir, monkeypatch):
    ctx = smoke_context(cache_dir, "twin_match=scratch")
    trained = []

    def record(ctx_, data, seed, label, **kwargs):
        trained.append((data, seed, kwargs))
        return context.new_model(ctx_), {"seconds": 0.0}

    monkeypatch.setattr(stages, "train_from_scratch", record)
    monkeypatch.setattr(stages, "cached_model", lambda ctx_, name, fields, build: build())
    stages.scratch_twin(ctx)
    (x, y), seed, kwargs = trained[0]
    members, twin_forget = ctx.splits.members, ctx.splits.twin_forget
    assert len(x) == len(members) + len(twin_forget) and kwargs == {}  # the recipe's own epochs
    assert seed == ctx.seeds["twin_scratch"] and seed not in {v for k, v in ctx.seeds.items() if k != "twin_scratch"}
    expected = torch.cat([ctx.dataset.train_y[members], ctx.dataset.train_y[twin_forget]])
    assert torch.equal(y.sort().values, expected.sort().values)


def test_the_twin_problem_scores_on_the_holdout_never_on_the_test_split(twin_run, cache_dir, monkeypatch):
    ctx = smoke_context(cache_dir)
    original, _ = context.original_model(ctx)
    real_subset = ctx.subset

    def no_test(name):
        assert name != "test", "the twin problem read the real test split"
        return real_subset(name)

    monkeypatch.setattr(ctx, "subset", no_test)
    problem = tuning_problem.twin_problem(ctx, original)
    unseen = ctx.splits.holdout[~torch.isin(ctx.splits.holdout, ctx.splits.twin_forget)]
    pool = ctx.dataset.train_x[unseen].flatten(1)
    rows = problem.eval_x["test"].flatten(1)
    assert len(rows) == min(tuning_problem.TWIN_EVAL_SAMPLES, len(unseen))
    assert all((pool == r).all(1).any() for r in rows[:50])  # each is a holdout image outside D_tf
