"""The fixed-knobs tables (tmu_utils/fixed_knobs/, `fixed_knobs`): each method's own knobs under
`tuning: fixed`, how the stored names map TMU's variants and controls onto them, and their errors."""
import json
from pathlib import Path

import pytest

from tmu_utils.__main__ import main
from tmu_utils.core import context
from tmu_utils.core.params import ParamsError, load_params, make_params
from tmu_utils.core.choices import REFERENCE_STEP
from tmu_utils.experiments import tuning
from tmu_utils.experiments.tuning import grids as tuning_grids
from tmu_utils.experiments.tuning import tuning_mode
from tmu_utils.unlearning import runner
from tmu_utils.unlearning.tmu import target_of

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
SMOKE = PARAMS_DIR / "smoke.yaml"
DEFAULT = PARAMS_DIR / "default.yaml"
REFERENCE = [f"{k}={str(v).lower()}" for k, v in REFERENCE_STEP.items()]  # the step these rows are for
TABLE = {"tmu_hard_only": {"unlearn_lr": 0.002, "hard_repeat": 2}, "tmu": {"unlearn_lr": 0.01, "hard_repeat": 8},
         "finetune": {"unlearn_lr": 0.02, "unlearn_epochs": 1}}


@pytest.fixture
def table(tmp_path, monkeypatch):
    """A table `test` in a folder of this test's own, which `fixed_knobs: test` reads."""
    import yaml

    monkeypatch.setattr("tmu_utils.core.choices.FIXED_KNOBS_DIR", tmp_path)  # where fixed_knobs_path looks
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(TABLE))
    return tmp_path


def smoke_context(tmp_path, *overrides):
    return context.prepare(load_params(SMOKE, [f"cache_dir={tmp_path}", *overrides]))


def test_each_method_runs_at_its_own_row_and_others_at_the_shared_fields(table):
    ctx = smoke_context(table, "fixed_knobs=test", *REFERENCE)  # hard_only target: `tmu` is stored as tmu_hard_only
    knobs = {m: tuning.fixed_context(ctx, m).params for m in ("tmu", "tmu_hard", "tmu_random_rank", "tmu_oracle",
                                                               "tmu_all_hard", "finetune", "scrub")}
    assert (knobs["tmu"].unlearn_lr, knobs["tmu"].hard_repeat) == (0.002, 2)
    assert (knobs["tmu_hard"].unlearn_lr, knobs["tmu_hard"].hard_repeat) == (0.01, 8)  # the hard flip's row
    for control in ("tmu_random_rank", "tmu_oracle", "tmu_all_hard"):  # tmu's knobs, whatever their target
        assert (knobs[control].unlearn_lr, knobs[control].hard_repeat) == (0.002, 2), control
    assert (knobs["finetune"].unlearn_lr, knobs["finetune"].unlearn_epochs) == (0.02, 1)
    assert knobs["scrub"] == ctx.params  # not in the table: the shared fields as they are
    at_hard = smoke_context(table, "fixed_knobs=test", "tmu_target=hard", *REFERENCE)
    assert tuning.fixed_context(at_hard, "tmu").params.hard_repeat == 8  # now `tmu` is the hard flip
    # at the default step (distill, last_block) `tmu` is another stored name: no row of this table is its row
    at_default_step = smoke_context(table, "fixed_knobs=test")
    assert tuning.fixed_context(at_default_step, "tmu").params == at_default_step.params
    # while the variant forcing the reference step still reads the reference's row
    assert tuning.fixed_context(at_default_step, "tmu_reference").params.hard_repeat == 2


def test_none_and_twin_tuning_ignore_the_table(table):
    ctx = smoke_context(table, "fixed_knobs=none")
    assert tuning.fixed_context(ctx, "finetune").params == ctx.params
    with_table = smoke_context(table, "fixed_knobs=test")
    # the table is not hashed: the knobs it sets are, so a method it does not list keeps its key
    assert runner.unlearned_key(ctx, "scrub") == runner.unlearned_key(with_table, "scrub")
    assert (runner.unlearned_key(tuning.fixed_context(with_table, "finetune"), "finetune")
            != runner.unlearned_key(ctx, "finetune"))


def test_the_committed_default_table_is_valid_and_read_by_default():
    table = tuning_grids.fixed_table(make_params().fixed_knobs)
    assert table, "params.py's default fixed_knobs names an empty table"
    assert runner.artefact_name("tmu", make_params()) in table  # the default tmu has its own row


