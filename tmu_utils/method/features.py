"""Generalization-label features (docs/method.md: features): how "easy" a sample looks to a model.

Each is computed for a model f on a query set Q: on (M_t, D_tf) to train the predictor, on
(M_o, D_f) to apply it. All are batched over samples; none loops over samples in Python.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.input_range import InputRange
from ..core.seeds import generator
from ..core.training import full_precision, predict, to_input

FEATURE_NAMES = ("df", "af", "cf")


def bank_indices(retain: torch.Tensor, labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subsample of `per_class` retain samples of every class: the DF bank."""
    g = generator(seed, "df_bank")
    chosen = []
    for c in labels[retain].unique():
        idx = retain[labels[retain] == c]
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(chosen)


@torch.no_grad()
def normalized_features(model: nn.Module, x: torch.Tensor, device: torch.device,
                        batch_size: int = 2048) -> torch.Tensor:
    """φ_f(x): L2-normalised penultimate features, (N, D), on the CPU."""
    model.to(device).eval()
    with full_precision(device):
        out = [F.normalize(model.features(to_input(x[i:i + batch_size], device)).float(), dim=1).cpu()
               for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def distance_feature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bank_x: torch.Tensor,
                     bank_y: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
    """DF(x): mean of the k smallest distances from φ(x) to same-class bank features, same model."""
    query, bank = normalized_features(model, x, device), normalized_features(model, bank_x, device)
    df = torch.empty(len(x))
    for c in y.unique():  # a loop over classes, not samples
        q, b = y == c, bank_y == c
        if b.sum() < k:
            raise ValueError(f"the DF bank holds {int(b.sum())} samples of class {int(c)}, fewer than knn_k={k}")
        dist = torch.cdist(query[q], bank[b])  # (n_c, bank_c)
        df[q] = dist.topk(k, dim=1, largest=False).values.mean(1)
    return df


def adversarial_feature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, eps: float,
                        device: torch.device, batch_size: int = 1024,
                        input_range: InputRange | None = None) -> torch.Tensor:
    """AF(x) = CE(f(x_adv), y) − CE(f(x), y) after `steps` of L∞ PGD of radius eps (step eps/3), eps in
    pixel units: images in [0, 1] (`input_range` None), or per channel in `input_range`'s units and bounds."""
    model.to(device).eval()
    out = []
    with full_precision(device):  # float32 losses, even inside an autocast region
        for i in range(0, len(x), batch_size):
            clean, yb = to_input(x[i:i + batch_size], device), y[i:i + batch_size].to(device)
            # plain floats for [0, 1] images: the same arithmetic as before normalised inputs were taken
            radius = eps if input_range is None else input_range.pixels(eps, clean)
            with torch.no_grad():
                clean_loss = F.cross_entropy(model(clean), yb, reduction="none")
            adv = clean.clone()
            for _ in range(steps):
                adv.requires_grad_(True)
                loss = F.cross_entropy(model(adv), yb)
                (grad,) = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    adv = adv + (radius / 3) * grad.sign()
                    adv = torch.min(torch.max(adv, clean - radius), clean + radius)
                    adv = adv.clamp(0, 1) if input_range is None else input_range.clamp(adv)
            with torch.no_grad():
                out.append((F.cross_entropy(model(adv), yb, reduction="none") - clean_loss).cpu())
    return torch.cat(out)


def curriculum_feature(curriculum: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CF(x) = CE(M_c(x), y): samples an early-stopped model already fits are easy."""
    return F.cross_entropy(predict(curriculum, x, device), y, reduction="none")


def compute_features(model: nn.Module, curriculum: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                     bank_x: torch.Tensor, bank_y: torch.Tensor, names: list[str], knn_k: int,
                     adv_steps: int, adv_eps: float, device: torch.device,
                     input_range: InputRange | None = None) -> dict[str, torch.Tensor]:
    """The raw (unscaled) features named in `names`, each (N,); `input_range` as adversarial_feature's."""
    raw = {}
    if "df" in names:
        raw["df"] = distance_feature(model, x, y, bank_x, bank_y, knn_k, device)
    if "af" in names:
        raw["af"] = adversarial_feature(model, x, y, adv_steps, adv_eps, device, input_range=input_range)
    if "cf" in names:
        if curriculum is None:
            raise ValueError("the curriculum feature CF needs the curriculum model M_c")
        raw["cf"] = curriculum_feature(curriculum, x, y, device)
    return raw


def robust_scale_stats(values: torch.Tensor) -> tuple[float, float, float, float]:
    """(low, high, min, max): the IQR clip bounds and the min/max of the clipped values."""
    q1, q3 = torch.quantile(values.double(), torch.tensor([0.25, 0.75], dtype=torch.double)).tolist()
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    clipped = values.clamp(low, high)
    return low, high, clipped.min().item(), clipped.max().item()


def robust_scale(values: torch.Tensor, stats: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """Clip to [Q1 − 1.5·IQR, Q3 + 1.5·IQR], then min-max scale to [0, 1] (stats fitted here if None)."""
    low, high, vmin, vmax = robust_scale_stats(values) if stats is None else stats
    scaled = (values.clamp(low, high) - vmin) / max(vmax - vmin, 1e-12)
    return scaled.clamp(0, 1)


def feature_matrix(twin_raw: dict[str, torch.Tensor], forget_raw: dict[str, torch.Tensor], names: list[str],
                   scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled (N, n_features) matrices for the twin and the forget set, columns in `names` order."""
    twin_cols, forget_cols = [], []
    for name in names:
        twin_cols.append(robust_scale(twin_raw[name]))
        stats = robust_scale_stats(twin_raw[name]) if scaling == "twin" else None
        forget_cols.append(robust_scale(forget_raw[name], stats))
    return torch.stack(twin_cols, 1), torch.stack(forget_cols, 1)
