"""Fine-tuning baseline (Golatkar et al. 2020; Warnecke et al. 2023): keep training the original
model on retain data only and let catastrophic forgetting erode what it memorised about D_f.
It never looks at the forget set, so any forgetting is passive.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, end_of_epoch, method_generator, on_device, retain_subset,
                     start_model, unlearn_optimizer)


def finetune(task: UnlearnTask) -> nn.Module:
    """Fine-tune a copy of M_o with cross-entropy on the replayed retain subset only."""
    p, device = task.params, task.device
    gen = method_generator(task, "finetune")
    model = start_model(task)
    retain = retain_subset(task, gen)
    x, y = on_device(task, task.retain_x[retain], task.retain_y[retain])
    opt = unlearn_optimizer(model, p)
    for epoch in range(p.unlearn_epochs):
        for idx in batches(len(x), p.unlearn_batch_size, gen):
            loss = F.cross_entropy(model(batch_input(x, idx, device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        end_of_epoch(task, epoch + 1, model)
    return model.eval()
