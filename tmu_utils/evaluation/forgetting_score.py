"""The NeurIPS 2023 unlearning challenge's forgetting quality F, by its published definition.

Triantafillou et al. (2024), "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition", and the challenge's public evaluation; docs/method.md ("The unlearning
challenge's forgetting quality") states the definition in full. Per forget sample, N unlearned
models against N retrained ones, each model seen through one number, its logit-scaled confidence in
the true class. Two families of decision rules try to tell the populations apart: thresholds ("the
larger-median population when the value is ≥ t") and intervals ("the peakier population inside
[l, r]"), both on grids of 100 points per unit. Each rule's false positive and false negative rates
certify an ε of (ε, δ)-closeness; the sample's ε is the largest, clipped to [0, 50], and scores 1,
1/2, 1/4, … in buckets of width 0.5 up to ⌈ln(N − 1)⌉, and 0 from there on. F is the mean score.

A rule's rates depend only on which of the sample's pooled values it calls positive, and on a grid
those are always a run of the sorted values: the top j for a threshold, positions j+1 … J for an
interval. So rather than evaluate every grid rule (400 × 400 intervals per sample), each run is
checked once for whether some grid rule yields it: (2N + 1)² runs per sample, the same ε. For
5 000 samples × 16 models a side, `forgetting_quality` takes about 0.7 s on one core of this
project's 2-core CPU (shared with other jobs).
"""
from __future__ import annotations

import math

import numpy as np
import torch

DELTA = 1e-5  # δ of (ε, δ)-closeness
EPSILON_CAP = 50.0  # ε is clipped to [0, 50]; a collapsed population gets the cap
COLLAPSE_RATIO = 0.01  # a population whose range is under 1 % of the other's is collapsed
GRID_PER_UNIT = 100  # grid points per unit of the statistic, for thresholds and interval ends alike
REACH = 2.0  # r within ±2 of the peakier population's max; l within ±2 of r − its range
BUCKET_WIDTH = 0.5
STATISTIC = "logit_scaled_confidence"
DEFINITION = ("NeurIPS 2023 unlearning challenge, published definition: true-class logit-scaled confidence; "
              "threshold and interval rules at 100 per unit; δ = 1e-5; ε clipped to [0, 50] (collapsed "
              "population: 50; both populations one identical constant: 0); buckets of 0.5 up to ⌈ln(N − 1)⌉")
