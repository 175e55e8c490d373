"""l1-sparse unlearning (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning"):
fine-tune on retain data with an added l1 penalty on the weights. Sparsity pushes the model to
drop the weight mass that only D_f needed; the penalty decays linearly to zero so the last steps
recover accuracy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, retain_subset, start_model,
                     unlearn_optimizer)


def l1_sparse(task: UnlearnTask) -> nn.Module:
    """Fine-tune on the retain subset with CE + gamma_t * ||theta||_1, gamma_t: l1_sparse_alpha -> 0."""
    p, device = task.params, task.device
    gen = method_generator(task, "l1_sparse")
    model = start_model(task)
    retain = retain_subset(task, gen)
    x, y = on_device(task, task.retain_x[retain], task.retain_y[retain])
    opt = unlearn_optimizer(model, p)
    steps_per_epoch = -(-len(y) // p.unlearn_batch_size)
    total, step = p.unlearn_epochs * steps_per_epoch, 0
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(y), p.unlearn_batch_size, gen):
            gamma = p.l1_sparse_alpha * (1 - step / total)
            l1 = torch.stack([q.abs().sum() for q in model.parameters()]).sum()
            loss = F.cross_entropy(model(batch_input(x, idx, device)), y[idx].to(device)) + gamma * l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return model.eval()
