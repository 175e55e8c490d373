"""TMU's target variants (docs/method.md, "Target variants"): what each forget sample is fine-tuned
towards. `hard` (tmu.py) flips the predicted-hard samples to a confident wrong label; a retrained
model is mostly unsure about those samples instead, with small margins either side of zero. So:
- `soft`: every forget sample gets the distribution P(easy)·onehot(y) + (1 − P(easy))·onehot(runner-up),
  cross-entropy with soft targets;
- `margin`: D_f ranked by P(easy) takes the margins of samples the original never saw, quantile for
  quantile, and the model's margins are pulled there with a smooth-L1 loss.
Both fine-tune on the hard variant's retain subsample plus all of D_f repeated `hard_repeat` times
(every forget sample now has a target to reach, not only the predicted-hard ones).
- `hard_only`: the hard flip, with the predicted-easy samples left out of the pool, so that they are
  not trained on again (the hard variant makes them more confident than a retrained model is).
`tmu` follows `tmu_target`; `tmu_hard`, `tmu_soft`, `tmu_margin` and `tmu_hard_only` force their
variant. The ranking controls `tmu_oracle` and `tmu_random_rank` take tmu's split-based target: hard_only
when `tmu_target` is hard_only, the hard flip otherwise (soft and margin read a P(easy) that the
controls do not have). `tmu_all_hard` has no easy samples, so both split-based targets agree on it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.training import true_class_margins
from .common import (UnlearnTask, method_generator, on_device, original_logits, retain_subset, runner_up_labels,
                     start_model)
from .tmu import EASY, HARD, RETAIN, fine_tune, tmu_unlearn
from .tmu_step import quantile_targets

VARIANT_OF = {"tmu_hard": "hard", "tmu_soft": "soft", "tmu_margin": "margin",
              "tmu_hard_only": "hard_only"}  # methods that force one
RANK_CONTROLS = ("tmu_oracle", "tmu_random_rank")  # controls of tmu's ranking: they follow its split-based target


def target_variant(method: str, tmu_target: str) -> str:
    """The target `method` fine-tunes D_f with: `tmu` follows `tmu_target`; `tmu_hard`, `tmu_soft`,
    `tmu_margin` and `tmu_hard_only` force theirs; the ranking controls follow `tmu_target` when it is
    hard_only; every other method (tmu_all_hard included) is `hard`."""
    if method == "tmu":
        return tmu_target
    if method in RANK_CONTROLS and tmu_target == "hard_only":
        return "hard_only"
    return VARIANT_OF.get(method, "hard")


def _needs_predictor(task: UnlearnTask, variant: str) -> None:
    if task.easy is None or task.easy_proba is None:
        raise ValueError(f"TMU's {variant} target needs task.easy and task.easy_proba: the predictor's split and "
                         "P(easy) of each forget sample")


def _pool(task: UnlearnTask, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
    """The retain subsample and D_f repeated `hard_repeat` times: (images, labels, source, forget row),
    where forget row is the D_f index of each row (−1 for retain rows) and D_f rows are tagged EASY
    or HARD by the predictor's split."""
    reps = task.params.hard_repeat
    retain = retain_subset(task, generator)
    n = len(task.forget_y)
    x = torch.cat([task.retain_x[retain], task.forget_x.repeat(reps, 1, 1, 1)])
    y = torch.cat([task.retain_y[retain], task.forget_y.repeat(reps)])
    forget_source = torch.where(task.easy, EASY, HARD)
    source = torch.cat([torch.full((len(retain),), RETAIN), forget_source.repeat(reps)])
    row = torch.cat([torch.full((len(retain),), -1), torch.arange(n).repeat(reps)])
    return x, y, source, row


def soft_targets(task: UnlearnTask) -> torch.Tensor:
    """(n_forget, classes): P(easy) on the true class and the rest on M_o's runner-up."""
    y, p_easy = task.forget_y, task.easy_proba.float().clamp(0, 1)
    runner_up = runner_up_labels(original_logits(task, task.forget_x), y)
    eye = torch.eye(task.num_classes)
    return p_easy[:, None] * eye[y] + (1 - p_easy)[:, None] * eye[runner_up]


def tmu_soft(task: UnlearnTask) -> nn.Module:
    """Fine-tune towards soft targets on D_f (noise on predicted-easy samples, as the hard variant)."""
    _needs_predictor(task, "soft")
    gen = method_generator(task, salt=2)
    model = start_model(task)
    x, y, source, row = _pool(task, gen)
    eye = torch.eye(task.num_classes)
    target = torch.where((row >= 0)[:, None], soft_targets(task)[row.clamp(min=0)], eye[y])  # (rows, classes)
    (target,) = on_device(task, target)

    def row_losses(logits: torch.Tensor, idx: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target[idx.to(target.device)].to(task.device), reduction="none")

    return fine_tune(task, model, x, source, row_losses, gen)


def margin_targets(easy_proba: torch.Tensor, reference_margins: torch.Tensor) -> torch.Tensor:
    """Quantile matching: the forget sample ranked k-th of n by P(easy) (ascending) gets the reference
    margin at quantile (k + ½)/n, so the highest P(easy) gets the highest reference margin."""
    return quantile_targets(easy_proba, reference_margins)


def tmu_margin(task: UnlearnTask) -> nn.Module:
    """Fine-tune D_f's margins towards `margin_targets` (smooth-L1), with cross-entropy on the retain rows.

    No input noise here: the target margin already sets how confident each sample ends up.
    """
    if task.reference_margins is None:
        if task.easy is not None and not task.easy.any():
            # The class scenario: every sample is hard and there is no twin problem to take margins
            # from, so TMU relabels all of D_f (docs/method.md), whichever target it uses.
            return tmu_unlearn(task)
        raise ValueError("TMU's margin target needs task.reference_margins: margins of samples M_o never saw")
    _needs_predictor(task, "margin")
    gen = method_generator(task, salt=3)
    model = start_model(task)
    x, y, source, row = _pool(task, gen)
    source = torch.where(source == RETAIN, RETAIN, HARD)  # no forget row is EASY: none gets noise
    wanted = margin_targets(task.easy_proba, task.reference_margins)
    target = torch.where(row >= 0, wanted[row.clamp(min=0)], 0.0)
    y, target, row = on_device(task, y, target, row)

    def row_losses(logits: torch.Tensor, idx: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        idx = idx.to(y.device)
        yb, tb, is_forget = y[idx].to(task.device), target[idx].to(task.device), (row[idx] >= 0).to(task.device)
        margin_loss = F.smooth_l1_loss(true_class_margins(logits, yb), tb, reduction="none")
        return torch.where(is_forget, margin_loss, F.cross_entropy(logits, yb, reduction="none"))

    return fine_tune(task, model, x, source, row_losses, gen)


def tmu_hard_only(task: UnlearnTask) -> nn.Module:
    """The hard flip on the predicted-hard samples only: the predicted-easy ones are not trained on."""
    return tmu_unlearn(task, train_easy=False)


def tmu_by_target(task: UnlearnTask) -> nn.Module:
    """`tmu`: the variant named by `tmu_target`."""
    variants = {"hard": tmu_unlearn, "soft": tmu_soft, "margin": tmu_margin, "hard_only": tmu_hard_only}
    return variants[task.params.tmu_target](task)


def tmu_rank_control(task: UnlearnTask) -> nn.Module:
    """`tmu_oracle` and `tmu_random_rank`: their easy/hard split with tmu's split-based target."""
    return tmu_unlearn(task, train_easy=task.params.tmu_target != "hard_only")
