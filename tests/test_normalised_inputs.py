"""Normalised inputs (tmu_utils/core/input_range.py, docs/api.md): the adversarial feature and TMU's input
noise, both in pixel units, follow a normalisation instead of clamping into [0, 1], and stay bit for bit
what they were on [0, 1] images; `tmu_update: last_block` on torchvision's resnet18 is layer4[1]; batches
as tuples, lists or dicts."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from tmu_utils.core.input_range import InputRange
from tmu_utils.core.params import make_params
from tmu_utils.core.streaming import batch_parts
from tmu_utils.core.training import full_precision, to_input
from tmu_utils.method import features as feats
from tmu_utils.unlearning import UnlearnTask, unlearn_row
from tmu_utils.unlearning.tmu_step import step_parameters

CPU = torch.device("cpu")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the starting kit's Normalize


def af_before_normalised_inputs(model, x, y, steps, eps, device, batch_size=1024):
    """adversarial_feature as it was before it took an input range (git history), the reference."""
    model.to(device).eval()
    out = []
    with full_precision(device):
        for i in range(0, len(x), batch_size):
            clean, yb = to_input(x[i:i + batch_size], device), y[i:i + batch_size].to(device)
            with torch.no_grad():
                clean_loss = F.cross_entropy(model(clean), yb, reduction="none")
            adv = clean.clone()
            for _ in range(steps):
                adv.requires_grad_(True)
                loss = F.cross_entropy(model(adv), yb)
                (grad,) = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    adv = adv + (eps / 3) * grad.sign()
                    adv = torch.min(torch.max(adv, clean - eps), clean + eps).clamp(0, 1)
            with torch.no_grad():
                out.append((F.cross_entropy(model(adv), yb, reduction="none") - clean_loss).cpu())
    return torch.cat(out)


class Normalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


@pytest.fixture
def pixels():
    """48 images of 3x8x8 in [0, 1], with black and white in every channel, and labels."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 8, 8, generator=g)
    x[0, :, 0, 0], x[1, :, 0, 0] = 0, 1
    return x, torch.randint(0, 10, (48,), generator=g)


def test_af_on_pixel_images_is_bit_for_bit_what_it_was(pixels):
    x, y = pixels
    net = small_net()
    for images in (x, (x * 255).round().to(torch.uint8)):  # a user's float images and the pipeline's uint8
        now = feats.adversarial_feature(net, images, y, steps=3, eps=0.03, device=CPU)
        assert torch.equal(now, af_before_normalised_inputs(net, images, y, steps=3, eps=0.03, device=CPU))


def test_af_on_normalised_images_is_the_af_in_pixel_space(pixels):
    # The same model read two ways: Normalize inside it on pixels, or outside it on the images the kit's
    # loaders give. The radius is 0.03 pixel units and the clamp [0, 1] pixels either way.
    x, y = pixels
    net = small_net()
    in_pixels = feats.adversarial_feature(nn.Sequential(Normalize(), net), x, y, steps=3, eps=0.03, device=CPU)
    where = InputRange.from_normalization(MEAN, STD, 3)
    normalised = feats.adversarial_feature(net, Normalize()(x), y, steps=3, eps=0.03, device=CPU, input_range=where)
    assert torch.allclose(normalised, in_pixels, rtol=1e-3, atol=1e-5)
    # the control: the same radius in input units is 1/std times too small
    assert not torch.allclose(feats.adversarial_feature(net, Normalize()(x), y, steps=3, eps=0.03, device=CPU),
                              in_pixels, rtol=1e-3, atol=1e-5)


def test_an_observed_range_round_trips_through_its_normalization():
    where = InputRange.from_normalization(MEAN, STD, 3)
    mean, std = InputRange.observed(where.low, where.high).normalization()
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), torch.tensor(MEAN, dtype=torch.float64))
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), torch.tensor(STD, dtype=torch.float64))


def test_tmu_input_noise_on_normalised_images_is_the_noise_in_pixel_space(pixels):
    # tmu_hard trains the predicted-easy rows with Gaussian input noise of std noise_std pixel units,
    # clamped to valid images: on normalised images with their input range it must do what it does on
    # pixels with Normalize inside the model. The reference step (every weight, cross-entropy, uncalibrated,
    # unperturbed): no block resolution involved.
    x, y = pixels
    params = make_params({"noise_std": 0.2, "unlearn_epochs": 2, "hard_repeat": 2, "retain_fraction": 1.0,
                          "tmu_retain_loss": "ce", "tmu_update": "all", "tmu_calibrate": False, "tmu_perturb": 0.0,
                          "unlearn_batch_size": 16})
    easy = torch.arange(16) % 2 == 0
    net = small_net()

    def run(original, images, where):
        task = UnlearnTask(original, images[16:], y[16:], images[:16], y[:16], 10, params, CPU, easy=easy, seed=0,
                           input_range=where)
        return unlearn_row(task, "tmu_hard")

    in_pixels = run(nn.Sequential(Normalize(), copy.deepcopy(net)), x, None)
    where = InputRange.from_normalization(MEAN, STD, 3)
    normalised = run(copy.deepcopy(net), Normalize()(x), where)
    unranged = run(copy.deepcopy(net), Normalize()(x), None)  # the control: noise 1/std too weak, clamped to [0, 1]
    with torch.no_grad():
        assert torch.allclose(normalised(Normalize()(x)), in_pixels(x), atol=1e-4)
        assert not torch.allclose(unranged(Normalize()(x)), in_pixels(x), atol=1e-4)


def named(model: nn.Module, trained: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in trained}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_last_block_on_torchvision_resnet18_is_layer4_1_and_the_head():
    net = resnet18(num_classes=10)
    expected = {f"layer4.1.{n}" for n, _ in net.layer4[1].named_parameters()} | {"fc.weight", "fc.bias"}
    assert named(net, step_parameters(net, "last_block")) == expected


def test_a_named_block_is_trained_with_the_head_and_a_missing_one_is_refused():
    net = resnet18(num_classes=10)
    expected = {f"layer3.{n}" for n, _ in net.layer3.named_parameters()} | {"fc.weight", "fc.bias"}
    assert named(net, step_parameters(net, "last_block", "layer3")) == expected
    with pytest.raises(ValueError, match="no module 'layer9'"):
        step_parameters(net, "last_block", "layer9")


def test_last_block_of_models_with_a_body_or_a_leaf_before_the_head_is_unchanged():
    # a Sequential stack whose last block before the head is a leaf: that leaf, as before
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    assert named(mlp, step_parameters(mlp, "last_block")) == {"1.weight", "1.bias", "3.weight", "3.bias"}


@pytest.mark.parametrize("batch, keys, expected", [
    ((1, 2), None, (1, 2)),
    ([1, 2, 3], None, (1, 2)),
    ({"image": 1, "age_group": 2, "age": 3}, None, (1, 2)),
    ({"Pixel_Values": 1, "Label": 2}, None, (1, 2)),
    ({"img_a": 1, "cls": 2}, ("img_a", "cls"), (1, 2)),
])
def test_a_batch_is_split_into_images_and_labels(batch, keys, expected):
    assert batch_parts(batch, keys) == expected


@pytest.mark.parametrize("batch, message", [
    (torch.zeros(3), "Tensors"),
    ({"pic": 1, "label": 2}, "none for the images"),
    ({"image": 1, "age": 2}, "none for the labels"),
])
def test_a_batch_without_images_and_labels_is_refused_in_one_line(batch, message):
    with pytest.raises(ValueError, match=message) as err:
        batch_parts(batch)
    assert "\n" not in str(err.value)
