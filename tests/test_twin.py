"""The twin original M_t: a fixed fine-tune, or one that stops when it knows D_tf as M_o knows M."""
from __future__ import annotations

import torch

from tmu_utils.core.params import make_params
from tmu_utils.method.twin import MatchTarget, accuracy, twin_original

CPU = torch.device("cpu")


def _twin_inputs(small_problem):
    """M ∪ D_tf with D_tf 300 test images the original never saw (the small problem's members are M)."""
    tx, ty = small_problem["test_x"][:300], small_problem["test_y"][:300]
    mx = torch.cat([small_problem["retain_x"], small_problem["forget_x"]])
    my = torch.cat([small_problem["retain_y"], small_problem["forget_y"]])
    return mx, my, tx, ty


def test_matched_twin_stops_at_the_first_epoch_that_reaches_the_members_accuracy(small_problem, small_original):
    mx, my, tx, ty = _twin_inputs(small_problem)
    target = accuracy(small_original, mx, my, CPU)
    before = accuracy(small_original, tx, ty, CPU)
    assert target > before + 0.05  # the original fits its members far better than unseen images
    params = make_params({"twin_lr": 1e-3, "twin_max_epochs": 15, "batch_size": 128, "progress": False})
    model, result, seen = twin_original(small_original, torch.cat([mx, tx]), torch.cat([my, ty]), params, CPU,
                                        seed=0, match=MatchTarget(tx, ty, target))
    assert len(seen) == len(result.losses) >= 2
    assert seen[-1] >= target and all(a < target for a in seen[:-1])  # stopped at the first epoch that got there
    assert accuracy(model, tx, ty, CPU) == seen[-1]  # the model returned is the one that was checked
    assert not model.training


def test_matched_twin_runs_at_most_twin_max_epochs_and_the_fixed_twin_twin_epochs(small_problem, small_original):
    mx, my, tx, ty = _twin_inputs(small_problem)
    x, y = torch.cat([mx, tx]), torch.cat([my, ty])
    params = make_params({"twin_max_epochs": 3, "twin_epochs": 2, "batch_size": 256, "progress": False})
    _, result, seen = twin_original(small_original, x, y, params, CPU, seed=0, match=MatchTarget(tx, ty, 1.01))
    assert len(result.losses) == len(seen) == 3  # an unreachable target: the cap
    _, result, seen = twin_original(small_original, x, y, params, CPU, seed=0)
    assert len(result.losses) == 2 and seen == []
