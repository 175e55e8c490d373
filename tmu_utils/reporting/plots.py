"""The figures the notebooks show, each also saved into the run folder by `save_fig`."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..core.variants import split_of

GOLD_COLOR, TMU_COLOR, OTHER_COLOR = "#2a9d8f", "#e76f51", "#8d99ae"


def _gap_axis(ax: plt.Axes, values_pp: list[float]) -> None:
    """A symmetric-log y axis when one bar (typically "destroy") dwarfs the rest, so that the gaps
    near the noise floor stay readable; linear otherwise."""
    positive = sorted(v for v in values_pp if v > 0)
    if positive and positive[-1] > 20 * positive[len(positive) // 2]:
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_ylim(0, 2 * positive[-1])  # headroom: the top bar is not cut by the frame
    ax.set_ylabel("Δ forget (pp)")


def save_fig(fig: plt.Figure, name: str, folder: str | Path) -> Path:
    """Write `fig` as `<folder>/<name>.png` (folder created) and return the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _method_color(name: str) -> str:
    return GOLD_COLOR if name == "retrain" else TMU_COLOR if split_of(name, {}) is not None else OTHER_COLOR


def plot_forget_accuracy(results: dict) -> plt.Figure:
    """Each method's forget accuracy next to the gold model's (the alignment target)."""
    methods = results["methods"]
    names = list(methods)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.2))
    ax.bar(names, [100 * methods[n]["forget_acc"] for n in names], color=[_method_color(n) for n in names])
    gold = methods.get("retrain", {}).get("forget_acc")
    if gold is not None:
        ax.axhline(100 * gold, color=GOLD_COLOR, ls="--", lw=1, label=f"gold M_g: {100 * gold:.1f}%")
        ax.legend(loc="lower left")
    ax.set_ylabel("forget accuracy (%)")
    ax.set_title("Forget accuracy: the target is the gold model's, not zero")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def plot_delta(results: dict) -> plt.Figure:
    """Δ (|forget acc − gold forget acc|) per method, with the retrain noise floor marked."""
    methods = {n: m for n, m in results["methods"].items() if n != "retrain"}
    names = sorted(methods, key=lambda n: methods[n]["delta_forget"])
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.2))
    values = [100 * methods[n]["delta_forget"] for n in names]
    ax.bar(names, values, color=[_method_color(n) for n in names])
    floor = results["noise_floor"]["delta_forget"]
    ax.axhline(100 * floor, color="k", ls=":", lw=1, label=f"retrain noise floor: {100 * floor:.2f} pp")
    _gap_axis(ax, values)
    ax.set_title("Alignment gap to the gold model (lower is better)")
    ax.legend()
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def plot_accuracy_groups(accuracies: dict[str, dict[str, float]]) -> plt.Figure:
    """Grouped bars: for each split (forget, retain, test), one bar per model; values are fractions."""
    models = list(accuracies)
    splits = list(next(iter(accuracies.values())))
    width = 0.8 / len(models)
    colors = [OTHER_COLOR if "M_o" in m else GOLD_COLOR if "'" not in m else "#8ecae6" for m in models]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, (model, color) in enumerate(zip(models, colors)):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(splits))]
        values = [100 * accuracies[model][s] for s in splits]
        bars = ax.bar(xs, values, width, label=model, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(splits)), splits)
    low = min(100 * v for acc in accuracies.values() for v in acc.values())
    ax.set_ylim(max(0.0, low - 10), 100)  # the differences are a few points: do not start at 0
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_rates(rates: dict[str, float], title: str, ylabel: str = "rate (%)") -> plt.Figure:
    """One bar per named rate (a fraction), labelled with its value in percent."""
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(rates) + 1.5), 3.2))
    bars = ax.bar(list(rates), [100 * v for v in rates.values()],
                  color=[TMU_COLOR if "twin" in n else GOLD_COLOR for n in rates])
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylim(0, 105)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_image_grid(rows: dict[str, tuple[torch.Tensor, list[str]]]) -> plt.Figure:
    """One row of images per entry: {row title: (uint8 images (N, C, H, W), one caption per image)}."""
    ncols = max(len(images) for images, _ in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.3 * ncols, 1.6 * len(rows)), squeeze=False)
    for r, (row_title, (images, captions)) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            img = images[c].permute(1, 2, 0)  # (H, W, C)
            ax.imshow(img.squeeze(2) if img.shape[2] == 1 else img, cmap="gray")
            ax.set_title(captions[c], fontsize=7)
        axes[r, 0].set_ylabel(row_title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_feature_distributions(raw: dict[str, torch.Tensor], easy: torch.Tensor) -> plt.Figure:
    """Histogram of each raw feature for easy vs hard samples (densities, so the sizes may differ)."""
    fig, axes = plt.subplots(1, len(raw), figsize=(3.4 * len(raw), 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], raw.items()):
        low, high = torch.quantile(values.double(), torch.tensor([0.01, 0.99], dtype=torch.double)).tolist()
        bins = torch.linspace(low, high, 40).tolist()  # the 1 % tails would squash the bulk
        ax.hist(values[easy].clamp(low, high).numpy(), bins=bins, density=True, alpha=0.6, color=GOLD_COLOR,
                label="easy")
        ax.hist(values[~easy].clamp(low, high).numpy(), bins=bins, density=True, alpha=0.6, color=TMU_COLOR,
                label="hard")
        ax.set_title(name.upper())
        ax.set_yticks([])
    axes[0, 0].legend()
    fig.tight_layout()
    return fig


def plot_roc(fpr, tpr, auc: float, label: str = "predictor") -> plt.Figure:
    """A ROC curve with its AUC, against the chance diagonal."""
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot(fpr, tpr, color=TMU_COLOR, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="k", ls=":", lw=1)
    ax.set_xlabel("false easy rate")
    ax.set_ylabel("true easy rate")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(losses: dict[str, list[float]], first_epoch: dict[str, int] | None = None) -> plt.Figure:
    """Mean training loss per epoch of each model (log scale); `first_epoch` shifts a curve that continues
    another model's training (M_t starts where M_o stopped)."""
    first_epoch = first_epoch or {}
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in losses.items():
        start = first_epoch.get(name, 1)
        ax.plot(range(start, start + len(values)), values, marker="o", ms=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_delta_ci(delta: dict[str, tuple[float, float]], floor: tuple[float, float] | None = None,
                  title: str = "Δ forget across seeds (mean ± 95 % CI)") -> plt.Figure:
    """Δ per method as mean bars with 95 % CI error bars ({method: (mean, ci)}, NaN ci: no bar)."""
    names = sorted(delta, key=lambda n: delta[n][0])
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.2))
    errors = [0.0 if math.isnan(delta[n][1]) else 100 * delta[n][1] for n in names]
    values = [100 * delta[n][0] for n in names]
    ax.bar(names, values, yerr=errors if any(errors) else None, capsize=3, color=[_method_color(n) for n in names])
    if floor is not None:
        ax.axhline(100 * floor[0], color="k", ls=":", lw=1, label=f"retrain noise floor: {100 * floor[0]:.2f} pp")
        ax.legend()
    _gap_axis(ax, values)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


