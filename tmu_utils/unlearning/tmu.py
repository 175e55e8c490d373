"""TMU's unlearning step (docs/method.md), one method read top to bottom: which forget samples count as
easy, the pool of rows the fine-tune sees with a target for each, and the step that moves the model.

Every variant is a knob of this one method (a row of a table is `tmu` at some knobs, core/variants.py):
- `tmu_split`: where the easy/hard split of D_f comes from. The pipeline hands it over as `task.easy`:
  the predictor's (`predictor`), the gold model's (`gold`, the oracle control), as many as the predictor
  found chosen at random (`random`, the ranking control), or none easy (`none`, "unlearn all of D_f").
- `tmu_target`: what D_f is fine-tuned towards. Every pool holds a retain subsample (`retain_fraction`)
  and forget rows:
  - `hard`: the predicted-easy samples with their true labels (seen with input noise), the predicted-hard
    ones `hard_repeat` times with a wrong label (`hard_label`) or gradient ascent (`hard_loss`); a few
    hundred of them diluted among thousands of retain samples are never flipped without the repeats;
  - `hard_only`: the same without the predicted-easy rows, which the hard flip makes more confident than
    a retrained model is; with `tmu_calibrate` they come back with a margin target (CALIBRATED rows);
  - `soft`: all of D_f `hard_repeat` times, towards P(easy)·onehot(y) + (1 − P(easy))·onehot(runner-up);
  - `margin`: all of D_f `hard_repeat` times, its margins pulled (smooth-L1) to those of samples the
    original never saw, quantile for quantile in the order of P(easy).
  soft and margin read the predictor's P(easy); with any other split TMU runs the hard flip (hard_only
  stays hard_only), so the controls differ from `tmu` only in which samples count as easy.
- `tmu_retain_loss`, `tmu_update`, `tmu_calibrate`: how the step moves the model; which parameters it
  trains and the helpers that keep the rest bit for bit are in tmu_step.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.params import Params
from ..core.training import true_class_margins
from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, original_logits,
                     random_wrong_labels, retain_subset, runner_up_labels, start_model, unlearn_optimizer)
from .tmu_step import (calibration_targets, distillation_losses, eval_outputs, frozen_split, perturb,
                       prefix_outputs, quantile_targets, restrict)

# Where a pool row comes from. CALIBRATED: predicted-easy rows with a margin target (tmu_calibrate), seen
# without input noise.
RETAIN, EASY, HARD, CALIBRATED = 0, 1, 2, 3
# (logits of a batch, the batch's pool rows, their sources) -> the loss of each row
RowLosses = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Pool:
    """The rows TMU's fine-tune sees: uint8 images, each row's source, and the loss of a batch's rows."""

    x: torch.Tensor
    source: torch.Tensor
    row_losses: RowLosses


def target_of(params: Params) -> str:
    """The target TMU runs with: `tmu_target` with the predictor's split; the hard flip (hard_only when
    `tmu_target` is hard_only) with any other, whose P(easy) soft and margin could not read."""
    if params.tmu_split == "predictor":
        return params.tmu_target
    return "hard_only" if params.tmu_target == "hard_only" else "hard"


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
    trained = restrict(model, p.tmu_update, task.block)
    opt = unlearn_optimizer(model, p, trained=trained)
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
    # after M_o's logits are taken: the step starts from M_o with what it trains partly re-initialised
    perturb(model, trained, p.tmu_perturb, task.run_seed)
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


