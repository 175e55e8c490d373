"""NegGrad+ (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning"): each step descends the
cross-entropy of a retain batch while ascending that of a forget batch, so the model unlearns D_f
without drifting away from D_r. `neggrad_plus_alpha` weighs the ascent against the descent.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, retain_subset, start_model,
                     unlearn_optimizer)


def neggrad_plus(task: UnlearnTask) -> nn.Module:
    """Per retain batch, minimise CE(retain) - alpha * CE(forget), cycling through forget batches."""
    p, device = task.params, task.device
    gen = method_generator(task, "neggrad_plus")
    model = start_model(task)
    retain = retain_subset(task, gen)
    rx, ry, fx, fy = on_device(task, task.retain_x[retain], task.retain_y[retain], task.forget_x, task.forget_y)
    opt = unlearn_optimizer(model, p)
    forget_queue: list = []
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(ry), p.unlearn_batch_size, gen):
            if not forget_queue:  # a fresh shuffle of D_f each time it is used up
                forget_queue = batches(len(task.forget_y), p.unlearn_batch_size, gen)
            fidx = forget_queue.pop(0)
            retain_loss = F.cross_entropy(model(batch_input(rx, idx, device)), ry[idx].to(device))
            forget_loss = F.cross_entropy(model(batch_input(fx, fidx, device)), fy[fidx].to(device))
            loss = retain_loss - p.neggrad_plus_alpha * forget_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()