_POPULATION_STYLES = {"floor": {"color": "k", "ls": "--", "lw": 2.0}, "original": {"color": "0.45", "lw": 2.0},
                      "tmu": {"color": TMU_COLOR, "lw": 2.5}, "tmu_oracle": {"color": "#f4a261", "lw": 1.5},
                      "tmu_random_rank": {"color": "#6a4c93", "lw": 1.5, "ls": "-."},
                      "tmu_all_hard": {"color": "#264653", "lw": 1.5, "ls": "-."}}


def _population_styles(names: list[str]) -> dict[str, dict]:
    """The floor black and dashed, doing nothing grey, TMU thick; every other population its own thin colour."""
    palette = plt.get_cmap("tab10")
    others = [n for n in names if n not in _POPULATION_STYLES]
    return {**{n: {"color": palette(i % 10), "lw": 1.0} for i, n in enumerate(others)}, **_POPULATION_STYLES}


def plot_klom_cdf(per_sample: dict[str, np.ndarray], set_name: str = "D_f") -> plt.Figure:
    """The CDF over samples of each population's KLoM against retrain A, with the floor (B vs A).

    A curve to the left of the floor's would be closer to the retrains than a second set of
    retrains is; far to the right means the method's outputs are distributed unlike a retrain's.
    """
    styles = _population_styles(list(per_sample))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, values in per_sample.items():
        values = np.sort(np.asarray(values, dtype=float))
        label = "floor: retrain B vs A" if name == "floor" else name
        ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=label, **styles[name])
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel(f"KLoM per sample on {set_name} (vs retrain A)")
    ax.set_ylabel("fraction of samples ≤ x")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def plot_ulira_roc(population: dict) -> plt.Figure:
    """U-LiRA's ROC on D_f for every population (log false-positive rate), with the floor and chance."""
    rows = {"floor": population["floor"]["ulira"], **{m: v["ulira"] for m, v in population["methods"].items()}}
    styles = _population_styles(list(rows))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, attack in rows.items():
        label = ("floor: retrain B vs A" if name == "floor" else name) + f" ({100 * attack['balanced_accuracy']:.0f} %)"
        ax.plot(attack["roc"]["fpr"][1:], attack["roc"]["tpr"][1:], label=label, **styles[name])
    ax.plot([1e-4, 1], [1e-4, 1], color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(1e-3, 1)
    ax.set_xlabel("false positive rate (retrained called unlearned)")
    ax.set_ylabel("true positive rate")
    ax.set_title("U-LiRA on D_f (balanced accuracy in brackets)", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def save_run_figures(results: dict, folder: str | Path) -> list[Path]:
    """The standard figures of a run, saved as PNG."""
    paths = []
    for name, make in (("forget_accuracy", plot_forget_accuracy), ("delta_forget", plot_delta)):
        fig = make(results)
        paths.append(save_fig(fig, name, folder))
        plt.close(fig)
    return paths
