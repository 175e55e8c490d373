"""Hand-computed checks for tmu_utils.evaluation.metrics."""

import math

import numpy as np
import pytest
import torch

from tmu_utils.core.context import Outputs
from tmu_utils.evaluation.metrics import (METRIC_KEYS, accuracy, activation_distance, agreement, alignment_metrics,
                                          correct, js_divergence)


def onehot_logits(preds, k=3, scale=5.0):
    """Logits whose argmax is preds[i]."""
    x = torch.zeros(len(preds), k)
    x[torch.arange(len(preds)), torch.tensor(preds)] = scale
    return x


def test_correct_and_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    assert correct(logits, labels).tolist() == [True, True, False, False]
    assert accuracy(logits, labels) == 0.5
    assert isinstance(accuracy(logits, labels), float)
    assert accuracy(logits[:1], labels[:1]) == 1.0


def test_activation_distance():
    a = torch.randn(5, 4)
    assert activation_distance(a, a.clone()) == pytest.approx(0.0, abs=1e-12)
    u = torch.tensor([[50.0, -50.0]])
    g = torch.tensor([[-50.0, 50.0]])
    assert activation_distance(u, g) == pytest.approx(math.sqrt(2), abs=1e-9)
    # softmax([0,0]) = [.5,.5]; softmax([ln3,0]) = [.75,.25]; diff norm = 0.25*sqrt(2)
    u = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    g = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    assert activation_distance(u, g) == pytest.approx(0.25 * math.sqrt(2) / 2, abs=1e-6)


def _js_numpy(a, b):
    p = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    q = np.exp(b) / np.exp(b).sum(1, keepdims=True)
    m = (p + q) / 2
    kl = lambda x, y: (x * np.log(x / y)).sum(1)
    return float(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def test_js_divergence():
    a = torch.randn(6, 5)
    b = torch.randn(6, 5)
    assert js_divergence(a, a.clone()) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(a, b) == pytest.approx(js_divergence(b, a), abs=1e-12)
    assert 0.0 < js_divergence(a, b) <= math.log(2)
    assert js_divergence(a, b) == pytest.approx(_js_numpy(a.double().numpy(), b.double().numpy()), abs=1e-9)
    # disjoint confident predictions -> ln 2, never above it, never NaN
    u = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    g = torch.tensor([[-50.0, 50.0], [50.0, -50.0]])
    v = js_divergence(u, g)
    assert v <= math.log(2) and v == pytest.approx(math.log(2), abs=1e-6)
    # infinite-ish logits (exact zeros in softmax) stay finite
    u = torch.tensor([[1e4, -1e4, 0.0]])
    g = torch.tensor([[-1e4, 1e4, 0.0]])
    assert js_divergence(u, g) == pytest.approx(math.log(2), abs=1e-6)
    # hand case: p=[.5,.5], q=[1,0] -> m=[.75,.25]
    p_half = torch.tensor([[0.0, 0.0]])
    q_one = torch.tensor([[1e4, 0.0]])
    hand = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) + 0.5 * math.log(1 / 0.75)
    assert js_divergence(p_half, q_one) == pytest.approx(hand, abs=1e-9)


def test_agreement():
    labels = torch.tensor([0, 1, 2, 0])
    u = onehot_logits([0, 0, 2, 1])  # right, wrong, right, wrong
    g = onehot_logits([0, 2, 1, 0])  # right, wrong, wrong, right
    # both right, both wrong, disagree, disagree
    assert agreement(u, g, labels) == 0.5


def _labels():
    return {
        "forget": torch.tensor([0, 1, 2, 0]),
        "retain": torch.tensor([0, 1]),
        "test": torch.tensor([0, 1, 2, 1, 0]),
    }


def test_alignment_metrics_deltas_and_easy_hard():
    y = _labels()
    # forget: u right on [0,1,2] (3/4); g right on [0] only (1/4)
    u = Outputs(forget=onehot_logits([0, 1, 2, 1]), retain=onehot_logits([0, 1]), test=onehot_logits([0, 1, 2, 1, 1]))
    g = Outputs(forget=onehot_logits([0, 0, 0, 1]), retain=onehot_logits([0, 0]), test=onehot_logits([0, 1, 2, 1, 0]))
    m = alignment_metrics(u, g, y)
    assert set(m) <= set(METRIC_KEYS)
    assert all(isinstance(v, float) for v in m.values())
    assert m["forget_acc"] == 0.75 and m["retain_acc"] == 1.0 and m["test_acc"] == 0.8
    assert m["delta_forget"] == pytest.approx(0.5)
    assert m["delta_retain"] == pytest.approx(0.5)
    assert m["delta_test"] == pytest.approx(0.2)
    assert m["avg_gap"] == pytest.approx((0.5 + 0.5 + 0.2) / 3)
    assert m["tow"] == pytest.approx(0.5 * 0.5 * 0.8)  # ToW: product of (1 - gap) over the three sets
    # agreement on forget: both right, disagree, disagree, both wrong
    assert m["agreement"] == 0.5
    # easy = g right = {0}: u right -> 1.0; hard = {1,2,3}: u right on 1,2 -> 2/3
    assert m["easy_acc"] == 1.0
    assert m["hard_acc"] == pytest.approx(2 / 3)
    assert m["activation_distance"] == pytest.approx(activation_distance(u.forget, g.forget))
    assert m["js_divergence"] == pytest.approx(js_divergence(u.forget, g.forget))


def test_easy_hard_nan_when_empty():
    y = _labels()
    g = Outputs(forget=onehot_logits([0, 1, 2, 0]), retain=onehot_logits([0, 1]), test=onehot_logits([0, 1, 2, 1, 0]))
    u = Outputs(forget=onehot_logits([0, 0, 2, 0]), retain=g.retain, test=g.test)
    m = alignment_metrics(u, g, y)  # g gets every forget sample right -> no hard samples
    assert m["easy_acc"] == 0.75
    assert math.isnan(m["hard_acc"])
    assert m["delta_retain"] == 0.0 and m["delta_test"] == 0.0
    g_wrong = Outputs(forget=onehot_logits([1, 2, 0, 1]), retain=g.retain, test=g.test)
    m = alignment_metrics(u, g_wrong, y)
    assert math.isnan(m["easy_acc"])
    assert m["hard_acc"] == 0.75
    assert alignment_metrics(g, g, y)["avg_gap"] == 0.0
