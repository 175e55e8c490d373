"""The twin problem (docs/method.md): a stand-in unlearning problem whose answer is known.

Fine-tuning M_o on M ∪ D_tf gives the twin original M_t. Then M_t plays the original model, M_o
plays its gold model (M_o never saw D_tf, exactly as M_g never sees D_f) and D_tf plays the
forget set. So the generalization label of every twin forget sample is known: is M_o right on it?
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..core.params import Params
from ..core.training import TrainConfig, TrainResult, predict, train_model


def twin_training_set(members: torch.Tensor, twin_forget: torch.Tensor) -> torch.Tensor:
    """Indices of M ∪ D_tf: what M_t is fine-tuned on and M_c is trained on."""
    return torch.cat([members, twin_forget])


@dataclass
class MatchTarget:
    """When M_t has memorised D_tf as M_o memorised its members: stop once M_t's accuracy on D_tf
    (`forget_x`, `forget_y`) reaches `accuracy`, M_o's accuracy on its own members."""

    forget_x: torch.Tensor
    forget_y: torch.Tensor
    accuracy: float


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Share of (x, y) that `model` classifies correctly."""
    return generalization_labels(model, x, y, device).double().mean().item()


def twin_original(original: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Params,
                  device: torch.device, seed: int,
                  match: MatchTarget | None = None) -> tuple[nn.Module, TrainResult, list[float]]:
    """M_t: a copy of M_o fine-tuned on M ∪ D_tf (given as x, y).

    Without `match`: `twin_epochs` epochs, cosine-annealed from `twin_lr`. With it: epochs at the
    constant `twin_lr` until M_t's accuracy on D_tf reaches `match.accuracy`, at most
    `twin_max_epochs`. Returns the model, the training record and M_t's D_tf accuracy after each
    epoch (empty without `match`).
    """
    model = copy.deepcopy(original)
    cfg = TrainConfig(epochs=params.twin_max_epochs if match else params.twin_epochs, batch_size=params.batch_size,
                      optimizer=params.optimizer, lr=params.twin_lr, momentum=params.momentum,
                      weight_decay=params.weight_decay, schedule="constant" if match else "cosine",
                      augment=params.augment)
    forget_accuracy: list[float] = []

    def reached(epoch: int, loss: float) -> bool:
        forget_accuracy.append(accuracy(model, match.forget_x, match.forget_y, device))
        return forget_accuracy[-1] >= match.accuracy

    result = train_model(model, x, y, cfg, device=device, seed=seed, progress=params.progress,
                         desc="twin original M_t", on_epoch=reached if match else None)
    return model, result, forget_accuracy


@torch.no_grad()
def generalization_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """g(x) = 1 (easy) where `model` classifies x correctly, else 0 (hard); a bool tensor."""
    return predict(model, x, device).argmax(1) == y