def hard_targets(task: UnlearnTask, hard: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The wrong labels given to the hard forget samples, drawn once per run (`hard_label`)."""
    y = task.forget_y[hard]
    if task.params.hard_label == "runner_up":
        return runner_up_labels(original_logits(task, task.forget_x[hard]), y)
    return random_wrong_labels(y, task.num_classes, generator)


def flip_pool(task: UnlearnTask, generator: torch.Generator, train_easy: bool = True) -> Pool:
    """The hard flip (`hard`); without `train_easy` the predicted-easy rows stay out (`hard_only`), unless
    `tmu_calibrate` puts them in with a margin target (then `hard_repeat` times, as the hard ones)."""
    p = task.params
    retain = retain_subset(task, generator)
    calibrate = p.tmu_calibrate and bool(task.easy.any())
    easy = task.easy.nonzero().flatten() if train_easy or calibrate else torch.zeros(0, dtype=torch.long)
    easy_reps = p.hard_repeat if calibrate else 1
    hard = (~task.easy).nonzero().flatten()
    wrong = hard_targets(task, hard, generator)
    x = torch.cat([task.retain_x[retain], task.forget_x[easy].repeat(easy_reps, 1, 1, 1),
                   task.forget_x[hard].repeat(p.hard_repeat, 1, 1, 1)])
    source = torch.cat([torch.full((len(retain),), RETAIN), torch.full((len(easy) * easy_reps,),
                                                                        CALIBRATED if calibrate else EASY),
                        torch.full((len(hard) * p.hard_repeat,), HARD)])
    target = torch.cat([task.retain_y[retain], task.forget_y[easy].repeat(easy_reps),
                        task.forget_y[hard].repeat(p.hard_repeat)])
    if p.hard_loss == "random_label":
        target[source == HARD] = wrong.repeat(p.hard_repeat)
    wanted = torch.zeros(len(x))  # the margin each CALIBRATED row is pulled to
    if calibrate:
        own = true_class_margins(original_logits(task, task.forget_x[easy]), task.forget_y[easy])
        wanted[source == CALIBRATED] = calibration_targets(own, task.unseen_margins).repeat(easy_reps)
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

    return Pool(x, source, row_losses)


def _needs_predictor(task: UnlearnTask, target: str) -> None:
    if task.easy_proba is None:
        raise ValueError(f"TMU's {target} target needs task.easy_proba: the predictor's P(easy) of each forget sample")


def _forget_rows(task: UnlearnTask, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]:
    """The retain subsample and all of D_f repeated `hard_repeat` times: (images, labels, source, forget
    row), where forget row is each row's D_f index (−1 for retain rows) and D_f rows are tagged EASY or
    HARD by the split."""
    reps = task.params.hard_repeat
    retain = retain_subset(task, generator)
    n = len(task.forget_y)
    x = torch.cat([task.retain_x[retain], task.forget_x.repeat(reps, 1, 1, 1)])
    y = torch.cat([task.retain_y[retain], task.forget_y.repeat(reps)])
    source = torch.cat([torch.full((len(retain),), RETAIN), torch.where(task.easy, EASY, HARD).repeat(reps)])
    row = torch.cat([torch.full((len(retain),), -1), torch.arange(n).repeat(reps)])
    return x, y, source, row


def soft_targets(task: UnlearnTask) -> torch.Tensor:
    """(n_forget, classes): P(easy) on the true class and the rest on M_o's runner-up."""
    y, p_easy = task.forget_y, task.easy_proba.float().clamp(0, 1)
    runner_up = runner_up_labels(original_logits(task, task.forget_x), y)
    eye = torch.eye(task.num_classes)
    return p_easy[:, None] * eye[y] + (1 - p_easy)[:, None] * eye[runner_up]


def soft_pool(task: UnlearnTask, generator: torch.Generator) -> Pool:
    """Soft targets on D_f, cross-entropy (noise on predicted-easy rows, as the hard flip)."""
    _needs_predictor(task, "soft")
    x, y, source, row = _forget_rows(task, generator)
    eye = torch.eye(task.num_classes)
    target = torch.where((row >= 0)[:, None], soft_targets(task)[row.clamp(min=0)], eye[y])  # (rows, classes)
    (target,) = on_device(task, target)

    def row_losses(logits: torch.Tensor, idx: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target[idx.to(target.device)].to(task.device), reduction="none")

    return Pool(x, source, row_losses)


def margin_targets(easy_proba: torch.Tensor, unseen_margins: torch.Tensor) -> torch.Tensor:
    """Quantile matching: the forget sample ranked k-th of n by P(easy) (ascending) gets the unseen
    samples' margin at quantile (k + ½)/n, so the highest P(easy) gets the highest margin."""
    return quantile_targets(easy_proba, unseen_margins)


def margin_pool(task: UnlearnTask, generator: torch.Generator) -> Pool:
    """D_f's margins towards `margin_targets` (smooth-L1), cross-entropy on the retain rows. No input
    noise: the target margin already sets how confident each sample ends up."""
    if task.unseen_margins is None:
        raise ValueError("TMU's margin target needs task.unseen_margins: margins of samples M_o never saw")
    _needs_predictor(task, "margin")
    x, y, source, row = _forget_rows(task, generator)
    source = torch.where(source == RETAIN, RETAIN, HARD)  # no forget row is EASY: none gets noise
    wanted = margin_targets(task.easy_proba, task.unseen_margins)
    target = torch.where(row >= 0, wanted[row.clamp(min=0)], 0.0)
    y, target, row = on_device(task, y, target, row)

    def row_losses(logits: torch.Tensor, idx: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        idx = idx.to(y.device)
        yb, tb, is_forget = y[idx].to(task.device), target[idx].to(task.device), (row[idx] >= 0).to(task.device)
        margin_loss = F.smooth_l1_loss(true_class_margins(logits, yb), tb, reduction="none")
        return torch.where(is_forget, margin_loss, F.cross_entropy(logits, yb, reduction="none"))

    return Pool(x, source, row_losses)


# target -> its pool, and the random stream of its draws (core/seeds.py: each target draws as it always has)
POOLS: dict[str, Callable[[UnlearnTask, torch.Generator], Pool]] = {
    "hard": flip_pool, "hard_only": lambda task, gen: flip_pool(task, gen, train_easy=False),
    "soft": soft_pool, "margin": margin_pool}
STREAMS = {"hard": "tmu/hard", "hard_only": "tmu/hard", "soft": "tmu/soft", "margin": "tmu/margin"}