def test_a_bad_table_or_name_is_a_clear_error(table):
    with pytest.raises(ParamsError, match="'fixed_knobs' must be 'none' or one of \\['test'\\]"):
        make_params({"fixed_knobs": "nope"})
    (table / "bad.yaml").write_text("finetune: {scrub_lr: 0.1}\n")
    with pytest.raises(ParamsError, match="method 'finetune' has no knob\\(s\\) \\['scrub_lr'\\]"):
        tuning_grids.fixed_table("bad")
    (table / "bad.yaml").write_text("retrain: {unlearn_lr: 0.1}\n")
    with pytest.raises(ParamsError, match="'retrain' is not a method with tuning knobs"):
        tuning_grids.fixed_table("bad")
    # a perturbed TMU step is stored with its share appended, and has TMU's knobs; a baseline does not
    (table / "perturbed.yaml").write_text("tmu_hard_only_distill_last_block_calibrated_perturb0.3: {hard_repeat: 8}\n")
    assert tuning_grids.fixed_table("perturbed") == {
        "tmu_hard_only_distill_last_block_calibrated_perturb0.3": {"hard_repeat": 8}}
    (table / "bad.yaml").write_text("finetune_perturb0.3: {unlearn_lr: 0.1}\n")
    with pytest.raises(ParamsError, match="'finetune_perturb0.3' is not a method with tuning knobs"):
        tuning_grids.fixed_table("bad")


def test_stored_names_share_what_computes_the_same():
    reference = dict(REFERENCE_STEP)
    hard_only, hard = make_params(reference), make_params({"tmu_target": "hard", **reference})
    assert hard_only.tmu_target == "hard_only"
    assert [runner.artefact_name(m, hard_only) for m in ("tmu", "tmu_hard", "tmu_random_rank", "tmu_oracle",
                                                           "tmu_all_hard", "tmu_hard_only")] == [
        "tmu_hard_only", "tmu", "tmu_random_rank_hard_only", "tmu_oracle_hard_only", "tmu_all_hard", "tmu_hard_only"]
    assert [runner.artefact_name(m, hard) for m in ("tmu", "tmu_hard", "tmu_random_rank")] == [
        "tmu", "tmu", "tmu_random_rank"]
    # the ranking controls take tmu's split-based target only
    assert target_of(make_params({"tmu_split": "random", "tmu_target": "soft"})) == "hard"
    assert target_of(make_params({"tmu_split": "gold", "tmu_target": "hard_only"})) == "hard_only"
    assert target_of(make_params({"tmu_split": "predictor", "tmu_target": "margin"})) == "margin"
    # a step other than the reference adds its suffix to every TMU method's name, and only to theirs
    default = make_params()
    assert [runner.artefact_name(m, default) for m in ("tmu", "tmu_oracle", "tmu_reference", "tmu_distill_last_block",
                                                         "finetune")] == [
        "tmu_hard_only_distill_last_block_calibrated_perturb0.3", "tmu_oracle_hard_only_distill_last_block_calibrated_perturb0.3",
        "tmu_hard_only", "tmu_hard_only_distill_last_block", "finetune"]


def test_a_fixed_run_hands_each_method_its_row(table, monkeypatch):
    """runs.method_outputs, which every run, notebook and population goes through, applies the row."""
    from tmu_utils.evaluation import scoring
    from tmu_utils.experiments import runs
    from tmu_utils.method import generalization

    seen = {}

    def spy(ctx, method, original, easy=None, **target_inputs):
        seen[method] = (ctx.params.unlearn_lr, ctx.params.unlearn_epochs, ctx.params.hard_repeat)
        raise StopIteration  # the knobs are all this test needs

    ctx = smoke_context(table, "fixed_knobs=test", *REFERENCE)
    original, _ = context.original_model(ctx)
    pred, _ = generalization.tmu_predict_easy(ctx, original)
    refs = scoring.References(original, None, None, None, {})
    monkeypatch.setattr(runner, "unlearned_outputs", spy)
    for method in ("tmu", "finetune", "scrub"):
        with pytest.raises(StopIteration):
            runs.method_outputs(ctx, refs, method, pred)
    flat = ctx.params
    assert seen == {"tmu": (0.002, flat.unlearn_epochs, 2), "finetune": (0.02, 1, flat.hard_repeat),
                    "scrub": (flat.unlearn_lr, flat.unlearn_epochs, flat.hard_repeat)}


