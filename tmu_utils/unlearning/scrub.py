"""SCRUB (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning"): a student copy of the
original alternates max-steps, which push its outputs on D_f away from the frozen original
(teacher), with min-steps, which keep it close to the teacher on retain data plus a little
cross-entropy. Max-steps stop after `scrub_max_epochs`; the remaining epochs only repair D_r.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, original_logits, retain_subset,
                     start_model, unlearn_optimizer)


MAX_GRAD_NORM = 1.0


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at `temperature`, scaled by T^2 so gradients keep their size across T."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2


def scrub(task: UnlearnTask) -> nn.Module:
    """Alternate forget max-steps (first `scrub_max_epochs` epochs) and retain min-steps."""
    p, device = task.params, task.device
    gen = method_generator(task, "scrub")
    model = start_model(task)
    retain = retain_subset(task, gen)
    rx, ry = task.retain_x[retain], task.retain_y[retain]
    # The teacher is the frozen original and sees no augmentation: its logits are computed once.
    retain_teacher = original_logits(task, rx)
    forget_teacher = original_logits(task, task.forget_x)
    rx, ry, retain_teacher, fx, forget_teacher = on_device(task, rx, ry, retain_teacher, task.forget_x, forget_teacher)
    T = p.scrub_temperature
    opt = unlearn_optimizer(model, p, lr=p.scrub_lr)
    for epoch in range(p.unlearn_epochs):
        if epoch < p.scrub_max_epochs:
            for idx in batches(len(fx), p.unlearn_batch_size, gen):
                loss = -distill_kl(model(batch_input(fx, idx, device)), forget_teacher[idx].to(device), T)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # Ascent on KL is unbounded: without a cap on the step the full-scale run diverged
                # to NaN weights at every learning rate that moved the model at all.
                nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
                opt.step()
        for idx in batches(len(ry), p.unlearn_batch_size, gen):
            logits = model(batch_input(rx, idx, device))
            loss = (p.scrub_alpha * distill_kl(logits, retain_teacher[idx].to(device), T)
                    + p.scrub_gamma * F.cross_entropy(logits, ry[idx].to(device)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()
