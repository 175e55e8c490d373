"""Notebook 07's verdict (reporting/population_verdict.py): which samples are easy, and the first
milestone and the goal decided against the right rows (doing nothing, the floor, the baselines only)."""
import json
from pathlib import Path

import numpy as np
import pytest

from tmu_utils.core.choices import VARIANTS
from tmu_utils.reporting import population_verdict as pv

REPO = Path(__file__).resolve().parent.parent
TWIN = REPO / "benchmarks" / "results" / "population_twin"


def result_row(ulira: float, delta: float, forget_acc: float = 0.9, klom: float = 1.0, f: float = 0.1) -> dict:
    """One row of population.json with the fields the verdict reads."""
    return {"ulira": {"balanced_accuracy": ulira}, "klom": {"forget": {"p95": klom}},
            "delta_forget": {"mean": delta, "ci95": 0.001}, "forget_acc": {"mean": forget_acc, "ci95": 0.001},
            "forgetting": {"F": f, "statistic": "logit_scaled_confidence"}}


def population(ulira: dict, delta: dict, floor_ulira: float = 0.5, floor_delta: float = 0.004) -> dict:
    """population.json in the committed schema, its methods given by U-LiRA and Δ forget."""
    return {"n_models": 4, "floor": result_row(floor_ulira, floor_delta),
            "methods": {m: result_row(ulira[m], delta[m]) for m in ulira}}


# 4 retrains of set A on 3 forget samples: right on 3 of 4, 2 of 4 (a tie), 1 of 4
RETRAIN_A = np.array([[1.0, 1.0, 2.0], [2.0, 1.0, -1.0], [0.5, -1.0, -1.0], [-1.0, -2.0, -3.0]])  # (n_models, n_forget)
SAMPLES = {"margins/retrain_a": RETRAIN_A, "margins/tmu": RETRAIN_A + 0.5,
           "tmu/forget": np.array([0.1, 0.2, 0.3]), "original/forget": np.array([0.4, 0.5, 0.6])}


def test_easy_samples_are_those_most_of_retrain_a_gets_right_per_sample():
    assert pv.easy_forget_samples(RETRAIN_A).tolist() == [True, False, False]  # a tie is hard


def test_shift_and_spread_are_per_sample_against_retrain_a():
    shift, spread = pv.shift_and_spread(RETRAIN_A + 0.5, RETRAIN_A)
    assert np.allclose(shift, 0.5) and np.allclose(spread, 1.0)


@pytest.mark.parametrize("tmu_ulira, tmu_delta, met", [
    (0.55, 0.012, True),   # below doing nothing, Δ within the floor's 0.4 pp + 1 pp
    (0.55, 0.015, False),  # Δ 1.5 pp: past the floor's + 1 pp, though within doing nothing's 1 pp + 1 pp
    (0.58, 0.005, False),  # Δ fine, but easier to detect than doing nothing (57 %), though below the baselines
])
def test_first_milestone_reads_ulira_against_doing_nothing_and_delta_against_the_floor(tmu_ulira, tmu_delta, met):
    pop = population({"original": 0.57, "tmu": tmu_ulira, "finetune": 0.60}, {"original": 0.01, "tmu": tmu_delta,
                                                                             "finetune": 0.03})
    verdict = pv.population_verdict(pop, SAMPLES)["tmu"]
    assert verdict["first_milestone"] is met
    assert verdict["harder_than_original"] is (tmu_ulira < 0.57)
    assert f"is {'met' if met else 'not met'}: U-LiRA {100 * tmu_ulira:.1f} %" in pv.verdict_text(
        pv.population_verdict(pop, SAMPLES))


@pytest.mark.parametrize("floor_ulira, scrub_ulira, met, harder", [
    (0.50, 0.56, True, []),          # 4 pp above the floor, below both baselines
    (0.48, 0.56, False, []),         # 6 pp above the floor
    (0.50, 0.53, False, ["scrub"]),  # a baseline is harder to detect than TMU
])
def test_goal_reads_ulira_against_the_floor_and_the_baselines_only(floor_ulira, scrub_ulira, met, harder):
    # tmu_reference and doing nothing sit below TMU: neither is a baseline the goal asks TMU to beat
    ulira = {"original": 0.52, "tmu": 0.54, "tmu_reference": 0.51, "scrub": scrub_ulira, "finetune": 0.60}
    pop = population(ulira, dict.fromkeys(ulira, 0.01), floor_ulira=floor_ulira)
    verdict = pv.population_verdict(pop, SAMPLES)["tmu"]
    assert verdict["goal"] is met
    assert verdict["harder_baselines"] == harder
    assert verdict["easier_baselines"] == [m for m in ("scrub", "finetune") if m not in harder]
    assert verdict["ulira_gap_to_floor"] == pytest.approx(0.54 - floor_ulira)


def test_variants_are_labelled_by_the_knobs_they_set_and_absent_ones_skipped():
    ulira = {"original": 0.6, "tmu": 0.55, "tmu_distill": 0.54, "tmu_soft": 0.57, "tmu_oracle": 0.5, "finetune": 0.7}
    pop = population(ulira, dict.fromkeys(ulira, 0.01))
    variants = pv.population_verdict(pop, SAMPLES)["tmu"]["variants"]
    # in the order of the built-in rows; the oracle is a control (another split), not a variant
    assert [(v["kind"], v["name"]) for v in variants] == [("Target", "tmu_soft"), ("Step", "tmu_distill")]
    pop["params"] = {"variants": {**VARIANTS, "tmu_slow": {"tmu_update": "head"}, "tmu_long": {"hard_repeat": 8},
                                  "ft": {"method": "finetune", "unlearn_epochs": 1}}}  # a params file's own rows
    pop["methods"].update({m: pop["methods"]["tmu_soft"] for m in ("tmu_slow", "tmu_long", "ft")})
    verdict = pv.population_verdict(pop, SAMPLES)["tmu"]
    assert [(v["kind"], v["name"]) for v in verdict["variants"]] == [
        ("Target", "tmu_soft"), ("Step", "tmu_distill"), ("Step", "tmu_slow"), ("Target", "tmu_long")]
    assert "ft" in pv.baselines(pop) and "tmu_long" not in pv.baselines(pop)


def test_without_tmu_only_the_floor_is_reported():
    pop = population({"original": 0.6, "finetune": 0.7}, {"original": 0.04, "finetune": 0.01})
    verdict = pv.population_verdict(pop, SAMPLES)
    assert verdict["tmu"] is None
    assert pv.verdict_text(verdict) == "- Floor (retrain B vs A): U-LiRA 50.0 %, KLoM p95 on D_f 1.000."


def test_committed_twin_tuned_population_gives_the_readmes_verdict():
    pop = json.loads((TWIN / "population.json").read_text())
    verdict = pv.population_verdict(pop, np.load(TWIN / "population_samples.npz"))
    tmu = verdict["tmu"]
    assert (round(100 * tmu["ulira"], 1), round(100 * tmu["ulira_original"], 1)) == (56.2, 57.2)
    assert tmu["harder_than_original"] and tmu["harder_baselines"] == ["scrub"]
    assert not tmu["first_milestone"] and not tmu["goal"]  # Δ 1.97 pp against a floor of 0.20 pp
    text = pv.verdict_text(verdict)
    assert "- Step variant tmu_distill_calibrated: U-LiRA 54.7 %" in text
    assert text.endswith("is not met: TMU is 7.2 pp above the floor and not below every baseline.")
