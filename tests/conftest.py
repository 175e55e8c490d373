"""Shared fixtures: a small real Fashion-MNIST problem and a quickly trained original model."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TMU_PROGRESS", "0")  # progress bars off: stable, quiet output

from tmu_utils.core.data import load_dataset
from tmu_utils.core.models import build_model
from tmu_utils.core.params import make_params
from tmu_utils.core.training import TrainConfig, seed_everything, train_model
from tmu_utils.unlearning.common import UnlearnTask


@pytest.fixture(scope="session")
def benchmark_script():
    """A loader of benchmarks/<name>.py as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        return script

    return load


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist), loaded once per session."""
    return load_dataset("fashion_mnist")


@pytest.fixture(scope="session")
def small_problem(fashion_mnist):
    """3000 training images (first 2700 retain, last 300 forget) and 1000 test images."""
    g = torch.Generator().manual_seed(0)
    train = torch.randperm(len(fashion_mnist.train_y), generator=g)[:3000]
    test = torch.randperm(len(fashion_mnist.test_y), generator=g)[:1000]
    x, y = fashion_mnist.train_x[train], fashion_mnist.train_y[train]
    return {"retain_x": x[:2700], "retain_y": y[:2700], "forget_x": x[2700:], "forget_y": y[2700:],
            "test_x": fashion_mnist.test_x[test], "test_y": fashion_mnist.test_y[test]}


@pytest.fixture(scope="session")
def small_original(small_problem):
    """An MLP trained 8 epochs on retain ∪ forget: it fits its members better than the test set."""
    seed_everything(0)
    model = build_model("mlp", 10, 1, 28)
    x = torch.cat([small_problem["retain_x"], small_problem["forget_x"]])
    y = torch.cat([small_problem["retain_y"], small_problem["forget_y"]])
    train_model(model, x, y, TrainConfig(epochs=8, batch_size=64, lr=2e-3), device=torch.device("cpu"),
                seed=0, progress=False)
    return model


@pytest.fixture
def make_task(small_problem, small_original):
    """Build an UnlearnTask on the small problem; keyword arguments override Params fields."""
    def make(easy=None, **overrides):
        # unlearn_lr 0.02: the rate the small-problem margins in test_baselines.py were measured at; TMU's
        # step uncalibrated and unperturbed: these tasks carry no unseen margins (test_tmu_step.py adds them)
        params = make_params({"unlearn_epochs": 3, "retain_fraction": 0.5, "unlearn_lr": 0.02, "progress": False,
                              "tmu_calibrate": False, "tmu_perturb": 0.0, **overrides})
        return UnlearnTask(small_original, small_problem["retain_x"], small_problem["retain_y"],
                           small_problem["forget_x"], small_problem["forget_y"], 10, params,
                           torch.device("cpu"), easy=easy)
    return make
