"""The twin problem (docs/method.md): a stand-in unlearning problem whose answer is known.

Fine-tuning M_o on M ∪ D_tf gives the twin original M_t. Then M_t plays the original model, M_o
plays its gold model (M_o never saw D_tf, exactly as M_g never sees D_f) and D_tf plays the
forget set. So the generalization label of every twin forget sample is known: is M_o right on it?
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .params import Params
from .training import TrainConfig, TrainResult, predict, train_model


def twin_training_set(members: torch.Tensor, twin_forget: torch.Tensor) -> torch.Tensor:
    """Indices of M ∪ D_tf: what M_t is fine-tuned on and M_c is trained on."""
    return torch.cat([members, twin_forget])


def twin_original(original: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Params,
                  device: torch.device, seed: int) -> tuple[nn.Module, TrainResult]:
    """M_t: a copy of M_o fine-tuned `twin_epochs` at `twin_lr` on M ∪ D_tf (given as x, y)."""
    model = copy.deepcopy(original)
    cfg = TrainConfig(epochs=params.twin_epochs, batch_size=params.batch_size, optimizer=params.optimizer,
                      lr=params.twin_lr, momentum=params.momentum, weight_decay=params.weight_decay,
                      schedule="cosine", augment=params.augment)
    result = train_model(model, x, y, cfg, device=device, seed=seed, progress=params.progress,
                         desc="twin original M_t")
    return model, result


@torch.no_grad()
def generalization_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """g(x) = 1 (easy) where `model` classifies x correctly, else 0 (hard); a bool tensor."""
    return predict(model, x, device).argmax(1) == y
