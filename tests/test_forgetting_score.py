"""The challenge's forgetting quality, by its published definition, on populations worked out by hand.

Each case is one forget sample (a column) of a few models a side. With N = 4, ε_max = ⌈ln 3⌉ = 2: ε in
[0, 0.5) scores 1, [0.5, 1) 1/2, [1, 1.5) 1/4, [1.5, 2) 1/8, and 0 from 2 on. Rates are counts over 4.
"""
import math

import numpy as np
import pytest
import torch

from tmu_utils.evaluation import forgetting_score as fs

HALF_AGAINST_QUARTER = math.log((1 - 1e-5 - 0.5) / 0.25)  # a rule with FPR 1/2, FNR 1/4 at δ = 1e-5: 0.69313


def sample(*values):
    """One forget sample: the statistic of each model, as a (models, 1) array."""
    return np.array(values, float)[:, None]


def test_the_statistic_is_the_true_class_log_odds_computed_without_saturating():
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    conf = fs.logit_scaled_confidence(logits, torch.tensor([0, 1, 0]))
    assert conf.dtype == np.float32
    # log p_y − log(1 − p_y) with p = softmax: 2 − log(e⁰ + e⁰); 0 − log(e² + e⁰); 40 − log 2
    assert conf == pytest.approx([2 - math.log(2), -math.log(math.exp(2) + 1), 40 - math.log(2)], rel=1e-6)
    p = torch.softmax(logits[2:], 1)[0, 0]  # float32: p_y rounds to 1, so log(p / (1 − p)) would be inf
    assert p == 1.0 and np.isfinite(conf[2])


def test_the_rate_table_keeps_perfect_separation_and_discards_one_zero_rate():
    table = fs.rule_epsilons(4, 4)  # [positives called positive, negatives called positive]
    assert table[4, 0] == np.inf  # FNR = FPR = 0
    assert np.isnan(table[4, 1]) and np.isnan(table[3, 0])  # exactly one rate 0
    assert table[3, 2] == pytest.approx(HALF_AGAINST_QUARTER)  # FNR 1/4, FPR 1/2
    assert table[3, 1] == pytest.approx(math.log((1 - 1e-5 - 0.25) / 0.25))  # FNR = FPR = 1/4: log(3 − 4δ)
    assert table[2, 2] == 0 and table[0, 4] == 0  # chance, and a rule that calls everyone the wrong side


def test_two_draws_of_one_distribution_score_what_small_n_allows():
    # Identical draws: every rule calls the same share of each side, FPR = 1 − FNR, and each bound is
    # log((FNR − δ) / FNR) < 0, so ε = 0 and the sample scores 1.
    identical = fs.epsilons(sample(0, 1, 2, 3), sample(0, 1, 2, 3))
    # Interleaved draws, unlearned 0 2 4 6 and retrained 1 3 5 7: the best rule, "retrained (the larger
    # median) when ≥ t" with t in (2, 3], misses 1 retrained (FNR 1/4) and takes 2 unlearned (FPR 1/2):
    # ε = log((1 − δ − 1/2) / (1/4)) = 0.693, in [0.5, 1): 1/2. (t in (0, 1] would certify ε = ∞ from
    # FNR = 0, FPR 3/4, but one zero rate is discarded; no interval does better, by the same count.)
    interleaved = fs.epsilons(sample(0, 2, 4, 6), sample(1, 3, 5, 7))
    assert identical[0] == 0 and interleaved[0] == pytest.approx(HALF_AGAINST_QUARTER, rel=1e-12)
    u, r = np.hstack([sample(0, 1, 2, 3), sample(0, 2, 4, 6)]), np.hstack([sample(0, 1, 2, 3), sample(1, 3, 5, 7)])
    assert fs.forgetting_quality(u, r)["F"] == 0.75  # (1 + 1/2) / 2: at N = 4 a fair draw already loses half


