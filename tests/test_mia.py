"""Checks for the population loss-based membership-inference attack."""

import math

import numpy as np
import pytest
import torch

from tmu_utils.evaluation.mia import loss_attack, mia_gap, per_sample_loss


def test_per_sample_loss():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 0])
    loss = per_sample_loss(logits, labels)
    assert loss.shape == (2,)
    assert loss.tolist() == pytest.approx([math.log(2.0), -math.log(0.75)], abs=1e-6)


def _losses(rng, n_ret=2000, n_test=2000, n_forget=500, forget_scale=0.05):
    return (
        rng.exponential(0.05, n_ret),
        rng.exponential(1.0, n_test),
        rng.exponential(forget_scale, n_forget),
    )


def test_member_like_forget_is_flagged():
    r, t, f = _losses(np.random.default_rng(1), forget_scale=0.05)
    assert loss_attack(torch.tensor(r), torch.tensor(t), torch.tensor(f)) > 0.8


def test_non_member_like_forget_is_not_flagged():
    r, t, f = _losses(np.random.default_rng(2), forget_scale=1.0)
    assert loss_attack(r, t, f) < 0.3


def test_balanced_subsampling_with_imbalanced_identical_sides():
    rng = np.random.default_rng(3)
    r = rng.exponential(1.0, 10000)
    t = rng.exponential(1.0, 1000)
    f = rng.exponential(1.0, 2000)
    assert abs(loss_attack(r, t, f, seed=0) - 0.5) < 0.15


def test_max_per_side_and_determinism():
    r, t, f = _losses(np.random.default_rng(4), n_ret=3000, n_test=2500)
    a = loss_attack(r, t, f, seed=7, max_per_side=200)
    b = loss_attack(r, t, f, seed=7, max_per_side=200)
    assert a == b
    assert a > 0.8


def test_empty_inputs():
    r, t, _ = _losses(np.random.default_rng(5))
    assert math.isnan(loss_attack(r, t, np.array([])))
    with pytest.raises(ValueError):
        loss_attack(np.array([]), t, r)


def test_mia_gap():
    assert mia_gap(0.9, 0.6) == pytest.approx(0.3)
    assert mia_gap(0.6, 0.9) == pytest.approx(0.3)
    assert mia_gap(0.5, 0.5) == 0.0