def test_auto_reads_the_table_where_it_was_tuned_and_tunes_on_the_twin_problem_elsewhere():
    default = load_params(DEFAULT)
    assert default.tuning == "auto" and tuning_mode(default) == "fixed"  # Fashion-MNIST, small_cnn: tuned there
    assert tuning_mode(load_params(PARAMS_DIR / "demo.yaml")) == "fixed"
    assert tuning_grids.tuned_elsewhere(default) is None
    for other in ("dataset=mnist", "arch=mlp", "dataset=cifar10"):
        assert tuning_mode(load_params(DEFAULT, [other])) == "twin", other
        assert tuning_grids.tuned_elsewhere(load_params(DEFAULT, [other])) == {"dataset": "fashion_mnist",
                                                                               "arch": "small_cnn"}
    assert tuning_mode(load_params(PARAMS_DIR / "cifar10.yaml")) == "twin"
    assert tuning_mode(load_params(DEFAULT, ["dataset=mnist", "tuning=fixed"])) == "fixed"  # asked for
    assert tuning_mode(load_params(DEFAULT, ["dataset=mnist", "fixed_knobs=none"])) == "fixed"  # shared fields
    assert tuning_mode(load_params(DEFAULT, ["tuning=twin"])) == "twin"
    assert (default.twin_match, default.tuning_criterion) == ("scratch", "alignment")  # what auto twin-tunes with
    assert tuning_grids.fixed_table("default") and "tuned_for" not in tuning_grids.fixed_table("default")


def test_a_table_without_tuned_for_holds_everywhere(table):
    assert tuning_grids.tuned_elsewhere(load_params(DEFAULT, ["fixed_knobs=test", "dataset=mnist"])) is None
    assert tuning_mode(load_params(DEFAULT, ["fixed_knobs=test", "dataset=mnist"])) == "fixed"


def test_an_auto_run_on_data_the_table_was_not_tuned_for_tunes_every_method_and_says_so(tmp_path, capsys):
    # smoke's mlp is not the default table's small_cnn
    argv = ["run", str(SMOKE), "--set", "fixed_knobs=default", "--set", "tune_budget=1", "--set",
            "methods=[original,retrain,tmu,finetune]", "--set", f"cache_dir={tmp_path / 'cache'}", "--direct", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "auto")]) == 0
    results = json.loads((tmp_path / "auto" / "results.json").read_text())
    assert results["params"]["tuning"] == "auto" and results["tuning_mode"] == "twin"
    assert {m: len(r["grid"]) for m, r in results["tuning"].items()} == {"tmu": 1, "finetune": 1}
    assert "tuning: auto -> twin" in capsys.readouterr().out
    # asked for, the table runs there, and the run says where its knobs come from
    assert main(argv + ["--set", "tuning=fixed", "--out", str(tmp_path / "fixed")]) == 0
    results = json.loads((tmp_path / "fixed" / "results.json").read_text())
    assert results["tuning_mode"] == "fixed" and "tuning" not in results
    assert results["methods"]["finetune"]["knobs"] == tuning_grids.fixed_table("default")["finetune"]
    assert "tuned on fashion_mnist/small_cnn, run on fashion_mnist/mlp" in capsys.readouterr().out


def test_twin_vs_table_script_runs_both_modes_and_resumes(benchmark_script, tmp_path):
    script = benchmark_script("twin_vs_table")
    argv = [str(SMOKE), "--seeds", "0", "--out", str(tmp_path / "out"), "--set", "fixed_knobs=default",
            "--set", "tune_budget=1", "--set", "methods=[original,retrain,tmu,finetune]",
            "--set", f"cache_dir={tmp_path / 'cache'}"]
    assert script.main(argv) == 0
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "`tuning: twin` ran as ['twin'], `tuning: fixed` as ['fixed']" in text
    assert "| tmu |" in text and "| finetune |" in text and "- seed 0: tmu {" in text
    assert "| seed | twin easy rate |" in text and "\n| 0 | 0." in text  # the predictor's rates per seed
    assert "- seed 0: none" in text  # one grid point tried: no knob can sit on an edge
    stamp = (tmp_path / "out" / "twin" / "0" / "results.json").stat().st_mtime_ns
    assert script.main(argv) == 0  # complete seeds are read, not run again
    assert (tmp_path / "out" / "twin" / "0" / "results.json").stat().st_mtime_ns == stamp


