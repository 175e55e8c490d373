"""The NeurIPS 2023 unlearning challenge's forgetting score, per forget sample, over populations.

Written from the description in Triantafillou et al. (2024), "Are we making progress in unlearning?
Findings from the first NeurIPS unlearning competition". An unlearning algorithm is (ε, δ)-close to
retraining on a sample when no test that sees one model's output on it can tell the two apart much
better than chance: every test's false positive rate (a retrained model taken for an unlearned one)
and false negative rate (the reverse) satisfy FPR + e^ε·FNR ≥ 1 − δ and FNR + e^ε·FPR ≥ 1 − δ.
So each test certifies ε ≥ log((1 − δ − FPR) / FNR) and ε ≥ log((1 − δ − FNR) / FPR), and the
estimate for a sample is the largest such bound over a family of tests. Here the tests are every
threshold on the sample's margin, in both directions, estimated from the two populations (docs/method.md,
"Population evaluation"). The per-sample ε is then binned (width `bin_width`) and scored 2^−bin, so
that ε below one bin width scores 1 and each further bin halves it; the forgetting quality F is the
mean over the forget set, and the challenge's final score multiplies F by the retain and test
accuracies of the unlearned models relative to the retrained ones.

One choice is this repository's own: with N models per side a rate of 0 cannot be told from a small
one, so every rate is estimated with add-½ counts, (k + ½) / (N + 1). Identical populations then
give ε = 0 exactly, and fully separated ones the largest ε that N models can certify,
`max_epsilon(N, δ)`, rather than infinity.
"""
from __future__ import annotations

import math

import numpy as np

DELTA = 0.01  # δ of the (ε, δ) definition
BIN_WIDTH = 0.5  # width of the ε bins the per-sample score halves over


def max_epsilon(n_models: int, delta: float = DELTA) -> float:
    """The ε of two fully separated populations of `n_models` each, under add-½ rate estimates."""
    floor = 0.5 / (n_models + 1)
    return math.log((1 - delta - floor) / floor)


def threshold_rates(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR), each (tests, samples), of the tests "unlearned when margin ≥ t" for every t among
    the sample's pooled margins and +∞, and of their reverses ("unlearned when margin < t")."""
    u, r = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"expected (models, samples) arrays over the same samples; got {u.shape} and {r.shape}")
    thresholds = np.concatenate([u, r, np.full((1, u.shape[1]), np.inf)])  # (tests, samples)
    flagged_u = (u[None, :, :] >= thresholds[:, None, :]).sum(1)  # unlearned models called unlearned
    flagged_r = (r[None, :, :] >= thresholds[:, None, :]).sum(1)  # retrained models called unlearned
    fpr = (flagged_r + 0.5) / (len(r) + 1)
    fnr = (len(u) - flagged_u + 0.5) / (len(u) + 1)
    return np.concatenate([fpr, 1 - fpr]), np.concatenate([fnr, 1 - fnr])


def epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per sample, the ε that the threshold tests certify between two (models, samples) arrays of
    margins (or any per-model scalar output); 0 when no test beats chance."""
    if not 0 <= delta < 1:
        raise ValueError(f"delta must lie in [0, 1); got {delta}")
    fpr, fnr = threshold_rates(unlearned, retrained)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound_fnr = np.log(np.maximum(1 - delta - fpr, 0) / fnr)  # -inf where the numerator is 0: no bound
        bound_fpr = np.log(np.maximum(1 - delta - fnr, 0) / fpr)
    return np.maximum(np.maximum(bound_fnr, bound_fpr).max(0), 0.0)


def sample_scores(eps: np.ndarray, bin_width: float = BIN_WIDTH) -> np.ndarray:
    """The challenge's per-sample score: 2^−⌊ε / bin_width⌋ (1 below one bin width, halving per bin)."""
    if bin_width <= 0:
        raise ValueError(f"bin_width must be positive; got {bin_width}")
    return np.exp2(-np.floor(np.asarray(eps, np.float64) / bin_width))


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA,
                       bin_width: float = BIN_WIDTH) -> dict[str, float]:
    """F (the mean per-sample score over the forget set), with the median and p95 of ε and the most
    any sample could show with these population sizes."""
    eps = epsilons(unlearned, retrained, delta)
    return {"F": float(sample_scores(eps, bin_width).mean()), "epsilon_median": float(np.median(eps)),
            "epsilon_p95": float(np.quantile(eps, 0.95)),
            "epsilon_max": max_epsilon(min(len(unlearned), len(retrained)), delta),
            "delta": delta, "bin_width": bin_width}


def challenge_score(forgetting: float, retain_acc: float, retain_acc_retrained: float, test_acc: float,
                    test_acc_retrained: float) -> float:
    """The challenge's final score: F × (retain accuracy / the retrained's) × (test accuracy / the
    retrained's), the accuracies being means over each population."""
    return forgetting * (retain_acc / retain_acc_retrained) * (test_acc / test_acc_retrained)
