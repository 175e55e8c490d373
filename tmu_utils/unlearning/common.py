"""What every unlearning method shares: the task it receives and the fine-tuning plumbing.

Every method, TMU and baselines alike, is a function `UnlearnTask -> nn.Module`. It starts from a
copy of the original model and never sees the gold model, so the comparison is like with like.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..core.input_range import InputRange
from ..core.params import Params
from ..core.seeds import generator
from ..core.training import predict, to_input


@dataclass
class UnlearnTask:
    """The inputs of one unlearning request (images are uint8 (N, C, H, W), labels int64)."""

    original: nn.Module  # M_o: copied, never modified
    retain_x: torch.Tensor  # D_r
    retain_y: torch.Tensor
    forget_x: torch.Tensor  # D_f
    forget_y: torch.Tensor
    num_classes: int
    params: Params
    device: torch.device
    easy: torch.Tensor | None = None  # bool per D_f sample: which forget samples to keep correct (TMU)
    seed: int | None = None  # seeds the method's own randomness; None means params.seed
    easy_proba: torch.Tensor | None = None  # P(easy) per D_f sample from the predictor (TMU's soft and margin targets)
    # margins of samples the original never saw, whose distribution D_f's should take (TMU's margin target)
    unseen_margins: torch.Tensor | None = None
    # called as on_epoch(epochs_done, model) after each epoch by the methods in EPOCH_PREFIX (the tuner
    # reads shorter runs off a longer one); it must leave the model and every generator as it found them
    on_epoch: Callable[[int, nn.Module], None] | None = None
    input_range: InputRange | None = None  # where the images live when not [0, 1]: the input noise's units and clamp
    block: str | None = None  # the module path `tmu_update: last_block` trains (with the head); None: the last block

    @property
    def run_seed(self) -> int:
        """The seed of this unlearning run's draws (retain subsample, wrong labels, noise)."""
        return self.params.seed if self.seed is None else self.seed


# Methods whose run at `unlearn_epochs` e is exactly the first e epochs of a longer run with the same
# other knobs: a constant rate and no schedule, draws per epoch from their own generator, and a call
# to `end_of_epoch` after every epoch.
EPOCH_PREFIX = ("finetune", "random_label")


def end_of_epoch(task: UnlearnTask, epochs_done: int, model: nn.Module) -> None:
    """Hand the model to `task.on_epoch`, if any, after `epochs_done` epochs."""
    if task.on_epoch is not None:
        task.on_epoch(epochs_done, model)


def start_model(task: UnlearnTask) -> nn.Module:
    """A trainable copy of the original model on the task's device."""
    model = copy.deepcopy(task.original).to(task.device)
    model.train()
    return model


def method_generator(task: UnlearnTask, stream: str) -> torch.Generator:
    """The generator of a method's own draws: its named stream (core/seeds.py) under the run seed, so
    methods draw independently."""
    return generator(task.run_seed, stream)


def retain_subset(task: UnlearnTask, generator: torch.Generator) -> torch.Tensor:
    """Indices of the `retain_fraction` of D_r replayed by fine-tuning methods (drawn once per run)."""
    n = len(task.retain_y)
    take = max(1, int(round(task.params.retain_fraction * n)))
    return torch.randperm(n, generator=generator)[:take].sort().values


def unlearn_optimizer(model: nn.Module, params: Params, lr: float | None = None,
                      trained: list[nn.Parameter] | None = None) -> torch.optim.SGD:
    """SGD with momentum 0.9 and weight decay 5e-4 (docs/method.md) at `unlearn_lr` unless told otherwise,
    over `trained` (every parameter of the model by default)."""
    return torch.optim.SGD(model.parameters() if trained is None else trained,
                           lr=params.unlearn_lr if lr is None else lr, momentum=0.9, weight_decay=5e-4)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled split of range(n) into batches."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def on_device(task: UnlearnTask, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors on the GPU when the task runs on CUDA, moved once as train_model does, so batches
    are cut there without a host-to-device copy per step; on other devices they stay where they are."""
    if task.device.type != "cuda":
        return tensors
    return tuple(t.to(task.device) for t in tensors)


def batch_input(x: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images `x[idx]` as model input on `device` (indexed where `x` lives)."""
    return to_input(x[idx.to(x.device)], device)


@torch.no_grad()
def original_logits(task: UnlearnTask, x: torch.Tensor) -> torch.Tensor:
    """Logits of the (unmodified) original model on `x`, on the CPU."""
    return predict(task.original, x, task.device)


def runner_up_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The most likely class other than the true one: how a model that has not memorised a sample
    tends to get it wrong."""
    masked = logits.clone()
    masked[torch.arange(len(labels)), labels] = float("-inf")
    return masked.argmax(1)


def random_wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A label drawn uniformly from the classes other than the true one."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes

