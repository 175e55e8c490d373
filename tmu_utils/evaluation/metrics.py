"""Alignment metrics between an unlearned model M_u and the gold model M_g (all fractions in [0, 1])."""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F

from ..core.context import Outputs

METRIC_KEYS = (
    "forget_acc", "retain_acc", "test_acc", "delta_forget", "delta_retain", "delta_test", "avg_gap",
    "activation_distance", "js_divergence", "agreement", "easy_acc", "hard_acc", "mia_member_rate",
    "mia_gap", "tow", "time_s", "rte", "rte_with_one_off",
)

SPLITS = ("forget", "retain", "test")


def _check_pair(logits_u: torch.Tensor, logits_g: torch.Tensor) -> None:
    """Raise if two logit tensors are not the same (n, K) shape."""
    if logits_u.dim() != 2 or logits_u.shape != logits_g.shape:
        raise ValueError(f"expected equal (n, K) logits, got {tuple(logits_u.shape)} and {tuple(logits_g.shape)}")


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Boolean tensor (n,) telling whether argmax(logits) equals the label."""
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    return logits.argmax(dim=1) == labels.to(logits.device).long()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples classified correctly; NaN for an empty set."""
    c = correct(logits, labels)
    return float("nan") if c.numel() == 0 else float(c.double().mean().item())


def activation_distance(logits_u: torch.Tensor, logits_g: torch.Tensor) -> float:
    """Mean over samples of the L2 norm of softmax(u) - softmax(g)."""
    _check_pair(logits_u, logits_g)
    if logits_u.shape[0] == 0:
        return float("nan")
    p = F.softmax(logits_u.double(), dim=1)
    q = F.softmax(logits_g.double(), dim=1)
    return float(torch.linalg.vector_norm(p - q, dim=1).mean().item())


def _kl_to_mixture(logp: torch.Tensor, logm: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p || m) from log-probabilities, with 0 * log 0 treated as 0."""
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logm), torch.zeros_like(p))
    return terms.sum(dim=1)


def js_divergence(logits_u: torch.Tensor, logits_g: torch.Tensor) -> float:
    """Mean over samples of the Jensen-Shannon divergence (natural log, in [0, ln 2]) of the softmaxes."""
    _check_pair(logits_u, logits_g)
    if logits_u.shape[0] == 0:
        return float("nan")
    logp = F.log_softmax(logits_u.double(), dim=1)
    logq = F.log_softmax(logits_g.double(), dim=1)
    # log m = log((p + q) / 2), computed stably in log space
    logm = torch.logaddexp(logp, logq) - math.log(2.0)
    js = 0.5 * (_kl_to_mixture(logp, logm) + _kl_to_mixture(logq, logm))
    return float(js.clamp(0.0, math.log(2.0)).mean().item())


def agreement(logits_u: torch.Tensor, logits_g: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples where u and g are both right or both wrong."""
    _check_pair(logits_u, logits_g)
    same = correct(logits_u, labels) == correct(logits_g, labels)
    return float("nan") if same.numel() == 0 else float(same.double().mean().item())


def _subset_accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    """Accuracy on the samples selected by a boolean mask; NaN if the mask is empty."""
    if not bool(mask.any()):
        return float("nan")
    return accuracy(logits[mask], labels.to(logits.device)[mask])


def tug_of_war(*deltas: float) -> float:
    """ToW (Zhao et al., NeurIPS 2024): the product of (1 - |acc_u - acc_gold|) over the sets given
    (forget, retain, test). 1 means the accuracies of the two models match everywhere."""
    out = 1.0
    for delta in deltas:
        out *= 1.0 - delta
    return out


def alignment_metrics(u: Outputs, g: Outputs, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracies of u, their gaps to g, and forget-set alignment metrics (all python floats)."""
    out: dict[str, float] = {}
    for split in SPLITS:
        acc_u = accuracy(getattr(u, split), labels[split])
        acc_g = accuracy(getattr(g, split), labels[split])
        out[f"{split}_acc"] = acc_u
        out[f"delta_{split}"] = abs(acc_u - acc_g)
    out["avg_gap"] = sum(out[f"delta_{s}"] for s in SPLITS) / len(SPLITS)
    out["tow"] = tug_of_war(*(out[f"delta_{s}"] for s in SPLITS))

    y_f = labels["forget"]
    out["activation_distance"] = activation_distance(u.forget, g.forget)
    out["js_divergence"] = js_divergence(u.forget, g.forget)
    out["agreement"] = agreement(u.forget, g.forget, y_f)

    g_right = correct(g.forget, y_f).to(u.forget.device)
    out["easy_acc"] = _subset_accuracy(u.forget, y_f, g_right)  # "true easy": gold gets them right
    out["hard_acc"] = _subset_accuracy(u.forget, y_f, ~g_right)  # "true hard": gold gets them wrong
    return {k: float(v) for k, v in out.items()}
