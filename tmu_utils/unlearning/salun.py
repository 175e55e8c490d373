"""SalUn (Fan et al. 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency"): the weights whose gradient on the forget loss is largest are the ones that encode D_f.
Only that salient share (`salun_sparsity`) is trained, with random-label fine-tuning on D_f plus
replayed retain data; every other weight is left exactly as it was.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, random_wrong_labels,
                     retain_subset, start_model, unlearn_optimizer)


def saliency_mask(task: UnlearnTask, model: nn.Module) -> list[torch.Tensor]:
    """Per parameter, a 0/1 float mask of the `salun_sparsity` share of weights with the largest
    |d CE(D_f) / d w| (one global threshold over all parameters, ties broken by `topk`)."""
    params = list(model.parameters())
    was_training = model.training
    model.eval()  # one pass over D_f without touching normalisation statistics
    model.zero_grad(set_to_none=True)
    fx, fy = on_device(task, task.forget_x, task.forget_y)
    for i in range(0, len(fy), task.params.unlearn_batch_size):
        idx = torch.arange(i, min(i + task.params.unlearn_batch_size, len(fy)))
        loss = F.cross_entropy(model(batch_input(fx, idx, task.device)), fy[idx].to(task.device), reduction="sum")
        loss.backward()  # gradients accumulate: the gradient of the summed forget loss
    saliency = torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).detach().abs().flatten().cpu()
                          for q in params])
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    keep = torch.zeros(len(saliency), dtype=torch.bool)
    keep[saliency.topk(int(round(task.params.salun_sparsity * len(saliency)))).indices] = True
    return [m.view_as(q).to(q.device, q.dtype) for m, q in zip(keep.split([q.numel() for q in params]), params)]


def salun(task: UnlearnTask) -> nn.Module:
    """Random-label fine-tuning of a copy of M_o that updates only the salient weights."""
    p, device = task.params, task.device
    gen = method_generator(task, "salun")
    model = start_model(task)
    masks = saliency_mask(task, model)
    retain = retain_subset(task, gen)
    wrong = random_wrong_labels(task.forget_y, task.num_classes, gen)
    x = torch.cat([task.retain_x[retain], task.forget_x])
    y = torch.cat([task.retain_y[retain], wrong])
    x, y = on_device(task, x, y)
    opt = unlearn_optimizer(model, p)
    # Weight decay inside SGD would shrink masked-out weights too; apply it to the gradient before
    # masking instead, so masked-out weights get exactly zero gradient, zero momentum, zero update.
    weight_decay = opt.param_groups[0]["weight_decay"]
    for group in opt.param_groups:
        group["weight_decay"] = 0.0
    params = list(model.parameters())
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(x), p.unlearn_batch_size, gen):
            loss = F.cross_entropy(model(batch_input(x, idx, device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for q, mask in zip(params, masks):
                    if q.grad is None:
                        q.grad = torch.zeros_like(q)
                    q.grad.add_(q, alpha=weight_decay).mul_(mask)
            opt.step()
    return model.eval()
