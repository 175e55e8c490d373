"""TMU's unlearning step (docs/method.md), one method read top to bottom: which forget samples count as
easy, the pool of rows the fine-tune sees with a target for each, and the step that moves the model.

Every variant is a knob of this one method (a row of a table is `tmu` at some knobs, core/variants.py):
- `tmu_split`: where the easy/hard split of D_f comes from. The pipeline hands it over as `task.easy`:
  the predictor's (`predictor`), the gold model's (`gold`, the oracle control), as many as the predictor
  found chosen at random (`random`, the ranking control), or none easy (`none`, "unlearn all of D_f").
- `tmu_target`: what D_f is fine-tuned towards (tmu_targets.py): the predicted-hard samples flipped to a
  wrong label with the easy ones kept (`hard`) or left out (`hard_only`), a soft distribution (`soft`),
  or the margins of samples the original never saw (`margin`).
- `tmu_retain_loss`, `tmu_update`, `tmu_calibrate`: how the step moves the model (tmu_step.py).
"""
from __future__ import annotations

import torch
from torch import nn

from .common import UnlearnTask, batch_input, batches, method_generator, on_device, original_logits, start_model, \
    unlearn_optimizer
from .tmu_step import distillation_losses, eval_outputs, frozen_split, prefix_outputs, restrict
from .tmu_targets import EASY, POOLS, RETAIN, STREAMS, Pool, target_of


def tmu_unlearn(task: UnlearnTask) -> nn.Module:
    """Fine-tune a copy of M_o towards the gold model's behaviour on D_f, given the easy/hard split
    `task.easy`: right where the gold model would be right, wrong where it would be wrong."""
    if task.easy is None:
        raise ValueError("TMU needs task.easy: the easy/hard split of the forget samples (tmu_split)")
    target = target_of(task.params)
    if target == "margin" and task.unseen_margins is None and not task.easy.any():
        # The class scenario: every sample is hard and there is no twin problem to take margins from,
        # so TMU relabels all of D_f (docs/method.md), whichever target it uses.
        target = "hard"
    generator = method_generator(task, STREAMS[target])
    model = start_model(task)
    pool = POOLS[target](task, generator)
    return fine_tune(task, model, pool, generator)


def fine_tune(task: UnlearnTask, model: nn.Module, pool: Pool, generator: torch.Generator) -> nn.Module:
    """`unlearn_epochs` of SGD over the pool (uint8 images, each row tagged RETAIN, EASY, HARD or
    CALIBRATED), minimising the mean of its row losses; EASY rows are seen with Gaussian input noise.
    With `tmu_retain_loss: distill` the RETAIN rows' loss is their KL to M_o instead; with a restricted
    `tmu_update` only that part of the model is trained (tmu_step.py)."""
    p, device = task.params, task.device
    x, source = on_device(task, pool.x, pool.source)
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
        inputs = prefix_outputs(task, prefix, x)
        forward = model if inputs is None else rest
    teacher = None
    if p.tmu_retain_loss == "distill":  # M_o's logits on the retain rows: M_o sees no noise, computed once
        retain_rows = (source == RETAIN).nonzero().flatten()
        teacher = torch.zeros(len(x), task.num_classes)
        if inputs is None:
            teacher[retain_rows] = original_logits(task, x[retain_rows.to(x.device)].cpu())
        else:  # no step has run, so `rest` is still M_o's: on the prefix outputs it gives M_o's logits
            teacher[retain_rows] = eval_outputs(task, rest, inputs[retain_rows.to(inputs.device)])
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
            losses = pool.row_losses(logits, idx, sb)
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
