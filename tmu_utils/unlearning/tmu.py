"""TMU's unlearning step (docs/method.md): fine-tune a copy of M_o on retain data, the predicted-easy
forget samples with their true labels, and the predicted-hard ones with a wrong label (or
gradient ascent), so that the model ends up right where the gold model would be right and wrong
where it would be wrong.

The three registered variants differ only in the easy/hard split they are handed:
`tmu` the predictor's, `tmu_oracle` the gold model's (an upper bound), `tmu_all_hard` none easy
(the conventional "destroy everything" behaviour). `tmu_targets.py` holds the other targets, and
`tmu_step.py` the step knobs `fine_tune` and `tmu_unlearn` read (retain distillation, restricted
parameters, easy-sample calibration).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.training import full_precision, true_class_margins
from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, original_logits,
                     random_wrong_labels, retain_subset, runner_up_labels, start_model, unlearn_optimizer)
from .tmu_step import calibration_targets, distillation_losses, frozen_split, restrict

# CALIBRATED: predicted-easy rows with a margin target (tmu_calibrate), seen without input noise
RETAIN, EASY, HARD, CALIBRATED = 0, 1, 2, 3
# (logits of a batch, the batch's pool rows, their sources) -> the loss of each row
RowLosses = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
PREFIX_CACHE_BYTES = 2 << 30  # the most a restricted step keeps of its frozen prefix's outputs
PREDICT_BATCH = 2048  # rows per no-grad forward pass, as core.training.predict


def hard_targets(task: UnlearnTask, hard: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The wrong labels given to the hard forget samples, drawn once per run (`hard_label`)."""
    y = task.forget_y[hard]
    if task.params.hard_label == "runner_up":
        return runner_up_labels(original_logits(task, task.forget_x[hard]), y)
    return random_wrong_labels(y, task.num_classes, generator)


def fine_tune(task: UnlearnTask, model: nn.Module, x: torch.Tensor, source: torch.Tensor, row_losses: RowLosses,
              generator: torch.Generator) -> nn.Module:
    """`unlearn_epochs` of SGD over the pool `x` (uint8 images, each row tagged RETAIN, EASY, HARD or
    CALIBRATED by `source`), minimising the mean of `row_losses`; EASY rows are seen with Gaussian input
    noise. With `tmu_retain_loss: distill` the RETAIN rows' loss is their KL to M_o instead; with a
    restricted `tmu_update` only that part of the model is trained (tmu_step.py)."""
    p, device = task.params, task.device
    x, source = on_device(task, x, source)
    opt = unlearn_optimizer(model, p, trained=restrict(model, p.tmu_update, task.block))
    # noise only where there are EASY rows to draw it for (hard_only's pool has none): the draws come
    # from a generator of their own, so skipping them changes nothing else
    noisy = p.noise_std > 0 and bool((source == EASY).any())
    noise_gen = torch.Generator(device=device).manual_seed(task.run_seed) if noisy else None
    # The frozen prefix of a restricted step is a fixed function of the input (the same before and
    # after every step), so its outputs (`inputs`) are computed once per pool row and the epochs run
    # only what the step trains (`forward`); None: the whole model runs on every batch.
    forward, inputs = model, None
    split = None if noisy else frozen_split(model, p.tmu_update, task.block)
    if split is not None:
        prefix, rest = split
        inputs = _prefix_outputs(task, prefix, x)
        forward = model if inputs is None else rest
    teacher = None
    if p.tmu_retain_loss == "distill":  # M_o's logits on the retain rows: M_o sees no noise, computed once
        retain_rows = (source == RETAIN).nonzero().flatten()
        teacher = torch.zeros(len(x), task.num_classes)
        if inputs is None:
            teacher[retain_rows] = original_logits(task, x[retain_rows.to(x.device)].cpu())
        else:  # no step has run, so `rest` is still M_o's: on the prefix outputs it gives M_o's logits
            teacher[retain_rows] = _eval_outputs(task, rest, inputs[retain_rows.to(inputs.device)])
        (teacher,) = on_device(task, teacher)
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(x), p.unlearn_batch_size, generator):
            sb = source[idx.to(source.device)].to(device)
            xb = batch_input(x, idx, device) if inputs is None else inputs[idx.to(inputs.device)]
            if noise_gen is not None:
                # Fresh noise each step on easy samples: keep them right without the extra
                # confidence a membership-inference attack would read (docs/method.md).
                # (noise_std in pixel units: the task's input range scales it and bounds the result)
                noise = torch.randn(xb.shape, generator=noise_gen, device=device)
                noisy_xb = ((xb + noise * p.noise_std).clamp(0, 1) if task.input_range is None else
                            task.input_range.clamp(xb + noise * task.input_range.pixels(p.noise_std, xb)))
                xb = torch.where((sb == EASY)[:, None, None, None], noisy_xb, xb)
            logits = forward(xb)
            losses = row_losses(logits, idx, sb)
            if teacher is not None:
                kl = distillation_losses(logits, teacher[idx.to(teacher.device)].to(device))
                losses = torch.where(sb == RETAIN, kl, losses)
            loss = losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for param in model.parameters():  # a restricted step froze the rest only while it ran
        param.requires_grad_(True)
    return model.eval()