def test_twin_tuning_runs_end_to_end_on_an_rgb_imagefolder(tmp_path):
    """New data as a user brings it (RGB images in class folders): twin tuning tunes every method there."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colors = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [200, 200, 40]])
    for split, n in (("train", 150), ("test", 40)):
        for c, color in enumerate(colors):
            (tmp_path / "data" / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(color + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "RGB").save(tmp_path / "data" / split / f"c{c}" / f"{i}.png")
    overrides = ["dataset=imagefolder", f"data_dir={tmp_path / 'data'}", "image_size=16", "train_limit=0",
                 "test_limit=0", "fixed_knobs=default", "arch=small_cnn", "tuning=twin", "tune_budget=1",
                 "methods=[original,retrain,tmu,finetune,neggrad]", f"cache_dir={tmp_path / 'cache'}"]
    argv = ["run", str(SMOKE), "--out", str(tmp_path / "run"), "--direct", "--quiet"]
    assert main(argv + [a for o in overrides for a in ("--set", o)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["tuning_mode"] == "twin" and results["complete"]
    assert {m: len(r["grid"]) for m, r in results["tuning"].items()} == {"tmu": 1, "finetune": 1, "neggrad": 1}
    assert results["methods"]["original"]["test_acc"] > 0.5  # a model that learnt the data, not noise


def test_twin_vs_table_names_knobs_chosen_on_an_edge_of_the_values_tried(benchmark_script):
    script = benchmark_script("twin_vs_table")
    tuned = {"grid": [{"lr": 1, "k": 2}, {"lr": 3, "k": 2}, {"lr": 2, "k": 5}, {"lr": 2, "k": 4}],
             "chosen": {"lr": 3, "k": 4}}
    assert script.grid_edges(tuned) == ["lr=3 (highest)"]
    assert script.grid_edges({**tuned, "chosen": {"lr": 2, "k": 2}}) == ["k=2 (lowest)"]
    assert script.grid_edges({"grid": [{"lr": 1}], "chosen": {"lr": 1}}) == []


def test_twin_vs_real_grid_runs_every_tried_point_on_the_real_problem_at_its_own_knobs(benchmark_script, tmp_path):
    script = benchmark_script("twin_vs_real_grid")
    argv = [str(SMOKE), "--seed", "0", "--out", str(tmp_path / "out"), "--set", "tune_budget=2",
            "--set", f"cache_dir={tmp_path / 'cache'}"]
    assert script.main(argv) == 0
    folder = tmp_path / "out" / "0"
    tried = json.loads((folder / "twin" / "results.json").read_text())["tuning"]["tmu"]["grid"]
    assert len(tried) == 2
    for i, point in enumerate(tried):
        real = json.loads((folder / f"point{i}" / "results.json").read_text())
        assert real["tuning_mode"] == "fixed" and {k: real["params"][k] for k in point} == point
    text = (folder / "grid.md").read_text()
    assert text.count("(chosen)") == 1 and "Spearman correlation" in text


def test_an_explicit_knob_wins_over_the_row_and_only_that_knob(table):
    ctx = smoke_context(table, "fixed_knobs=test", *REFERENCE, "hard_repeat=8")
    assert ctx.params.pinned == ["hard_repeat"]  # an override of a knob pins it
    knobs = tuning.fixed_context(ctx, "tmu").params
    assert (knobs.unlearn_lr, knobs.hard_repeat) == (0.002, 8)  # the row's rate, the given repeat


def test_only_overrides_and_pinned_pin_a_knob():
    # a params file's value is the centre the table refines, not a pin; `pinned` may name knobs itself
    assert make_params({"hard_repeat": 8}).pinned == []
    assert make_params({"pinned": ["unlearn_lr"]}, ["hard_repeat=8"]).pinned == ["unlearn_lr", "hard_repeat"]
    with pytest.raises(ParamsError, match="'pinned': 'seed' is no knob"):
        make_params({"pinned": ["seed"]})


def test_twin_tuning_leaves_a_pinned_knob_at_its_value():
    free = tuning_grids.grid_points("tmu", make_params({"tune_budget": 6}))
    pinned = tuning_grids.grid_points("tmu", make_params({"tune_budget": 6}, ["hard_repeat=8"]))
    assert len({p["hard_repeat"] for p in free}) > 1 and {p["hard_repeat"] for p in pinned} == {8}
    # the free knob's values stay those the budget tried, each point once
    assert sorted(p["unlearn_lr"] for p in pinned) == sorted({p["unlearn_lr"] for p in free})


def test_each_row_records_the_knobs_it_ran_with(table, tmp_path):
    argv = ["run", str(SMOKE), "--direct", "--quiet", "--out", str(tmp_path / "run")]
    for item in ("fixed_knobs=test", "tuning=fixed", "hard_repeat=8", "methods=[original,retrain,tmu,finetune]",
                 f"cache_dir={table / 'cache'}", *REFERENCE):
        argv += ["--set", item]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["methods"]
    assert rows["tmu"]["knobs"] == {"unlearn_lr": 0.002, "hard_repeat": 8}  # not the row's 2: what ran
    assert rows["finetune"]["knobs"] == {"unlearn_lr": 0.02, "unlearn_epochs": 1}  # the row's
    assert "knobs" not in rows["original"]
