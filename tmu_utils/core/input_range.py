"""Where a model's inputs live (docs/api.md, "Normalised inputs"): each channel's input value of a black
and of a white pixel. The adversarial feature's radius `adv_eps` and TMU's input noise `noise_std` are
given in [0, 1] pixel units; under `Normalize(mean, std)` one pixel unit is 1/std input units, and a
valid image lies in [(0 - mean)/std, (1 - mean)/std], so that is where their clamps go. `None` in their
place means images in [0, 1] themselves (uint8 read as /255), the package's own data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class InputRange:
    """Per-channel bounds of a valid input image: `low` is a black pixel, `high` a white one, each (C,)."""

    low: torch.Tensor
    high: torch.Tensor

    @classmethod
    def from_normalization(cls, mean: Sequence[float], std: Sequence[float], channels: int) -> "InputRange":
        """The range `Normalize(mean, std)` maps [0, 1] pixels to (a single mean or std serves every channel)."""
        m, s = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (mean, std))
        if len(m) not in (1, channels) or len(s) not in (1, channels):
            raise ValueError(f"normalization has {len(m)} means and {len(s)} stds for images of {channels} channels")
        if not bool((s > 0).all()):
            raise ValueError(f"normalization's std must be positive; got {s.tolist()}")
        m, s = m.expand(channels), s.expand(channels)
        return cls((0 - m) / s, (1 - m) / s)

    @classmethod
    def observed(cls, low: torch.Tensor, high: torch.Tensor) -> "InputRange":
        """The range of images whose darkest and brightest values per channel are black and white pixels."""
        return cls(low.double().flatten(), high.double().flatten())

    def normalization(self) -> tuple[list[float], list[float]]:
        """The (mean, std) of `Normalize` that maps [0, 1] pixels onto this range."""
        std = 1 / (self.high - self.low)
        return (-self.low * std).tolist(), std.tolist()

    def _view(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.device, like.dtype).view(1, -1, *([1] * (like.dim() - 2)))  # (1, C, 1, ...)

    def pixels(self, amount: float, like: torch.Tensor) -> torch.Tensor:
        """`amount` pixel units in input units per channel, shaped to broadcast over a batch `like`."""
        return self._view(amount * (self.high - self.low), like)

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with every value inside its channel's range."""
        return x.clamp(self._view(self.low, x), self._view(self.high, x))


def range_problem(x: torch.Tensor, name: str, where: InputRange | None) -> str | None:
    """Why the images `x` of `name` are no inputs in `where` (None: [0, 1] pixels), in one line; None if they are."""
    if x.dtype == torch.uint8:
        return None if where is None else f"the {name}'s images are uint8 pixels, not normalised by normalization"
    if not x.is_floating_point():
        return f"the {name}'s images are {x.dtype}: give float images (or uint8)"
    if not bool(torch.isfinite(x).all()):
        return f"the {name}'s images hold NaN or infinite values"
    if where is None:
        if x.min() < 0 or x.max() > 1:
            return (f"the {name}'s images lie in [{x.min():.3g}, {x.max():.3g}], not [0, 1]: give "
                    "normalization=(mean, std) of the Normalize that made them")
        return None
    per_channel = x.transpose(0, 1).flatten(1)  # (C, N·H·W)
    low, high = per_channel.amin(1).double(), per_channel.amax(1).double()
    slack = 1e-3 * (where.high - where.low)  # float rounding of Normalize, far below one pixel level (1/255)
    outside = ((low < where.low - slack) | (high > where.high + slack)).nonzero().flatten()
    if len(outside):
        c = int(outside[0])
        return (f"the {name}'s channel {c} lies in [{low[c]:.3g}, {high[c]:.3g}], outside [{where.low[c]:.3g}, "
                f"{where.high[c]:.3g}] where normalization puts [0, 1] pixels: is it the Normalize its data went "
                "through?")
    return None


def same_range(a: InputRange, b: InputRange | None) -> bool:
    """Whether `b` is the same input range as `a`."""
    return b is not None and torch.allclose(a.low, b.low) and torch.allclose(a.high, b.high)
