"""The challenge's forgetting score on populations whose answer is known."""
import math

import numpy as np
import pytest

from tmu_utils.evaluation import forgetting_score as fs


def test_identical_populations_certify_no_epsilon_and_score_one():
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 1, (16, 300))
    assert np.all(fs.epsilons(margins, margins.copy()) == 0)
    assert fs.forgetting_quality(margins, margins.copy())["F"] == 1.0


def test_separated_populations_reach_the_most_n_models_can_show():
    retrained = np.arange(4.0)[:, None] * np.ones((1, 5))
    unlearned = retrained + 10  # every unlearned margin above every retrained one
    eps = fs.epsilons(unlearned, retrained)
    assert eps == pytest.approx(np.full(5, math.log(8.9)))  # (1 - δ - ½/5) / (½/5), δ = 0.01
    assert fs.max_epsilon(4) == pytest.approx(math.log(8.9))
    assert np.all(fs.epsilons(-unlearned, retrained) == eps)  # either direction is a test
    assert fs.forgetting_quality(unlearned, retrained)["F"] == 2.0 ** -4  # ε 2.19: the fifth bin


def test_a_partial_overlap_gives_the_bound_worked_out_by_hand():
    # retrained 0, 1, 2, 3 against unlearned 1.5, 2.5, 3.5, 4.5 (4 models each, rates (k + ½) / 5).
    # The best test, "unlearned when margin ≥ 1.5", calls 2 retrained models unlearned (FPR 0.5)
    # and misses none of the unlearned (FNR 0.1): ε = log((1 - 0.01 - 0.5) / 0.1) = log 4.9.
    retrained = np.array([[0.0], [1.0], [2.0], [3.0]])
    unlearned = retrained + 1.5
    assert fs.epsilons(unlearned, retrained)[0] == pytest.approx(math.log(4.9))
    assert fs.sample_scores(np.array([math.log(4.9)]))[0] == 2.0 ** -3  # ε 1.59 lies in [1.5, 2)


def test_an_asymmetric_case_needs_each_bound_with_its_own_rates():
    # Four retrained models all at margin 0; unlearned at -1, 1, 2, 3. The best test, "unlearned when
    # margin ≥ 1", calls no retrained model unlearned (FPR 0.1) and misses one unlearned (FNR 0.3):
    # the bound log((1 - δ - FNR) / FPR) = log 6.9. With FPR and FNR swapped in it, the other bound
    # is all that is left, and it never exceeds log(0.89 / 0.3).
    retrained = np.zeros((4, 1))
    unlearned = np.array([[-1.0], [1.0], [2.0], [3.0]])
    assert fs.epsilons(unlearned, retrained)[0] == pytest.approx(math.log(6.9))
    assert fs.epsilons(retrained, unlearned)[0] == pytest.approx(math.log(6.9))  # the roles swapped


def test_the_score_falls_as_the_populations_move_apart():
    rng = np.random.default_rng(1)
    retrained = rng.normal(0, 1, (16, 2000))
    scores = [fs.forgetting_quality(rng.normal(shift, 1, (16, 2000)), retrained)["F"] for shift in (0, 1, 3)]
    assert scores[0] > scores[1] > scores[2]
    # With 16 models a side the best of 66 tests finds some ε even between equal distributions
    # (F about 0.18 here), which is why populations are read against their floor; 3 SD apart is
    # far below it.
    assert scores[2] < scores[0] / 5


def test_bins_and_the_final_score():
    assert list(fs.sample_scores(np.array([0.0, 0.49, 0.5, 1.2, np.inf]))) == [1.0, 1.0, 0.5, 0.25, 0.0]
    assert fs.challenge_score(0.5, 0.9, 1.0, 0.8, 0.8) == pytest.approx(0.45)


@pytest.mark.parametrize("kwargs, message", [({"delta": 1.0}, "delta"), ({"delta": -0.1}, "delta")])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fs.epsilons(np.zeros((2, 3)), np.zeros((2, 3)), **kwargs)


def test_populations_over_different_samples_are_refused():
    with pytest.raises(ValueError, match="same samples"):
        fs.epsilons(np.zeros((4, 3)), np.zeros((4, 2)))