def test_fully_separated_populations_score_zero():
    # "unlearned when ≥ t" for t in (3, 10] has FPR = FNR = 0: ε = ∞, clipped to the cap 50, past ε_max
    for u, r in ((sample(10, 11, 12, 13), sample(0, 1, 2, 3)), (sample(0, 1, 2, 3), sample(10, 11, 12, 13))):
        assert fs.epsilons(u, r)[0] == 50
        assert fs.forgetting_quality(u, r)["F"] == 0 and fs.forgetting_quality(u, r)["F_ci95"] == [0.0, 0.0]


def test_a_collapsed_population_gets_the_cap():
    # A deterministic method: every unlearned model at 1, where a retrained model sits too. Every rule
    # puts the four unlearned models on one side together, with that retrained one, so none certifies
    # anything (checked: ε 0 without the collapse rule); a range of 0, under 1 % of 3, gets the cap.
    eps = fs.epsilons(sample(1, 1, 1, 1), sample(0, 1, 2, 3))
    assert eps[0] == 50 and fs.sample_scores(eps, 4)[0] == 0


def test_both_populations_one_constant():
    # one and the same constant: indistinguishable, ε = 0 (the published code has no answer here)
    assert fs.epsilons(sample(2, 2, 2, 2), sample(2, 2, 2, 2))[0] == 0
    # two different constants: the threshold t = 3 separates them perfectly, ε = ∞ → 50
    assert fs.epsilons(sample(2, 2, 2, 2), sample(3, 3, 3, 3))[0] == 50


def test_a_population_inside_the_others_range_is_caught_by_an_interval_only():
    # Unlearned 1.5 1.6 1.7 1.8 (median 1.65, the positive side for thresholds), retrained 0 0.2 3.0 3.2.
    # Thresholds: t in (0, 1.5] keeps every unlearned model (FNR 0, discarded); t in (1.5, 1.6] has FNR 1/4,
    # FPR 1/2 (0.693); every higher t certifies nothing. An interval around the peakier unlearned models
    # (range 0.3: r within 1.8 ± 2, l within r − 0.3 ± 2), e.g. [1.5, 1.805], holds all of them and no
    # retrained one: FPR = FNR = 0, ε = ∞ → 50.
    assert fs.epsilons(sample(1.5, 1.6, 1.7, 1.8), sample(0, 0.2, 3.0, 3.2))[0] == 50


def test_a_far_value_lets_a_threshold_beat_every_interval():
    # Peaky side 0 0.1 0.2 0.3 (larger median); the other side: five values near −10, two at 0.05 and one at
    # 10 (8 models, rates in eighths). "Peaky when ≥ t", t in (0.05, 0.1], misses one (FNR 1/4) and takes
    # only the far 10 (FPR 1/8): log((1 − δ − 1/4) / (1/8)) = log(6 − 8δ) = 1.79. An interval is at most
    # 2.3 long and ends by 2.3, so it never holds the 10: without the two at 0.05 its rates have a 0
    # (discarded), with them it reaches FNR 1/4, FPR 1/4 at best, log 3 = 1.10.
    peaky, other = sample(0, 0.1, 0.2, 0.3), sample(-10.4, -10.3, -10.2, -10.1, -10, 0.05, 0.05, 10)
    for u, r in ((peaky, other), (other, peaky)):  # the larger median decides the side, not the role
        assert fs.epsilons(u, r)[0] == pytest.approx(math.log(6 - 8e-5), rel=1e-12)


def test_an_interval_is_at_most_the_peakier_range_plus_two_long():
    # Retrained 0.5 0.5 1.5 2 (range 1.5, the peakier; larger median: the side thresholds call positive),
    # unlearned −4 −3 2 3.5. Every threshold has a rate 0 or certifies nothing. Intervals hold the peakier
    # side inside, with r within 2 ± 2 and l within r − 1.5 ± 2: at most 3.5 long. The best, [1.5, 2],
    # misses two retrained (FNR 1/2) and holds one unlearned (FPR 1/4): log((1 − δ − 1/2) / (1/4)) = 0.693.
    # [−3, 1.5] (FNR 1/4, FPR 1/4: log 3) would be 4.5 long: not a rule.
    eps = fs.epsilons(sample(-4, -3, 2, 3.5), sample(0.5, 0.5, 1.5, 2))
    assert eps[0] == pytest.approx(HALF_AGAINST_QUARTER, rel=1e-12)


