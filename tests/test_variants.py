"""Rows that are a method at other knobs (tmu_utils/core/variants.py): a params file's `variants:` adds a
row with one line, its overrides are checked and pinned, and a row is stored under what it computes."""
from pathlib import Path

import pytest
import yaml

from tmu_utils.core import context
from tmu_utils.core.choices import VARIANTS
from tmu_utils.core.params import ParamsError, load_params, make_params
from tmu_utils.core.variants import reads_predictor, row
from tmu_utils.experiments import tuning
from tmu_utils.unlearning import runner

SMOKE = Path(__file__).resolve().parent.parent / "params" / "smoke.yaml"


def test_a_params_file_adds_rows_to_the_built_in_ones(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"variants": {"tmu_long": {"hard_repeat": 8},
                                                 "finetune_short": {"method": "finetune", "unlearn_epochs": 1}},
                                    "methods": ["original", "retrain", "tmu", "tmu_long", "finetune_short", "tmu_oracle"]}))
    params = load_params(path)
    assert set(VARIANTS) < set(params.variants)  # the built-in rows stay
    long, short = row(params, "tmu_long"), row(params, "finetune_short")
    assert (long.method, long.params.hard_repeat, long.params.pinned) == ("tmu", 8, ["hard_repeat"])
    assert (short.method, short.params.unlearn_epochs, params.unlearn_epochs) == ("finetune", 1, 3)
    assert row(long.params, "tmu_long") == long  # resolving a row's own params again changes nothing
    assert row(params, "scrub").params is params  # a method is its own row


@pytest.mark.parametrize("variants,message", [
    ({"x": {"seed": 3}}, "variant 'x' overrides 'seed'"),
    ({"x": {"method": "retrain"}}, "variant 'x': 'method' must name an unlearning method"),
    ({"x": {"tmu_split": "labels"}}, "variant 'x': parameter 'tmu_split' must be one of predictor, gold, random, none"),
    ({"x": {"hard_repeat": "many"}}, "variant 'x': parameter 'hard_repeat' must be of type int"),
])
def test_a_bad_variant_is_refused_by_name(variants, message):
    with pytest.raises(ParamsError, match=message):
        make_params({"variants": variants})


def test_a_row_methods_names_must_exist():
    with pytest.raises(ParamsError, match="'tmu_orcale' is neither a method nor a variant; did you mean 'tmu_oracle'"):
        make_params({"methods": ["tmu", "tmu_orcale"]})


def test_a_row_is_stored_under_what_it_computes(tmp_path):
    ctx = context.prepare(load_params(SMOKE, [f"cache_dir={tmp_path}", "variants={gold_split: {tmu_split: gold}, "
                                                                   "tmu_long: {hard_repeat: 8}}"]))
    assert runner.unlearned_key(ctx, "gold_split") == runner.unlearned_key(ctx, "tmu_oracle")
    assert runner.unlearned_key(ctx, "tmu_long") != runner.unlearned_key(ctx, "tmu")
    assert runner.artefact_name("tmu_long", ctx.params) == runner.artefact_name("tmu", ctx.params)
    # only the rows that read the predictor pay the one-off: at the default, calibrated step every TMU row
    # (it reads M_o's margins on the twin forget set); uncalibrated, not the oracle and all-hard controls
    names = ("tmu", "tmu_random_rank", "tmu_oracle", "tmu_all_hard", "finetune")
    assert [reads_predictor(row(ctx.params, n)) for n in names] == [True, True, True, True, False]
    uncalibrated = make_params({"tmu_calibrate": False})
    assert [reads_predictor(row(uncalibrated, n)) for n in names] == [True, True, False, False, False]


def test_a_variants_knob_wins_over_the_fixed_knobs_table(tmp_path, monkeypatch):
    stored = runner.artefact_name("tmu", make_params())  # the default tmu's row of a table
    monkeypatch.setattr("tmu_utils.core.choices.FIXED_KNOBS_DIR", tmp_path)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({stored: {"unlearn_lr": 0.02, "hard_repeat": 2}}))
    ctx = context.Context(params=make_params({"variants": {"tmu_long": {"hard_repeat": 8}}, "fixed_knobs": "t"}),
                          dataset=None, splits=None, cache=None, device=None)
    long, plain = tuning.fixed_context(ctx, "tmu_long").params, tuning.fixed_context(ctx, "tmu").params
    assert (long.unlearn_lr, long.hard_repeat) == (0.02, 8)  # the table's rate, the variant's repeats
    assert (plain.unlearn_lr, plain.hard_repeat) == (0.02, 2)
    assert tuning.ran_knobs(tuning.fixed_context(ctx, "tmu_long"), "tmu_long") == {"unlearn_lr": 0.02, "hard_repeat": 8}
