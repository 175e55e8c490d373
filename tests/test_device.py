"""What a GPU run relies on, checked on the CPU: float32 evaluation under bf16 autocast, cache keys
that name the device type, the deterministic flag, and unlearning data kept on the device."""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from tmu_utils.core import context, training
from tmu_utils.core.models import build_model
from tmu_utils.core.params import make_params
from tmu_utils.core.training import TrainConfig, predict, to_input, train_model
from tmu_utils.experiments import runs
from tmu_utils.method.features import adversarial_feature, curriculum_feature, normalized_features
from tmu_utils.core.choices import VARIANTS
from tmu_utils.unlearning import METHODS, common, unlearn_row

CPU = torch.device("cpu")


def test_training_autocasts_but_evaluation_is_float32(small_problem, monkeypatch):
    # The CUDA path on the CPU: training steps under bf16 autocast, as train_model does on a GPU.
    monkeypatch.setitem(training.AUTOCAST_DTYPES, "cpu", torch.bfloat16)
    torch.manual_seed(0)
    model = build_model("mlp", 10, 1, 28)
    seen = []
    hook = model.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    x, y = small_problem["retain_x"][:512], small_problem["retain_y"][:512]
    train_model(model, x, y, TrainConfig(epochs=2, batch_size=64), device=CPU, seed=0, progress=False)
    assert set(seen) == {torch.bfloat16}  # the autocast path really ran
    hook.remove()

    with torch.no_grad():
        reference = model(to_input(x, CPU))  # a plain float32 forward pass
        reference_features = F.normalize(model.features(to_input(x, CPU)), dim=1)
    reference_af = adversarial_feature(model, x, y, steps=2, eps=0.03, device=CPU)
    # Even called inside an autocast region, evaluation computes and returns float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = predict(model, x, CPU)
        features = normalized_features(model, x, CPU)
        af = adversarial_feature(model, x, y, steps=2, eps=0.03, device=CPU)
        cf = curriculum_feature(model, x, y, CPU)
    assert logits.dtype == features.dtype == af.dtype == cf.dtype == torch.float32
    # bf16 logits would be off by ~1e-2; float32 ones agree to rounding.
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features, reference_features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(af, reference_af, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cf, F.cross_entropy(reference, y, reduction="none"), rtol=1e-5, atol=1e-5)


def test_cache_key_names_the_device_type(tmp_path):
    params = make_params({"cache_dir": str(tmp_path)})
    on = {kind: context.Context(params, None, None, torch.device(kind), None) for kind in ("cpu", "cuda")}
    fields = context.MEMBER_FIELDS + context.RECIPE_FIELDS
    cpu_key, cuda_key = (on[kind].key(fields) for kind in ("cpu", "cuda"))
    assert cpu_key != cuda_key and cpu_key.endswith("-cpu") and cuda_key.endswith("-cuda")
    assert runs.environment(CPU)["device_type"] == "cpu"


@pytest.fixture
def restore_determinism():
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
    torch.use_deterministic_algorithms(saved[2])
    if saved[3] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[3]


def test_deterministic_flag_is_applied_by_prepare(restore_determinism, tmp_path):
    torch.backends.cudnn.benchmark = True
    smoke = {"train_limit": 600, "test_limit": 200, "cache_dir": str(tmp_path), "device": "cpu"}
    context.prepare(make_params({**smoke, "deterministic": True}))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    context.prepare(make_params(smoke))  # the default switches it off again
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_deterministic_sets_the_cublas_workspace_on_cuda(restore_determinism, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    training.set_deterministic(True, CPU)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # only CUDA's cuBLAS needs it
    training.set_deterministic(True, torch.device("cuda"))  # sets flags only: no CUDA call is made
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


# every method and every built-in TMU row (its pools and steps); tmu_bn: the MLP has no BatchNorm
@pytest.mark.parametrize("name", sorted(m for m in [*METHODS, *VARIANTS] if m != "tmu_bn"))
def test_unlearning_batches_are_cut_from_data_moved_to_the_device(name, make_task, monkeypatch):
    # On CUDA, on_device moves a method's data to the GPU once (on the CPU it is the identity), so
    # every batch must come from a tensor that went through it: none is copied from the host per step.
    # the method's own module and every unlearning module it may delegate its loop to (TMU
    # rows share tmu.fine_tune, and tmu_step.prefix_outputs cuts the frozen prefix's batches)
    modules = [m for key, m in sys.modules.items() if key.startswith("tmu_utils.unlearning.")
               and (hasattr(m, "on_device") or hasattr(m, "batch_input"))]
    moved, cut_from = [], []

    def record_moved(task, *tensors):
        moved.extend(id(t) for t in tensors)
        return tensors

    cut = common.batch_input

    def record_batch(x, idx, device):
        cut_from.append(id(x))
        return cut(x, idx, device)

    for module in modules:
        if hasattr(module, "on_device"):
            monkeypatch.setattr(module, "on_device", record_moved)
        if hasattr(module, "batch_input"):
            monkeypatch.setattr(module, "batch_input", record_batch)
    task = make_task(easy=torch.arange(300) % 2 == 0, unlearn_epochs=1)
    task.easy_proba = task.easy.float() * 0.8 + 0.1  # what the soft and margin targets read
    task.unseen_margins = torch.linspace(-2.0, 8.0, 300)
    unlearn_row(task, name)
    assert cut_from and set(cut_from) <= set(moved)


# Modules whose CUDA backward torch.use_deterministic_algorithms(True) refuses (torch's docs).
NO_DETERMINISTIC_CUDA_BACKWARD = (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d, torch.nn.AvgPool3d,
                                  torch.nn.MaxPool3d, torch.nn.ReflectionPad2d, torch.nn.ReplicationPad2d)


@pytest.mark.parametrize("arch, shape", [("small_cnn", (1, 28)), ("mlp", (1, 28)), ("resnet18", (3, 32))])
def test_models_train_under_deterministic_mode_on_cuda(arch, shape):
    model = build_model(arch, 10, shape[0], shape[1])
    bad = [type(m).__name__ for m in model.modules() if isinstance(m, NO_DETERMINISTIC_CUDA_BACKWARD)]
    assert not bad, f"{arch} uses {bad}: `deterministic: true` would fail on CUDA"
