"""The figures the notebooks show, each also saved into the run folder by `save_fig`."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

GOLD_COLOR, TMU_COLOR, OTHER_COLOR = "#2a9d8f", "#e76f51", "#8d99ae"


def save_fig(fig: plt.Figure, name: str, folder: str | Path) -> Path:
    """Write `fig` as `<folder>/<name>.png` (folder created) and return the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _method_color(name: str) -> str:
    return GOLD_COLOR if name == "retrain" else TMU_COLOR if name.startswith("tmu") else OTHER_COLOR


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
    ax.bar(names, [100 * methods[n]["delta_forget"] for n in names], color=[_method_color(n) for n in names])
    floor = results["noise_floor"]["delta_forget"]
    ax.axhline(100 * floor, color="k", ls=":", lw=1, label=f"retrain noise floor: {100 * floor:.2f} pp")
    ax.set_ylabel("Δ forget (pp)")
    ax.set_title("Alignment gap to the gold model (lower is better)")
    ax.legend()
    ax.tick_params(axis="x", rotation=45)
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
