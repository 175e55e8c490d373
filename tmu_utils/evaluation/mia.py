"""Population loss-based membership-inference attack (MIA) on a model's per-sample losses."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

_EPS = 1e-8


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample (reduction='none'), shape (n,).

    A diverged model gives NaN or infinite logits; such samples count as maximally lost (1e4) so
    the attack still runs and scores that model as forgetting everything.
    """
    loss = F.cross_entropy(logits.float(), labels.to(logits.device).long(), reduction="none")
    return torch.nan_to_num(loss, nan=1e4, posinf=1e4)


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Flatten a tensor or array of losses into a 1-D float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _feature(loss: np.ndarray) -> np.ndarray:
    """Attack feature log(loss + eps), shape (n, 1).

    Cross-entropy losses are heavy-tailed and members pile up just above 0, so on the raw scale a
    logistic fit is dominated by a few huge non-member losses. The log is monotone (so the attack is
    still a loss threshold) but spreads the small losses and makes both classes roughly symmetric and
    equal-variance (log of an exponential is a shifted Gumbel), which is what a 1-D logistic regression
    models well. eps keeps exactly-zero losses finite.
    """
    return np.log(np.clip(loss, 0.0, None) + _EPS).reshape(-1, 1)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Take n samples of x without replacement (all of x, in order, when n >= len(x))."""
    if n >= len(x):
        return x
    return x[rng.choice(len(x), size=n, replace=False)]


def loss_attack(
    retain_loss: torch.Tensor | np.ndarray,
    test_loss: torch.Tensor | np.ndarray,
    forget_loss: torch.Tensor | np.ndarray,
    seed: int = 0,
    max_per_side: int = 5000,
) -> float:
    """Fit a balanced logistic-regression MIA (retain=member=1 vs test=0); return its member rate on the
    forget set: the share of forget samples it calls member (NaN for an empty forget set)."""
    retain, test, forget = _as_numpy(retain_loss), _as_numpy(test_loss), _as_numpy(forget_loss)
    if len(retain) == 0 or len(test) == 0:
        raise ValueError("loss_attack needs at least one retain and one test sample")
    if max_per_side < 1:
        raise ValueError("max_per_side must be >= 1")
    rng = np.random.default_rng(seed)
    n = min(len(retain), len(test), max_per_side)
    members = _subsample(retain, n, rng)
    non_members = _subsample(test, n, rng)

    x = _feature(np.concatenate([members, non_members]))
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    clf = LogisticRegression(random_state=seed)
    clf.fit(x, y)
    if len(forget) == 0:
        return float("nan")
    return float(np.mean(clf.predict(_feature(forget)) == 1))


def mia_gap(rate_u: float, rate_g: float) -> float:
    """Absolute difference |rate_u - rate_g| of two MIA member rates."""
    return abs(float(rate_u) - float(rate_g))