@torch.no_grad()
def _prefix_outputs(task: UnlearnTask, prefix: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The frozen prefix's outputs on every pool row, on the task's device; None where they would take
    more than PREFIX_CACHE_BYTES (the step then runs the whole model on every batch)."""
    if len(x) == 0:
        return None
    first = prefix(batch_input(x, torch.arange(1), task.device))
    if first.numel() * first.element_size() * len(x) > PREFIX_CACHE_BYTES:
        return None
    chunks = torch.arange(len(x)).split(task.params.unlearn_batch_size)
    return torch.cat([prefix(batch_input(x, idx, task.device)) for idx in chunks])


@torch.no_grad()
def _eval_outputs(task: UnlearnTask, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """`module`'s outputs on `h` in eval mode and float32, on the CPU (as `predict` computes logits);
    each submodule's train or eval mode is put back afterwards."""
    modes = [(m, m.training) for m in module.modules()]  # parents first: restoring in order is exact
    module.eval()
    try:
        with full_precision(task.device):
            return torch.cat([module(chunk).float().cpu() for chunk in h.split(PREDICT_BATCH)])
    finally:
        for m, training in modes:
            m.train(training)


def tmu_unlearn(task: UnlearnTask, train_easy: bool = True) -> nn.Module:
    """Fine-tune a copy of M_o towards the gold model's behaviour on D_f, given `task.easy`; without
    `train_easy` the predicted-easy samples stay out of the pool (the `hard_only` target), unless
    `tmu_calibrate` puts them in with a margin target (then `hard_repeat` times, as the hard ones)."""
    if task.easy is None:
        raise ValueError("TMU needs task.easy: the predicted generalization label of each forget sample")
    p = task.params
    gen = method_generator(task, salt=1)
    model = start_model(task)
    retain = retain_subset(task, gen)
    calibrate = p.tmu_calibrate and bool(task.easy.any())
    easy = task.easy.nonzero().flatten() if train_easy or calibrate else torch.zeros(0, dtype=torch.long)
    easy_reps = p.hard_repeat if calibrate else 1
    hard = (~task.easy).nonzero().flatten()
    wrong = hard_targets(task, hard, gen)

    # One pool of (source, index, target) rows; hard rows repeat `hard_repeat` times because a few
    # hundred of them diluted among thousands of retain samples are never flipped.
    x = torch.cat([task.retain_x[retain], task.forget_x[easy].repeat(easy_reps, 1, 1, 1),
                   task.forget_x[hard].repeat(p.hard_repeat, 1, 1, 1)])
    source = torch.cat([torch.full((len(retain),), RETAIN), torch.full((len(easy) * easy_reps,),
                                                                        CALIBRATED if calibrate else EASY),
                        torch.full((len(hard) * p.hard_repeat,), HARD)])
    true_y = torch.cat([task.retain_y[retain], task.forget_y[easy].repeat(easy_reps),
                        task.forget_y[hard].repeat(p.hard_repeat)])
    target = true_y.clone()
    if p.hard_loss == "random_label":
        target[source == HARD] = wrong.repeat(p.hard_repeat)
    wanted = torch.zeros(len(x))  # the margin each CALIBRATED row is pulled to
    if calibrate:
        own = true_class_margins(original_logits(task, task.forget_x[easy]), task.forget_y[easy])
        wanted[source == CALIBRATED] = calibration_targets(own, task.reference_margins).repeat(easy_reps)
    target, wanted = on_device(task, target, wanted)

    def row_losses(logits: torch.Tensor, idx: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        yb = target[idx.to(target.device)].to(task.device)
        losses = F.cross_entropy(logits, yb, reduction="none")
        if p.hard_loss == "ascent":
            losses = torch.where(sb == HARD, -losses, losses)
        if calibrate:
            margin_loss = F.smooth_l1_loss(true_class_margins(logits, yb),
                                           wanted[idx.to(wanted.device)].to(task.device), reduction="none")
            losses = torch.where(sb == CALIBRATED, margin_loss, losses)
        return losses

    return fine_tune(task, model, x, source, row_losses, gen)
