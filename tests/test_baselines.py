"""The eight unlearning baselines (docs/method.md: unlearning) on the small real Fashion-MNIST problem.

Each baseline must change a copy of the original (never the original itself), move forget accuracy
the way its paper intends, keep retain accuracy above a floor, and be deterministic under the seed.

The margins and floors below were measured on this problem over seeds 0-4 (the tests run seed 0)
and sit a few points inside the worst seed, not at the edge of seed 0. On this small MLP, forget
samples are not much better fit than retain samples (forget 0.917, retain 0.922, test 0.845), so
the expected drops are moderate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from tmu_utils.core.choices import UNLEARNING_METHODS
from tmu_utils.core.training import predict
from tmu_utils.unlearning import METHODS
from tmu_utils.unlearning.common import start_model
from tmu_utils.unlearning.salun import saliency_mask

CPU = torch.device("cpu")


@dataclass
class Expect:
    """What one baseline should do on the small problem (accuracies are fractions)."""

    overrides: dict = field(default_factory=dict)  # Params overrides on top of make_task's
    forget_drop: float | None = None  # active: forget acc must fall by more than this
    forget_rise_tol: float | None = None  # passive: forget acc may rise by at most this
    retain_floor: float = 0.85  # retain acc must stay above this
    note: str = ""  # what was measured over seeds 0-4 (the original: forget 0.917, retain 0.922)


EXPECT = {
    # finetune and l1_sparse never look at D_f: they forget only passively (catastrophic
    # forgetting), so we only require that forget accuracy does not rise.
    "finetune": Expect({"unlearn_epochs": 2}, forget_rise_tol=0.02, retain_floor=0.85,
                       note="forget 0.870-0.917, retain >= 0.896"),
    "l1_sparse": Expect({"unlearn_epochs": 2}, forget_rise_tol=0.02, retain_floor=0.85,
                        note="forget 0.903-0.920, retain >= 0.906"),
    # The full-scale default neggrad_lr (1.5e-4, tuned for 4800 forget samples) barely moves 300
    # samples in 2 epochs; the small problem uses the rate its margins were measured at.
    "neggrad": Expect({"unlearn_epochs": 2, "neggrad_lr": 0.005}, forget_drop=0.02, retain_floor=0.83,
                      note="forget 0.863-0.893, retain >= 0.877"),
    "neggrad_plus": Expect({"unlearn_epochs": 2}, forget_drop=0.05, retain_floor=0.80,
                           note="forget 0.767-0.803, retain >= 0.835"),
    "random_label": Expect({"unlearn_epochs": 2}, forget_drop=0.03, retain_floor=0.85,
                           note="forget 0.850-0.877, retain >= 0.881"),
    # Bad teaching flattens outputs on D_f towards a random network's, which lowers confidence much
    # more than argmax accuracy: a small accuracy margin, plus the confidence check below.
    "bad_teacher": Expect({"unlearn_epochs": 2}, forget_drop=0.005, retain_floor=0.85,
                          note="forget 0.887-0.907, retain >= 0.896"),
    "salun": Expect({"unlearn_epochs": 2}, forget_drop=0.02, retain_floor=0.85,
                    note="forget 0.857-0.893, retain >= 0.878"),
    # SCRUB's first max-pass has zero gradient (student == teacher, no BN/dropout in the MLP), so it
    # needs a third max epoch and two repair epochs to act here. With the max-step gradient clipped,
    # it is knife-edge in its rate: 0.02 moves forget acc by < 0.015, 0.05 collapses to chance,
    # 0.03 drops it by 0.037 / 0.020 / 0.010 (seeds 0-2; retain >= 0.894).
    "scrub": Expect({"unlearn_epochs": 5, "scrub_max_epochs": 3, "scrub_lr": 0.03}, forget_drop=0.005,
                    retain_floor=0.85, note="forget 0.880-0.907, retain >= 0.894 (seeds 0-2)"),
}
BASELINES = list(EXPECT)
CONFIDENCE_DROP = {"random_label": 0.1, "bad_teacher": 0.1, "salun": 0.1}  # mean p(true) on D_f: 0.86 -> <= 0.71

_runs: dict[str, dict] = {}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _accuracy(model, x, y) -> float:
    return (predict(model, x, CPU).argmax(1) == y).float().mean().item()


def _true_prob(model, x, y) -> float:
    return predict(model, x, CPU).softmax(1).gather(1, y[:, None]).mean().item()


def _run(name: str, make_task) -> dict:
    """Run a baseline once per session (seed 0) and record the original before and after."""
    if name not in _runs:
        task = make_task(**EXPECT[name].overrides)
        before = _state(task.original)
        model = METHODS[name](task)
        _runs[name] = {"task": task, "model": model, "original_before": before}
    return _runs[name]


def test_all_baselines_registered():
    for name in BASELINES:
        assert name in METHODS and name in UNLEARNING_METHODS
        assert METHODS[name].__name__ == name


@pytest.mark.parametrize("name", BASELINES)
def test_changes_a_copy_not_the_original(name, make_task):
    run = _run(name, make_task)
    original, model = run["task"].original, run["model"]
    assert model is not original and not model.training
    assert all(torch.equal(v, run["original_before"][k]) for k, v in original.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), original.parameters()))


@pytest.mark.parametrize("name", BASELINES)
def test_forget_accuracy_moves_as_intended(name, make_task, small_problem):
    run, expect = _run(name, make_task), EXPECT[name]
    fx, fy = small_problem["forget_x"], small_problem["forget_y"]
    before, after = _accuracy(run["task"].original, fx, fy), _accuracy(run["model"], fx, fy)
    if expect.forget_drop is not None:
        assert after < before - expect.forget_drop, f"{name}: forget acc {before:.3f} -> {after:.3f}"
    else:
        assert after <= before + expect.forget_rise_tol, f"{name}: forget acc {before:.3f} -> {after:.3f}"
    if name in CONFIDENCE_DROP:
        p_before, p_after = _true_prob(run["task"].original, fx, fy), _true_prob(run["model"], fx, fy)
        assert p_after < p_before - CONFIDENCE_DROP[name], f"{name}: p(true|D_f) {p_before:.3f} -> {p_after:.3f}"


@pytest.mark.parametrize("name", BASELINES)
def test_retain_accuracy_stays_above_floor(name, make_task, small_problem):
    run = _run(name, make_task)
    acc = _accuracy(run["model"], small_problem["retain_x"], small_problem["retain_y"])
    assert acc > EXPECT[name].retain_floor, f"{name}: retain acc {acc:.3f}"


@pytest.mark.parametrize("name", BASELINES)
def test_deterministic_under_seed(name, make_task):
    run = _run(name, make_task)
    rng = torch.get_rng_state()
    again = METHODS[name](make_task(**EXPECT[name].overrides))
    assert torch.equal(torch.get_rng_state(), rng), "methods must draw only from their own generator"
    assert all(torch.equal(a, b) for a, b in zip(run["model"].parameters(), again.parameters()))


@pytest.mark.parametrize("sparsity", [0.2, 0.5])
def test_salun_updates_exactly_the_salient_weights(sparsity, make_task):
    task = make_task(unlearn_epochs=2, salun_sparsity=sparsity)
    mask = torch.cat([m.flatten() for m in saliency_mask(task, start_model(task))]).bool()
    model = METHODS["salun"](task)
    changed = torch.cat([(a != b).flatten() for a, b in zip(model.parameters(), task.original.parameters())])
    assert not (changed & ~mask).any(), "a masked-out weight moved"
    assert mask.float().mean().item() == pytest.approx(sparsity, abs=1e-4)
    # Weight decay enters through the masked gradient, so every salient (non-zero) weight moves.
    assert changed.float().mean().item() == pytest.approx(sparsity, abs=0.02)