def test_equal_ranges_put_the_interval_around_the_smaller_median():
    # Unlearned 3 3 5 5, retrained 1 1 2 3: both ranges 2. As the published code, the interval holds the
    # smaller-median side (retrained) inside; its runs then all have a rate 0 or certify nothing, and so
    # do the thresholds ("unlearned when ≥ t" keeps every unlearned model or no retrained one): ε = 0.
    # Around the unlearned side, [3, 3] would call two unlearned and one retrained model unlearned: 0.693.
    assert fs.epsilons(sample(3, 3, 5, 5), sample(1, 1, 2, 3))[0] == 0


def test_a_spread_under_the_grid_spacing_leaves_its_two_ends():
    # Pooled values within 0.016: the threshold grid is ⌈1.6⌉ = 2 points, the pooled min and max. "Unlearned
    # (the larger median) when ≥ 0.016" keeps 3 of 4 unlearned (FNR 1/4) and 2 retrained (FPR 1/2): 0.693.
    # The interval grid (spacing 0.01, r at the unlearned max ± 0.005 …) holds all unlearned or none.
    eps = fs.epsilons(sample(0.012, 0.016, 0.016, 0.016), sample(0, 0, 0.016, 0.016))
    assert eps[0] == pytest.approx(HALF_AGAINST_QUARTER, rel=1e-12)


def test_a_rule_with_one_zero_rate_is_discarded():
    # Unlearned 0 1 2 3, retrained 1 2 3 4 (the positive side). "Retrained when ≥ t", t in (0, 1], keeps
    # every retrained model (FNR 0) and 3 unlearned (FPR 3/4): counted, log(… / FNR) would be ∞. Discarded,
    # the best left is FNR 1/4, FPR 1/2 (t in (1, 2]) or the mirror (t in (2, 3]); the intervals around the
    # unlearned models (equal ranges: the smaller median's) reach the same, e.g. [0, 2] with FNR 1/4 and
    # FPR 1/2. So ε = 0.693 and the sample scores 1/2, not 0.
    eps = fs.epsilons(sample(0, 1, 2, 3), sample(1, 2, 3, 4))
    assert eps[0] == pytest.approx(HALF_AGAINST_QUARTER, rel=1e-12)
    assert fs.sample_scores(eps, 4)[0] == 0.5


def test_bucket_edges():
    assert [fs.epsilon_max(n) for n in (3, 4, 8, 16, 22)] == [1, 2, 2, 3, 4]  # ⌈ln 2⌉, ⌈ln 3⌉, …, ⌈ln 21⌉
    eps = np.array([0.0, 0.4999, 0.5, 0.9999, 1.0, 2.5, 2.9999, 3.0, 50.0])
    assert fs.sample_scores(eps, 16).tolist() == [1, 1, 0.5, 0.5, 0.25, 1 / 32, 1 / 32, 0, 0]
    assert fs.sample_scores(np.array([1.5, 1.9999, 2.0]), 4).tolist() == [1 / 8, 1 / 8, 0]
    assert fs.sample_scores(np.array([0.4999, 0.5, 1.0]), 3).tolist() == [1, 0.5, 0]


def test_forgetting_quality_and_the_final_score():
    u = np.hstack([sample(0, 1, 2, 3), sample(0, 2, 4, 6), sample(10, 11, 12, 13), sample(1, 1, 1, 1)])
    r = np.hstack([sample(0, 1, 2, 3), sample(1, 3, 5, 7), sample(0, 1, 2, 3), sample(0, 1, 2, 3)])
    quality = fs.forgetting_quality(u, r)
    assert quality["F"] == (1 + 0.5 + 0 + 0) / 4
    # its interval resamples the four per-sample scores (1, 1/2, 0, 0): it brackets F within [0, 1]
    low, high = quality["F_ci95"]
    assert 0 <= low < quality["F"] < high <= 1 and high - low <= 0.75
    assert quality["epsilon_max"] == 2 and quality["capped"] == 0.5 and quality["delta"] == 1e-5
    assert fs.challenge_score(0.5, 0.9, 1.0, 0.8, 0.8) == pytest.approx(0.45)


