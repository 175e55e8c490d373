"""TMU's unlearning step (docs/method.md): fine-tune a copy of M_o on retain data, the predicted-easy
forget samples with their true labels, and the predicted-hard ones with a wrong label (or
gradient ascent), so that the model ends up right where the gold model would be right and wrong
where it would be wrong.

The three registered variants differ only in the easy/hard split they are handed:
`tmu` the predictor's, `tmu_oracle` the gold model's (an upper bound), `tmu_all_hard` none easy
(the conventional "destroy everything" behaviour). `tmu_targets.py` holds the other targets.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .common import (UnlearnTask, batch_input, batches, method_generator, on_device, original_logits,
                     random_wrong_labels, retain_subset, runner_up_labels, start_model, unlearn_optimizer)

RETAIN, EASY, HARD = 0, 1, 2
# (logits of a batch, the batch's pool rows, their sources) -> the loss of each row
RowLosses = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def hard_targets(task: UnlearnTask, hard: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The wrong labels given to the hard forget samples, drawn once per run (`hard_label`)."""
    y = task.forget_y[hard]
    if task.params.hard_label == "runner_up":
        return runner_up_labels(original_logits(task, task.forget_x[hard]), y)
    return random_wrong_labels(y, task.num_classes, generator)


def fine_tune(task: UnlearnTask, model: nn.Module, x: torch.Tensor, source: torch.Tensor, row_losses: RowLosses,
              generator: torch.Generator) -> nn.Module:
    """`unlearn_epochs` of SGD over the pool `x` (uint8 images, each row tagged RETAIN, EASY or HARD by
    `source`), minimising the mean of `row_losses`; EASY rows are seen with Gaussian input noise."""
    p, device = task.params, task.device
    x, source = on_device(task, x, source)
    opt = unlearn_optimizer(model, p)
    # noise only where there are EASY rows to draw it for (hard_only's pool has none): the draws come
    # from a generator of their own, so skipping them changes nothing else
    noisy = p.noise_std > 0 and bool((source == EASY).any())
    noise_gen = torch.Generator(device=device).manual_seed(task.run_seed) if noisy else None
    for _ in range(p.unlearn_epochs):
        for idx in batches(len(x), p.unlearn_batch_size, generator):
            xb, sb = batch_input(x, idx, device), source[idx].to(device)
            if noise_gen is not None:
                # Fresh noise each step on easy samples: keep them right without the extra
                # confidence a membership-inference attack would read (docs/method.md).
                noise = torch.randn(xb.shape, generator=noise_gen, device=device) * p.noise_std
                xb = torch.where((sb == EASY)[:, None, None, None], (xb + noise).clamp(0, 1), xb)
            loss = row_losses(model(xb), idx, sb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def tmu_unlearn(task: UnlearnTask, train_easy: bool = True) -> nn.Module:
    """Fine-tune a copy of M_o towards the gold model's behaviour on D_f, given `task.easy`; without
    `train_easy` the predicted-easy samples stay out of the pool (the `hard_only` target)."""
    if task.easy is None:
        raise ValueError("TMU needs task.easy: the predicted generalization label of each forget sample")
    p = task.params
    gen = method_generator(task, salt=1)
    model = start_model(task)
    retain = retain_subset(task, gen)
    easy = task.easy.nonzero().flatten() if train_easy else torch.zeros(0, dtype=torch.long)
    hard = (~task.easy).nonzero().flatten()
    wrong = hard_targets(task, hard, gen)

    # One pool of (source, index, target) rows; hard rows repeat `hard_repeat` times because a few
    # hundred of them diluted among thousands of retain samples are never flipped.
    x = torch.cat([task.retain_x[retain], task.forget_x[easy], task.forget_x[hard].repeat(p.hard_repeat, 1, 1, 1)])
    source = torch.cat([torch.full((len(retain),), RETAIN), torch.full((len(easy),), EASY),
                        torch.full((len(hard) * p.hard_repeat,), HARD)])
    true_y = torch.cat([task.retain_y[retain], task.forget_y[easy], task.forget_y[hard].repeat(p.hard_repeat)])
    target = true_y.clone()
    if p.hard_loss == "random_label":
        target[source == HARD] = wrong.repeat(p.hard_repeat)
    (target,) = on_device(task, target)

    def row_losses(logits: torch.Tensor, idx: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits, target[idx].to(task.device), reduction="none")
        return torch.where(sb == HARD, -losses, losses) if p.hard_loss == "ascent" else losses

    return fine_tune(task, model, x, source, row_losses, gen)
