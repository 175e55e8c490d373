"""Bad teaching (Chundawat et al. 2023, "Can bad teaching induce forgetting?"): a student copy of
the original is distilled from two teachers at once: the competent original on retain samples and
an incompetent, randomly initialised network of the same architecture on forget samples. The
student keeps the original's knowledge of D_r and learns to answer like chance on D_f.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..core.training import predict
from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, original_logits, retain_subset,
                     start_model, unlearn_optimizer)


def incompetent_teacher(task: UnlearnTask, generator: torch.Generator) -> nn.Module:
    """The original's architecture with every module re-initialised under a seed drawn from `generator`."""
    model = copy.deepcopy(task.original).cpu()  # initialise on the CPU: the same weights on every device
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):  # leave the global RNG as it was
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return model.to(task.device).eval()


def bad_teacher(task: UnlearnTask) -> nn.Module:
    """Distil the original on the retain subset and a random-init teacher on D_f into a copy of M_o."""
    p, device = task.params, task.device
    gen = method_generator(task, "bad_teacher")
    model = start_model(task)
    retain = retain_subset(task, gen)
    bad = incompetent_teacher(task, gen)
    # The teachers are frozen and see no augmentation, so their logits are computed once.
    x = torch.cat([task.retain_x[retain], task.forget_x])
    teacher = torch.cat([original_logits(task, task.retain_x[retain]), predict(bad, task.forget_x, device)])
    x, teacher = on_device(task, x, teacher)
    temperature = p.bad_teacher_temperature
    opt = unlearn_optimizer(model, p)
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(x), p.unlearn_batch_size, gen):
            student_log_probs = F.log_softmax(model(batch_input(x, idx, device)) / temperature, dim=1)
            teacher_probs = F.softmax(teacher[idx].to(device) / temperature, dim=1)
            loss = F.kl_div(student_log_probs, teacher_probs, reduction="batchmean")  # KL(teacher || student)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()
