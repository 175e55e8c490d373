"""Negative-gradient baseline (NegGrad; e.g. Golatkar et al. 2020, Thudi et al. 2022): run gradient
ascent on the cross-entropy of the forget set, pushing the model away from what it learned on D_f.
Nothing anchors the retain data, so the step size (`neggrad_lr`) is the only brake.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .common import UnlearnTask, batch_input, batches, method_generator, on_device, start_model, unlearn_optimizer


def neggrad(task: UnlearnTask) -> nn.Module:
    """Maximise the forget-set cross-entropy for `unlearn_epochs` epochs at `neggrad_lr`."""
    p, device = task.params, task.device
    gen = method_generator(task, "neggrad")
    model = start_model(task)
    fx, fy = on_device(task, task.forget_x, task.forget_y)
    opt = unlearn_optimizer(model, p, lr=p.neggrad_lr)
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(fy), p.unlearn_batch_size, gen):
            loss = -F.cross_entropy(model(batch_input(fx, idx, device)), fy[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()