F_BOOTSTRAP = 1000  # resamples of the forget samples for F's interval
CHUNK = 1024  # samples per block: bounds memory at a few (CHUNK, 2N + 1, 2N + 1) arrays


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per sample, log p_y − log Σ_{j≠y} p_j, computed as z_y − logsumexp_{j≠y} z_j (float32): through
    1 − p_y it would saturate in float32 once the model is confident."""
    logits = torch.as_tensor(logits).double()
    labels = torch.as_tensor(labels).long().view(-1, 1)
    if logits.ndim != 2 or logits.shape[1] < 2 or len(logits) != len(labels):
        raise ValueError(f"expected (samples, classes ≥ 2) logits and one label per sample; got "
                         f"{tuple(logits.shape)} and {len(labels)} labels")
    true = logits.gather(1, labels).squeeze(1)
    others = logits.scatter(1, labels, float("-inf"))
    return (true - torch.logsumexp(others, 1)).float().numpy()


def rule_epsilons(n_positive: int, n_negative: int, delta: float = DELTA) -> np.ndarray:
    """ε of a rule that calls `a` of n_positive positives and `b` of n_negative negatives positive, as
    table[a, b]: inf for perfect separation (FPR = FNR = 0); nan where exactly one rate is 0 (discarded:
    too few models to tell); else max(0, log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR)."""
    fnr = (n_positive - np.arange(n_positive + 1))[:, None] / n_positive
    fpr = np.arange(n_negative + 1)[None, :] / n_negative
    with np.errstate(divide="ignore", invalid="ignore"):
        # a rate above 1 − δ makes its bound the log of a negative number: it bounds nothing
        bounds = [np.log(1 - delta - a) - np.log(b) for a, b in ((fpr, fnr), (fnr, fpr))]
    eps = np.fmax(np.fmax(*bounds), 0.0)  # fmax: a nan bound loses
    return np.where((fpr == 0) & (fnr == 0), np.inf, np.where((fpr == 0) | (fnr == 0), np.nan, eps))


def _check(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, r = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1] or u.shape[1] == 0:
        raise ValueError(f"expected (models, samples) arrays over the same samples; got {u.shape} and {r.shape}")
    if min(len(u), len(r)) < 3:
        raise ValueError(f"need at least 3 models a side (got {len(u)} and {len(r)}): below 3, ⌈ln(N − 1)⌉ "
                         "is 0 and every sample would score 0")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("the statistics must be finite")
    return u, r


def _best_rule(u: np.ndarray, r: np.ndarray, delta: float) -> np.ndarray:
    """Per sample, the largest ε_rule over both rule families (−inf where every rule is discarded)."""
    (n_u, n_samples), n_r = u.shape, len(r)
    pooled = np.concatenate([u, r]).T  # (samples, P), P = n_u + n_r
    order = np.argsort(pooled, axis=1, kind="stable")
    values = np.take_along_axis(pooled, order, 1)  # ascending
    # unlearned and retrained models among the j smallest values, j = 0 … P
    u_below = np.concatenate([np.zeros((n_samples, 1), np.int64), np.cumsum(order < n_u, 1)], 1)
    r_below = np.arange(n_u + n_r + 1) - u_below
    # the tables give ε from (unlearned called positive, retrained called positive), for either side positive
    by_side = {True: rule_epsilons(n_u, n_r, delta), False: rule_epsilons(n_r, n_u, delta).T}

    def eps_of(u_in, r_in, u_positive):
        eps = np.where(u_positive, by_side[True][u_in, r_in], by_side[False][u_in, r_in])
        return np.where(np.isnan(eps), -np.inf, eps)  # a discarded rule never wins

    def edges(first, inner, last):  # per value, grid points on one side of it, framed by the grid's two ends
        column = np.ones((n_samples, 1), np.int64)
        return np.concatenate([first * column, inner.astype(np.int64), np.reshape(last, (-1, 1)) * column], 1)

    # thresholds: t_k = lo + k (hi − lo) / (T − 1), k < T = ⌈(hi − lo)·100⌉; the larger median (ties: the
    # unlearned) is positive when the value is ≥ t. Level j (exactly j values below t) is reached when some
    # t_k lies in (x_(j), x_(j+1)], i.e. when fewer grid points are ≤ x_(j) than ≤ x_(j+1).
    u_positive = np.median(u, 0) >= np.median(r, 0)
    lo, hi = values[:, :1], values[:, -1:]
    n_t = np.ceil((hi - lo) * GRID_PER_UNIT).astype(np.int64)
    position = (values - lo) / np.where(hi > lo, hi - lo, 1.0) * np.maximum(n_t - 1, 0)  # exact at lo and hi
    at_or_below = edges(0, np.minimum(np.floor(position) + 1, n_t), n_t)
    reached = at_or_below[:, :-1] < at_or_below[:, 1:]  # (samples, P + 1)
    eps = eps_of(n_u - u_below, n_r - r_below, u_positive[:, None])
    best = np.where(reached, eps, -np.inf).max(1)

    # intervals, around the population with the smaller range (ties as the published code: the smaller
    # median). With w its range and s = 2·REACH / (R − 1), R = 400: r_i = max − 2 + i s (i < R) and, for
    # r_i, l = r_i − w − 2 + k s (k < R), i.e. l = G_(i+k) on one grid G_m = min − 4 + m s (m < 2R − 1).
    range_u, range_r = np.ptp(u, 0), np.ptp(r, 0)
    u_peaky = np.where(u_positive, range_u < range_r, range_u <= range_r)
    peak_lo = np.where(u_peaky, u.min(0), r.min(0))[:, None]
    peak_hi = np.where(u_peaky, u.max(0), r.max(0))[:, None]
    n_r_grid = math.ceil(2 * REACH * GRID_PER_UNIT)
    per_unit = (n_r_grid - 1) / (2 * REACH)
    # anchored at the peakier population's ends, so that its max and min land exactly where they should
    right = edges(0, np.clip(np.ceil((n_r_grid - 1) / 2 + (values - peak_hi) * per_unit), 0, n_r_grid), n_r_grid)
    left = edges(0, np.clip(np.floor(n_r_grid - 1 + (values - peak_lo) * per_unit) + 1, 0, 2 * n_r_grid - 1),
                 2 * n_r_grid - 1)
    # right level J (the J smallest values are ≤ r) holds for r indices right[J] … right[J+1] − 1; left level
    # j (the j smallest are < l) for l indices left[j] … left[j+1] − 1; r_i pairs with l indices i … i + R − 1
    r_first, r_last = right[:, :-1, None], right[:, 1:, None] - 1
    l_first, l_last = left[:, None, :-1], left[:, None, 1:] - 1
    reached = (r_first <= r_last) & (np.maximum(l_first, r_first) <= np.minimum(l_last, r_last + n_r_grid - 1))
    u_in = np.maximum(u_below[:, :, None] - u_below[:, None, :], 0)  # [sample, J, j]: values j+1 … J
    r_in = np.maximum(r_below[:, :, None] - r_below[:, None, :], 0)
    eps = eps_of(u_in, r_in, u_peaky[:, None, None])
    return np.maximum(best, np.where(reached, eps, -np.inf).max((1, 2)))


def epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per sample, the challenge's ε between two (models, samples) arrays of logit-scaled confidences."""
    if not 0 <= delta < 1:
        raise ValueError(f"delta must lie in [0, 1); got {delta}")
    u, r = _check(unlearned, retrained)
    best = np.concatenate([_best_rule(u[:, i:i + CHUNK], r[:, i:i + CHUNK], delta)
                           for i in range(0, u.shape[1], CHUNK)])
    # perfect separation: the cap. No usable rule, every one discarded: 0; so it is when both populations
    # are one and the same constant, where the published code fails (every rule has one rate 0)
    eps = np.clip(best, 0.0, EPSILON_CAP)
    range_u, range_r = np.ptp(u, 0), np.ptp(r, 0)
    eps[np.minimum(range_u, range_r) < COLLAPSE_RATIO * np.maximum(range_u, range_r)] = EPSILON_CAP
    return eps


