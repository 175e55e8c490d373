"""The classifiers. Every model maps [0,1] images to logits and exposes `features(x)` (the
penultimate layer, used by the distance feature DF) and `head` (the last linear layer)."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`body` maps normalised images to penultimate features; `head` maps those to logits."""

    def __init__(self, body: nn.Module, head: nn.Linear, in_channels: int):
        super().__init__()
        # Inputs stay in [0,1] pixel space so that PGD radii (AF, docs/method.md) mean pixels; the model
        # normalises internally.
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), 0.25))
        self.body = body
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, (B, C, H, W) -> (B, D)."""
        return self.body((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def small_cnn(num_classes: int, in_channels: int, image_size: int) -> Classifier:
    """Two strided convolutions and one hidden layer.

    Strided convolutions instead of max-pooling: on a 2-core CPU this trains about 4x faster than
    the pooled equivalent (measured 3.9 s vs 15 s per 48k Fashion-MNIST images, channels_last),
    which is what makes three full trainings fit in a few minutes.
    """
    side = (image_size + 3) // 4
    body = nn.Sequential(
        nn.Conv2d(in_channels, 16, 5, stride=2, padding=2), nn.ReLU(),  # (B, 16, H/2, W/2)
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # (B, 32, H/4, W/4)
        nn.Flatten(),
        nn.Linear(32 * side * side, 256), nn.ReLU(),  # (B, 256)
    )
    return Classifier(body, nn.Linear(256, num_classes), in_channels)


def mlp(num_classes: int, in_channels: int, image_size: int) -> Classifier:
    """A two-hidden-layer perceptron: the cheapest model that still overfits its members."""
    body = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, 512), nn.ReLU(),
        nn.Linear(512, 256), nn.ReLU(),
    )
    return Classifier(body, nn.Linear(256, num_classes), in_channels)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class GlobalAveragePool(nn.Module):
    """(B, C, H, W) -> (B, C) as a mean: nn.AdaptiveAvgPool2d's CUDA backward has no deterministic
    kernel, so `deterministic: true` would stop a GPU run at its first backward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def resnet18(num_classes: int, in_channels: int, image_size: int) -> Classifier:
    """ResNet-18 with the CIFAR stem: a 3x3 convolution and no max-pool, as in the paper's setup."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
        cin = cout
    layers.append(GlobalAveragePool())  # (B, 512)
    return Classifier(nn.Sequential(*layers), nn.Linear(512, num_classes), in_channels)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Residual(nn.Module):
    """x + block(x): one residual block (what `tmu_update: last_block` updates in resnet9)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


# The width resnet9 is built at: chosen on held-out training images by benchmarks/cifar10_recipe.py
# (benchmarks/results/cifar10_recipe/), the accuracy a 2-core CPU buys within minutes per model.
RESNET9_WIDTH = 16


def resnet9(num_classes: int, in_channels: int, image_size: int, width: int = RESNET9_WIDTH) -> Classifier:
    """A compact residual CNN for 32x32 images at CPU scale (the ResNet-9 layout of fast CIFAR-10
    training): three pooled stages of width w, 2w, 4w, 8w and two residual blocks, with BatchNorm.
    About 24 M multiply-adds per 32x32 image at w = 16, against 556 M for resnet18."""
    w = width
    body = nn.Sequential(
        *_conv_bn(in_channels, w),  # (B, w, H, W)
        *_conv_bn(w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, H/2, W/2)
        Residual(nn.Sequential(*_conv_bn(2 * w, 2 * w), *_conv_bn(2 * w, 2 * w))),
        *_conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),  # (B, 4w, H/4, W/4)
        *_conv_bn(4 * w, 8 * w), nn.MaxPool2d(2),  # (B, 8w, H/8, W/8)
        Residual(nn.Sequential(*_conv_bn(8 * w, 8 * w), *_conv_bn(8 * w, 8 * w))),
        GlobalAveragePool(),  # (B, 8w)
    )
    return Classifier(body, nn.Linear(8 * w, num_classes), in_channels)


MODELS = {"small_cnn": small_cnn, "mlp": mlp, "resnet18": resnet18, "resnet9": resnet9}


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int) -> Classifier:
    """Build a fresh classifier by name (see MODELS)."""
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(MODELS)}")
    return MODELS[arch](num_classes, in_channels, image_size)


class Penultimate(nn.Module):
    """Any classifier with the `features(x)` the DF feature reads: the input of its last nn.Linear
    layer, taken by a forward hook that lives for that one call (so copies of it stay plain)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the model has no nn.Linear layer, so DF has no penultimate features to read: "
                             "leave 'df' out of features")
        self.model, self._last = model, len(linears) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)][self._last]
        seen: list[torch.Tensor] = []
        handle = last.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
        try:
            self.model(x)
        finally:
            handle.remove()
        return seen[0].flatten(1)
