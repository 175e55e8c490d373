"""KLoM, U-LiRA and margins on synthetic populations whose answer is known."""
import math

import numpy as np
import pytest
import torch

from tmu_utils.evaluation.population_metrics import klom, margins, sturges_bins, summarize, ulira, ulira_scores


def test_margin_is_true_logit_minus_best_other():
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    assert margins(logits, torch.tensor([1, 0])).tolist() == [3.0, -3.0]


def test_klom_hand_computed_case():
    # one sample, 2 bins over [0, 1]: unlearned counts (3, 0), retrained (1, 2); add-½ smoothing.
    # KL is not symmetric, so this also pins the direction KL(unlearned ‖ retrained).
    p = np.array([3.5, 0.5]) / 4
    q = np.array([1.5, 2.5]) / 4
    expected = float((p * np.log(p / q)).sum())
    got = klom(np.array([[0.0], [0.0], [0.0]]), np.array([[0.0], [1.0], [1.0]]), bins=2)
    assert got.shape == (1,) and got[0] == pytest.approx(expected)


def test_klom_zero_for_identical_and_small_for_same_distribution():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 3000))
    assert np.allclose(klom(a, a), 0.0)
    same = klom(rng.normal(size=(8, 3000)), a)
    shifted = klom(rng.normal(3.0, 1.0, size=(8, 3000)), a)
    assert same.mean() < 0.4 and shifted.mean() > 1.0
    assert np.quantile(shifted, 0.95) > 2 * np.quantile(same, 0.95)


def test_klom_clips_margins_and_handles_constant_samples():
    u = np.array([[1e6, 5.0], [1e6, 5.0]])
    r = np.array([[100.0, 5.0], [100.0, 5.0]])
    assert np.allclose(klom(u, r, bins=4), 0.0)  # beyond ±100 nothing differs; a constant sample is one bin


def test_sturges_bins_grow_slowly():
    assert [sturges_bins(n) for n in (3, 8, 16, 100)] == [4, 5, 6, 9]


def test_summarize_gives_stats_inside_their_bootstrap_interval():
    values = np.random.default_rng(1).exponential(size=5000)
    s = summarize(values)
    for name in ("mean", "median", "p95"):
        lo, hi = s[f"{name}_ci95"]
        assert lo <= s[name] <= hi and hi - lo < 0.3 * s[name]
    assert s["p95"] == pytest.approx(np.quantile(values, 0.95))


def test_ulira_separates_separable_populations():
    rng = np.random.default_rng(2)
    result = ulira(rng.normal(10.0, 1.0, size=(8, 500)), rng.normal(0.0, 1.0, size=(8, 500)))
    assert result["balanced_accuracy"] > 0.99 and result["tpr_at_1fpr"] > 0.95 and result["auc"] > 0.99


def test_ulira_is_at_chance_for_one_distribution():
    rng = np.random.default_rng(3)
    # per-sample means differ (as margins of different samples do), both populations share them
    centre = rng.normal(0.0, 5.0, size=500)
    result = ulira(centre + rng.normal(size=(8, 500)), centre + rng.normal(size=(8, 500)))
    assert abs(result["balanced_accuracy"] - 0.5) < 0.03
    assert result["tpr_at_1fpr"] < 0.05 and abs(result["auc"] - 0.5) < 0.05


def test_ulira_leaves_the_scored_model_out_of_both_fits():
    rng = np.random.default_rng(4)
    u, r = rng.normal(size=(5, 7)), rng.normal(1.0, 2.0, size=(5, 7))
    score_u, score_r = ulira_scores(u, r)
    k, j = 2, 4
    rest_u, rest_r = np.delete(u[:, j], k), np.delete(r[:, j], k)

    def log_normal(x, sample):
        mean, var = sample.mean(), sample.var(ddof=1)
        return -0.5 * (math.log(2 * math.pi * var) + (x - mean) ** 2 / var)

    assert score_u[k, j] == pytest.approx(log_normal(u[k, j], rest_u) - log_normal(u[k, j], rest_r))
    assert score_r[k, j] == pytest.approx(log_normal(r[k, j], rest_u) - log_normal(r[k, j], rest_r))


def test_ulira_rejects_too_few_or_unequal_models():
    with pytest.raises(ValueError):
        ulira(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        ulira(np.zeros((4, 4)), np.zeros((3, 4)))


def test_ulira_jackknife_interval_covers_what_new_model_draws_give():
    # fixed samples, models drawn again 120 times: the expectation of the balanced accuracy over model
    # draws is the estimate's target; a 95 % interval must cover it in about 95 % of draws or more
    # (the jackknife errs wide). Dropping the (n − 1)/n factor, or refitting only one side, fails this.
    rng = np.random.default_rng(5)
    mu, scale = rng.normal(0.0, 3.0, 300), rng.uniform(0.5, 2.0, 300)
    estimates, intervals = [], []
    for _ in range(120):
        u = mu + 0.8 * scale + 1.3 * scale * rng.normal(size=(8, 300))
        r = mu + scale * rng.normal(size=(8, 300))
        result = ulira(u, r)
        estimates.append(result["balanced_accuracy"])
        intervals.append(result["balanced_accuracy_ci95"])
    target, intervals = np.mean(estimates), np.array(intervals)
    assert 0.55 < target < 0.65  # neither at chance nor separated: the interval has work to do
    covered = (intervals[:, 0] <= target) & (target <= intervals[:, 1])
    assert covered.mean() >= 0.9
    half_width = (intervals[:, 1] - intervals[:, 0]).mean() / 2
    assert half_width < 3 * 1.96 * np.std(estimates)  # wide, not useless


def test_ulira_jackknife_interval_edges():
    rng = np.random.default_rng(6)
    separated = ulira(rng.normal(10.0, 1.0, size=(6, 200)), rng.normal(0.0, 1.0, size=(6, 200)))
    low, high = separated["balanced_accuracy_ci95"]
    assert low <= separated["balanced_accuracy"] <= high <= 1.0 and low > 0.95
    # three models: a replicate would have two, too few for a held-out Gaussian: no interval
    assert all(math.isnan(v) for v in ulira(rng.normal(size=(3, 50)), rng.normal(size=(3, 50)))["balanced_accuracy_ci95"])