def epsilon_max(n_models: int) -> int:
    """⌈ln(N − 1)⌉: where the last scoring bucket ends; ε at or past it scores 0."""
    return math.ceil(math.log(n_models - 1))


def sample_scores(eps: np.ndarray, n_models: int) -> np.ndarray:
    """1 for ε in [0, 0.5), 1/2 in [0.5, 1), halving per bucket of width 0.5; 0 at or past the end of
    the last bucket that ends by ⌈ln(N − 1)⌉, N the number of unlearned models."""
    bucket = np.floor(np.asarray(eps, np.float64) / BUCKET_WIDTH)
    return np.where(bucket < math.floor(epsilon_max(n_models) / BUCKET_WIDTH), np.exp2(-bucket), 0.0)


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> dict:
    """F (the mean score over the forget samples) with a bootstrap 95 % interval over the samples (the
    models fixed), the median and p95 of ε, the share of samples at the cap (collapsed or separated),
    and the definition's constants for these population sizes."""
    eps = epsilons(unlearned, retrained, delta)
    n_models = len(unlearned)
    scores = sample_scores(eps, n_models)
    draws = np.random.default_rng(0).integers(0, len(scores), size=(F_BOOTSTRAP, len(scores)))
    low, high = np.quantile(scores[draws].mean(1), [0.025, 0.975])
    return {"F": float(scores.mean()), "F_ci95": [float(low), float(high)], "epsilon_median": float(np.median(eps)),
            "epsilon_p95": float(np.quantile(eps, 0.95)), "epsilon_max": epsilon_max(n_models),
            "epsilon_cap": EPSILON_CAP, "capped": float((eps == EPSILON_CAP).mean()), "delta": delta,
            "bucket_width": BUCKET_WIDTH, "n_models": n_models, "statistic": STATISTIC}


def challenge_score(forgetting: float, retain_acc: float, retain_acc_retrained: float, test_acc: float,
                    test_acc_retrained: float) -> float:
    """The challenge's final score: F × (retain accuracy / the retrained's) × (test accuracy / the
    retrained's), the accuracies being means over each population."""
    return forgetting * (retain_acc / retain_acc_retrained) * (test_acc / test_acc_retrained)
