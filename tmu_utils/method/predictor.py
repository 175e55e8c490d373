"""The generalization-label predictor (docs/method.md): an MLP trained on the twin problem's features and
known labels, applied to the real forget set to guess which samples the gold model gets right."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn


def make_predictor(n_features: int) -> nn.Module:
    """The MLP n_features → 32 → 16 → 1 (a logit of "easy")."""
    return nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))


def fit_predictor(features: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, seed: int) -> nn.Module:
    """Full-batch Adam on binary cross-entropy; a few thousand rows make mini-batches pointless."""
    torch.manual_seed(seed)
    model = make_predictor(features.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    target = labels.float()
    for _ in range(epochs):
        loss = F.binary_cross_entropy_with_logits(model(features).squeeze(1), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict_proba(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """P(easy) for each row."""
    return torch.sigmoid(model(features).squeeze(1))


def predict_easy(proba: torch.Tensor, threshold: str, twin_easy_rate: float) -> tuple[torch.Tensor, float]:
    """The predicted-easy mask and the threshold used.

    `rate_match` calls exactly round(twin_easy_rate · N) samples easy, the most probable first:
    the twin easy rate estimates the gold model's forget accuracy, so this aims at the alignment
    gap even where per-sample predictions are imperfect.
    """
    if threshold != "rate_match":
        t = float(threshold)
        return proba >= t, t
    n_easy = int(round(twin_easy_rate * len(proba)))
    order = proba.argsort(descending=True, stable=True)
    easy = torch.zeros(len(proba), dtype=torch.bool)
    easy[order[:n_easy]] = True
    t = proba[order[n_easy - 1]].item() if n_easy > 0 else math.inf
    return easy, t


def cross_validated_accuracy(features: torch.Tensor, labels: torch.Tensor, folds: int, epochs: int,
                             lr: float, seed: int) -> float:
    """k-fold accuracy (threshold 0.5) of the predictor on the twin problem itself."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    correct = 0
    for fold in order.chunk(folds):
        train = order[~torch.isin(order, fold)]
        model = fit_predictor(features[train], labels[train], epochs, lr, seed)
        correct += ((predict_proba(model, features[fold]) >= 0.5) == labels[fold].bool()).sum().item()
    return correct / len(labels)


def quality_report(proba: torch.Tensor, predicted_easy: torch.Tensor, true_easy: torch.Tensor,
                   twin_easy_rate: float, twin_cv_accuracy: float) -> dict[str, float]:
    """The `predictor` block of results.json: the predictor judged against the gold model's labels."""
    t, p = true_easy.numpy(), predicted_easy.numpy()
    two_classes = 0 < t.sum() < len(t)
    return {
        "twin_easy_rate": float(twin_easy_rate),
        "true_easy_rate": float(t.mean()),
        "predicted_easy_rate": float(p.mean()),
        "accuracy": float((t == p).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(t, p)) if two_classes else float("nan"),
        "auc": float(roc_auc_score(t, proba.numpy())) if two_classes else float("nan"),
        "twin_cv_accuracy": float(twin_cv_accuracy),
    }


@dataclass
class PredictorOutput:
    """The predictor's view of the forget set, and what it learnt from the twin problem."""

    proba: torch.Tensor  # P(easy) per forget sample
    easy: torch.Tensor  # bool: predicted generalization label per forget sample
    threshold: float
    twin_easy_rate: float
    twin_cv_accuracy: float
    seconds: float
    # M_o's margins on D_tf, which M_o never saw as a retrain never sees D_f: the margin target's
    # reference (None in the class scenario, which has no twin problem)
    unseen_margins: torch.Tensor | None = None
