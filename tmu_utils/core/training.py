"""One training loop for every model, batched prediction, seeding and device choice.

Data are uint8 tensors held in memory (on the GPU when there is one) and batched by index, as in
airbench: no DataLoader worker pool, which on a 2-core CPU costs more than it saves.
"""
from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch Generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here")
    return device


# Device types whose training steps run under autocast, and in which dtype. bf16 on CUDA: tensor-core
# speed without fp16's loss scaling. Evaluation never autocasts (see `full_precision`). Tests add
# "cpu" here to exercise the autocast path without a GPU.
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"cuda": torch.bfloat16}


def training_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast region of a training step on `device` (a no-op where AUTOCAST_DTYPES has none)."""
    dtype = AUTOCAST_DTYPES.get(device.type)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """float32 forward passes even inside an autocast region: bf16 logits carry ~3 significant
    digits, too coarse for JS divergences of ~0.01 between two models' softmaxes."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def set_deterministic(enabled: bool, device: torch.device) -> None:
    """Deterministic kernels (cuDNN, cuBLAS and torch's own) when `enabled`; torch's defaults otherwise."""
    if enabled and device.type == "cuda":
        # cuBLAS reads this when it starts; without it deterministic matmuls raise on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = enabled
    if enabled:
        torch.backends.cudnn.benchmark = False  # benchmarking picks kernels by timing: run-dependent
    torch.use_deterministic_algorithms(enabled)


def progress_enabled(requested: bool = True) -> bool:
    """Bars are off under tests (TMU_PROGRESS=0) so that notebook outputs stay stable."""
    return requested and os.environ.get("TMU_PROGRESS", "1") != "0"


def to_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float in [0,1] on `device`, channels_last for fast convolutions; float images
    (a user's Dataset, already in [0, 1]: docs/api.md) are taken as they are."""
    scale = x.dtype == torch.uint8
    x = x.to(device, non_blocking=True).float()
    x = x.div_(255) if scale else x
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of the 4-pixel reflect-padded image and horizontal flip."""
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")  # (B, C, H+8, W+8)
    dy, dx = (torch.randint(0, 9, (2, b), generator=generator)).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


@dataclass
class TrainConfig:
    """The recipe of one training run (a subset of Params)."""

    epochs: int
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    augment: bool = False


@dataclass
class TrainResult:
    """What a training run reports: per-epoch mean loss and wall time in seconds."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or Adam, as the recipe says."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int):
    """A per-step learning-rate schedule over `steps` steps."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *,
                device: torch.device, seed: int, progress: bool = True, desc: str = "train",
                on_epoch: Callable[[int, float], bool | None] | None = None) -> TrainResult:
    """Train `model` in place with cross-entropy on uint8 images `x` and labels `y`.

    `on_epoch(epoch, mean_loss)` is called after every epoch (the model in eval mode); training stops
    early when it returns True."""
    generator = torch.Generator().manual_seed(seed)
    # channels_last matches the inputs of to_input: 20-30 % faster convolutions on CPU and GPU alike
    model.to(device, memory_format=torch.channels_last).train()
    if device.type == "cuda":
        x, y = x.to(device), y.to(device)  # the whole set on the GPU: no per-batch host copies
    opt = make_optimizer(model, cfg)
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    sched = make_scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    result = TrainResult()
    start = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not progress_enabled(progress), leave=False)
    for epoch in bar:
        order = torch.randperm(len(x), generator=generator)
        total, count = 0.0, 0
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i:i + cfg.batch_size].to(x.device)
            xb, yb = to_input(x[idx], device), y[idx].to(device)
            if cfg.augment:
                xb = augment_batch(xb, generator)
            with training_autocast(device):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        result.losses.append(total / count)
        bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
        if on_epoch is not None:
            model.eval()
            if on_epoch(epoch, result.losses[-1]):
                break
            model.train()
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 2048) -> torch.Tensor:
    """Logits of `model` on uint8 images `x`, computed and returned in float32 on the CPU, in eval mode."""
    model.to(device, memory_format=torch.channels_last).eval()
    out = []
    for i in range(0, len(x), batch_size):
        with full_precision(device):
            out.append(model(to_input(x[i:i + batch_size], device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def true_class_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample: the logit of the true class minus the largest other logit (> 0 means correct);
    differentiable, so it serves as a loss input and as a measurement."""
    true = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return true - others.max(1).values
