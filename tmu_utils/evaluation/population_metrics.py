"""Per-sample, distributional alignment over populations of models: margins, KLoM and U-LiRA.

One unlearned model compared with one gold model cannot tell a method that reproduces the
retrained models' *behaviour* from one that only gets the forget accuracy right. These metrics
compare, sample by sample, the distribution of a population of unlearned models (one per
independently seeded original) with that of independently seeded retrains (docs/method.md,
"Population evaluation"). Arrays are (models, samples) throughout.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import t as student_t
from sklearn.metrics import roc_auc_score, roc_curve

MARGIN_CLIP = 100.0  # margins beyond ±100 carry no more information and would stretch the bins
SMOOTHING = 0.5  # add-½ (Krichevsky–Trofimov) pseudo-count per bin: no empty bin, no infinite KL
MIN_VARIANCE = 1e-6  # keeps a Gaussian fit finite when every model gives a sample the same margin


def margins(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per sample: the logit of the true class minus the largest other logit (> 0 means correct)."""
    logits = logits.double()
    true = logits.gather(1, labels.long().view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.long().view(-1, 1), float("-inf"))
    return (true - others.max(1).values).numpy()


def sturges_bins(n_models: int) -> int:
    """Bins for a histogram of 2·n_models pooled margins (Sturges' rule: ⌈log2(2n)⌉ + 1).

    With few models a fine binning leaves nearly every bin empty and the smoothing dominates:
    on synthetic Gaussians with 8 models per side, a one-standard-deviation shift stood out of
    the floor about 0.9 floor-SDs with 5 bins but only 0.4 with 20.
    """
    return max(2, math.ceil(math.log2(2 * n_models)) + 1)


def klom(unlearned: np.ndarray, retrained: np.ndarray, bins: int | None = None) -> np.ndarray:
    """KLoM per sample: KL(unlearned ‖ retrained) between histograms of each sample's margins.

    `unlearned` and `retrained` are (models, samples) margins; the two populations may differ in
    size. Margins are clipped to ±MARGIN_CLIP, binned into `bins` equal-width bins over the pooled
    range of that sample (Sturges' rule by default), and each bin gets SMOOTHING pseudo-counts.
    """
    u = np.clip(np.asarray(unlearned, dtype=np.float64), -MARGIN_CLIP, MARGIN_CLIP)
    r = np.clip(np.asarray(retrained, dtype=np.float64), -MARGIN_CLIP, MARGIN_CLIP)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"expected (models, samples) arrays over the same samples; got {u.shape} and {r.shape}")
    bins = bins or sturges_bins(min(len(u), len(r)))
    lo = np.minimum(u.min(0), r.min(0))
    width = np.maximum(np.maximum(u.max(0), r.max(0)) - lo, 1e-12)  # one bin holds all when every margin is equal

    def histogram(x: np.ndarray) -> np.ndarray:
        index = np.clip(((x - lo) / width * bins).astype(np.int64), 0, bins - 1)  # (models, samples)
        counts = np.zeros((bins, x.shape[1]))
        np.add.at(counts, (index, np.broadcast_to(np.arange(x.shape[1]), index.shape)), 1.0)
        counts += SMOOTHING
        return counts / counts.sum(0)

    p, q = histogram(u), histogram(r)
    return (p * np.log(p / q)).sum(0)


def summarize(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float | list[float]]:
    """Mean, median and 95th percentile over samples, each with a bootstrap 95 % CI (resampling samples)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    resampled = values[rng.integers(0, len(values), size=(n_boot, len(values)))]
    out: dict[str, float | list[float]] = {}
    for name, stat in (("mean", lambda x: np.mean(x, axis=-1)), ("median", lambda x: np.median(x, axis=-1)),
                       ("p95", lambda x: np.quantile(x, 0.95, axis=-1))):
        out[name] = float(stat(values))
        out[f"{name}_ci95"] = [float(v) for v in np.quantile(stat(resampled), [0.025, 0.975])]
    return out


def _leave_one_out_gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each column without row k, for every k: two (models, samples) arrays."""
    n = len(x)
    total, total_sq = x.sum(0), (x ** 2).sum(0)
    mean = (total - x) / (n - 1)
    var = ((total_sq - x ** 2) - (n - 1) * mean ** 2) / (n - 2)  # unbiased, n - 1 values
    return mean, np.maximum(var, MIN_VARIANCE)


def _log_normal(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def ulira_scores(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U-LiRA log-likelihood ratios, log p(m | unlearned) − log p(m | retrained), per held-out model.

    For each index k, model k of *each* population is held out and both per-sample Gaussians are
    fitted on the other n − 1 models of their side, so the two fits are equally noisy (with
    unequal sizes the attack sits well below 50 % at small n). Both held-out margins are then
    scored. Returns the scores of the held-out unlearned and retrained models, each (models, samples).
    """
    u = np.clip(np.asarray(unlearned, dtype=np.float64), -MARGIN_CLIP, MARGIN_CLIP)
    r = np.clip(np.asarray(retrained, dtype=np.float64), -MARGIN_CLIP, MARGIN_CLIP)
    if u.shape != r.shape or u.ndim != 2 or len(u) < 3:
        raise ValueError(f"expected two (models ≥ 3, samples) arrays of one shape; got {u.shape} and {r.shape}")
    mean_u, var_u = _leave_one_out_gaussian(u)
    mean_r, var_r = _leave_one_out_gaussian(r)

    def ratio(x):
        return _log_normal(x, mean_u, var_u) - _log_normal(x, mean_r, var_r)

    return ratio(u), ratio(r)


def ulira(unlearned: np.ndarray, retrained: np.ndarray, roc_points: int = 101) -> dict:
    """The U-LiRA attack, pooled over samples and held-out models: can it tell unlearned from retrained?

    Balanced accuracy is that of the likelihood-ratio test at 0 (equal priors); 50 % means the
    two populations are indistinguishable per sample. Also the TPR at 1 % and 5 % FPR, the AUC,
    and the ROC curve sampled at `roc_points` log-spaced false-positive rates (for plots).
    """
    score_u, score_r = ulira_scores(unlearned, retrained)
    scores = np.concatenate([score_u.ravel(), score_r.ravel()])
    is_unlearned = np.concatenate([np.ones(score_u.size), np.zeros(score_r.size)])
    fpr, tpr, _ = roc_curve(is_unlearned, scores)
    grid = np.concatenate([[0.0], np.logspace(-4, 0, roc_points - 1)])
    estimate = _balanced_accuracy(score_u, score_r)
    return {"balanced_accuracy": estimate, "balanced_accuracy_ci95": ulira_jackknife_ci(unlearned, retrained, estimate),
            "tpr_at_1fpr": float(np.interp(0.01, fpr, tpr)), "tpr_at_5fpr": float(np.interp(0.05, fpr, tpr)),
            "auc": float(roc_auc_score(is_unlearned, scores)),
            "roc": {"fpr": grid.tolist(), "tpr": np.interp(grid, fpr, tpr).tolist()}}


def _balanced_accuracy(score_u: np.ndarray, score_r: np.ndarray) -> float:
    return float(((score_u > 0).mean() + (score_r <= 0).mean()) / 2)


def ulira_jackknife_ci(unlearned: np.ndarray, retrained: np.ndarray, estimate: float) -> list[float]:
    """A 95 % interval for U-LiRA's balanced accuracy from a jackknife over models.

    Replicate j drops model j of each population and runs the whole attack, leave-one-out fits
    included, on the n − 1 models left, so every replicate is the statistic itself at a smaller n
    (resampling models with repeats would put one model on both sides of a fit). The interval is
    `estimate` (the balanced accuracy on all n) ± t(0.975, n − 1) jackknife standard errors, clipped to [0, 1]. It needs n ≥ 4
    (a replicate needs 3 models); below that it is [nan, nan].
    """
    u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    n = len(u)
    if n < 4:
        return [math.nan, math.nan]
    keep = [np.delete(np.arange(n), j) for j in range(n)]
    replicates = np.array([_balanced_accuracy(*ulira_scores(u[k], r[k])) for k in keep])
    se = math.sqrt((n - 1) / n * ((replicates - replicates.mean()) ** 2).sum())
    half = float(student_t.ppf(0.975, n - 1)) * se
    return [max(0.0, estimate - half), min(1.0, estimate + half)]
