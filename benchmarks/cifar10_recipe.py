"""The CPU-scale CIFAR-10 recipe (params/cifar10.yaml): test accuracy and training time of resnet9 at a
few widths, so that one model trains on the members in minutes on a 2-core CPU.

Run: python benchmarks/cifar10_recipe.py [params/cifar10.yaml] --widths 12 16 [--seed 100]
                                         [--out benchmarks/results/cifar10_recipe] [--set KEY=VALUE ...]
Each width trains one model on the members of the seed's splits (80 % of the 50 000 training images)
with the params file's recipe, then is scored on the holdout (the other 20 %, never trained on), which
chooses the width, and on the test split, which is reported and chooses nothing. A width whose
<out>/width<W>.json exists is read again, not re-trained, so an interrupted run resumes. Writes
<out>/recipe.md. Time a run with nothing else running on the machine: two trainings on 2 cores slow
each other.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from tmu_utils.core import context
from tmu_utils.core.models import resnet9
from tmu_utils.core.params import load_params
from tmu_utils.core.training import predict, seed_everything, train_model

REPO = Path(__file__).resolve().parent.parent


def multiply_adds(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one image (convolutions and linear layers)."""
    total = [0]

    def count(module: torch.nn.Module, inputs, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += output[0].numel() * k
        elif isinstance(module, torch.nn.Linear):
            total[0] += module.in_features * module.out_features

    handles = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total[0]


def measure(ctx: context.Context, width: int) -> dict:
    """Train resnet9 at `width` on the members; its holdout and test accuracy and training time."""
    d = ctx.dataset
    model = resnet9(d.num_classes, d.in_channels, d.image_size, width)
    mx, my = ctx.subset("members")
    seed_everything(ctx.seeds["original"])
    result = train_model(model, mx, my, context.recipe(ctx.params), device=ctx.device, seed=ctx.seeds["original"],
                         progress=ctx.params.progress, desc=f"width {width}")
    accuracy = {}
    for split in ("holdout", "test"):
        x, y = ctx.subset(split)
        accuracy[split] = (predict(model, x, ctx.device).argmax(1) == y).float().mean().item()
    return {"width": width, "multiply_adds": multiply_adds(model, (d.in_channels, d.image_size, d.image_size)),
            "parameters": sum(p.numel() for p in model.parameters()), "members": len(my),
            "epochs": ctx.params.epochs, "train_s": result.seconds, "holdout_acc": accuracy["holdout"],
            "test_acc": accuracy["test"], "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "data": {"format": d.format, "checksum": d.checksum}}


def table(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| width | multiply-adds per image | parameters | epochs | train time (members) | "
             "holdout acc | test acc |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['width']} | {r['multiply_adds'] / 1e6:.1f} M | {r['parameters'] / 1e6:.2f} M | "
                     f"{r['epochs']} | {r['train_s'] / 60:.1f} min ({r['members']} images) | "
                     f"{100 * r['holdout_acc']:.2f} % | {100 * r['test_acc']:.2f} % |")
    best = max(rows, key=lambda r: r["holdout_acc"])
    lines += ["", f"Best on the holdout: width {best['width']}. Threads: {rows[0]['threads']}; "
              f"data read as {rows[0]['data']['format']} (checksum {rows[0]['data']['checksum']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default=str(REPO / "params" / "cifar10.yaml"))
    parser.add_argument("--widths", type=int, nargs="+", default=[12, 16])
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cifar10_recipe"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    ctx = context.prepare(load_params(args.params, [*args.overrides, f"seed={args.seed}"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for width in args.widths:
        path = out / f"width{width}.json"
        if not path.is_file():
            path.write_text(json.dumps(measure(ctx, width), indent=2))
        rows.append(json.loads(path.read_text()))
    title = f"resnet9 widths on {Path(args.params).name} at seed {args.seed} {' '.join(args.overrides)}".strip()
    (out / "recipe.md").write_text(table(rows, title))
    print((out / "recipe.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
