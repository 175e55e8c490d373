"""Random-label baseline (Golatkar et al. 2020): give every forget sample a wrong label drawn
uniformly once, and fine-tune on those together with replayed retain data, so the model unlearns
D_f's true labels while the retain data keeps it accurate elsewhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, end_of_epoch, method_generator, on_device, random_wrong_labels,
                     retain_subset, start_model, unlearn_optimizer)


def random_label(task: UnlearnTask) -> nn.Module:
    """Fine-tune a copy of M_o on the retain subset plus D_f relabelled to random wrong classes."""
    p, device = task.params, task.device
    gen = method_generator(task, "random_label")
    model = start_model(task)
    retain = retain_subset(task, gen)
    wrong = random_wrong_labels(task.forget_y, task.num_classes, gen)
    x = torch.cat([task.retain_x[retain], task.forget_x])
    y = torch.cat([task.retain_y[retain], wrong])
    x, y = on_device(task, x, y)
    opt = unlearn_optimizer(model, p)
    for epoch in range(p.unlearn_epochs):
        for idx in batches(len(x), p.unlearn_batch_size, gen):
            loss = F.cross_entropy(model(batch_input(x, idx, device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        end_of_epoch(task, epoch + 1, model)
    return model.eval()