def every_grid_rule(u: np.ndarray, r: np.ndarray, delta: float = 1e-5) -> float:
    """One sample's ε with every rule of the definition's grids evaluated one by one (slow, plain)."""
    range_u, range_r = np.ptp(u), np.ptp(r)
    if min(range_u, range_r) < 0.01 * max(range_u, range_r):
        return 50.0
    high, low = (u, r) if np.median(u) >= np.median(r) else (r, u)
    pooled = np.concatenate([u, r])
    t = np.linspace(pooled.min(), pooled.max(), math.ceil(np.ptp(pooled) * 100))
    rates = [((high[:, None] < t).mean(0), (low[:, None] >= t).mean(0))]  # (FNR, FPR) per threshold
    peaky, other = (high, low) if np.ptp(high) < np.ptp(low) else (low, high)
    width = np.ptp(peaky)
    for right in np.linspace(peaky.max() - 2, peaky.max() + 2, 400):
        left = np.linspace(right - width - 2, right - width + 2, 400)
        inside = lambda v: (left <= v[:, None]) & (v[:, None] <= right)  # noqa: E731
        rates.append((1 - inside(peaky).mean(0), inside(other).mean(0)))
    fnr, fpr = (np.concatenate(x) for x in zip(*rates))
    if np.any((fnr == 0) & (fpr == 0)):
        return 50.0
    kept = (fnr > 0) & (fpr > 0)
    fnr, fpr = fnr[kept], fpr[kept]
    with np.errstate(invalid="ignore"):  # the log of a negative number: that bound counts for nothing
        bounds = np.concatenate([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)])
    return min(max(0.0, np.nanmax(bounds, initial=0.0)), 50.0)


def test_the_shortcut_gives_the_epsilon_of_every_grid_rule():
    # the module enumerates runs of sorted values instead of the 400 × 400 interval grid; on random
    # small populations (unequal sizes, and ties from values rounded to halves) both agree
    rng = np.random.default_rng(0)
    for trial in range(40):  # spreads from under the grid's spacing to beyond the intervals' reach
        scale = rng.choice([0.02, 0.3, 1.0, 3.0])
        u = rng.normal(scale * rng.choice([0.0, 0.5, 2.0]), scale * rng.choice([0.3, 1.0]), rng.integers(3, 7))
        r = rng.normal(0.0, scale, rng.integers(3, 7))
        if trial % 4 == 0:
            u, r = np.round(u / scale * 2) * scale / 2, np.round(r / scale * 2) * scale / 2
        assert fs.epsilons(u[:, None], r[:, None])[0] == pytest.approx(every_grid_rule(u, r), rel=1e-9), (u, r)


def test_swapping_the_populations_changes_nothing_without_ties():
    rng = np.random.default_rng(1)
    u, r = rng.normal(0.4, 1.0, (6, 300)), rng.normal(0.0, 1.5, (6, 300))
    assert np.array_equal(fs.epsilons(u, r), fs.epsilons(r, u))


@pytest.mark.parametrize("u, r, kwargs, message", [
    (np.zeros((4, 3)), np.zeros((4, 3)), {"delta": 1.0}, "delta"),
    (np.zeros((4, 3)), np.zeros((4, 2)), {}, "same samples"),
    (np.zeros((2, 3)), np.zeros((4, 3)), {}, "at least 3 models"),
    (np.full((4, 3), np.inf), np.zeros((4, 3)), {}, "finite"),
])
def test_bad_input_is_named(u, r, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fs.epsilons(u, r, **kwargs)
