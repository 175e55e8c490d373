"""The unlearning challenge's own comparison, at CPU scale on CIFAR-10 (docs/challenge.md).

The challenge's protocol: ONE original, N calls of the entry point `unlearning(net, retain_loader,
forget_loader, val_loader)`, each with its own seed, against N models retrained without D_f; the
forgetting quality F of the N unlearned models' logit-scaled confidences on D_f against the
retrains' (tmu_utils/evaluation/forgetting_score.py). The original, the splits and the retrains are
those of a population run on the same parameters (`tmu_utils population`, replica 0's original and
retrains A and B of replicas 0..N-1, read from the population's replica files), so nothing is
trained twice. Rows:
- `tmu`: tmu_utils.challenge.unlearning at its defaults (validation set = TMU's holdout);
- `kit finetune`: the starting kit's baseline as the kit writes it (5 epochs of cross-entropy on
  the retain loader, SGD lr 0.001, momentum 0.9, weight decay 5e-4, cosine schedule);
- `doing nothing`: N copies of the original, a collapsed population (F = 0 by the definition);
- `floor`: retrain B against retrain A (2N retrains): what F can reach at this N.
The loaders are the kit's: shuffled, batch 128, forget and retain by index, validation half of the
test split by `random_split` with a seeded generator; their images are pixels in [0, 1] (`ToTensor`
without `Normalize`), because the recipe's models take pixels.

Run: python benchmarks/kit_comparison.py OUT --population DIR --runs N [params/cifar10.yaml] [--set k=v ...]
Each call's confidences and accuracies are saved in OUT/calls/ as it finishes; a re-run skips them.
Writes OUT/kit_comparison.json and OUT/kit_comparison.md.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset, random_split
from tqdm import tqdm

from tmu_utils.challenge import unlearning
from tmu_utils.core import context
from tmu_utils.core.params import load_params
from tmu_utils.core.training import predict
from tmu_utils.evaluation.forgetting_score import challenge_score, forgetting_quality, logit_scaled_confidence
from tmu_utils.experiments import replicas
from tmu_utils.experiments.runs import environment
from tmu_utils.experiments.sweep import mean_ci

REPO = Path(__file__).resolve().parent.parent
CALL_SEED = 1000  # call i runs with seed CALL_SEED + i
KIT_SPLIT_SEED = 42  # the generator of the validation/test halves, fixed across calls as in the kit
METHODS = ("tmu", "kit_finetune")


def kit_finetune(net: nn.Module, retain_loader: DataLoader, forget_loader: DataLoader, val_loader: DataLoader,
                 **_) -> nn.Module:
    """The starting kit's baseline: 5 epochs of fine-tuning on the retain set, its hyper-parameters."""
    epochs = 5
    device = next(net.parameters()).device
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    net.train()
    for _ in range(epochs):
        for x, y in retain_loader:
            opt.zero_grad()
            loss_fn(net(x.to(device)), y.to(device)).backward()
            opt.step()
        schedule.step()
    return net.eval()


def kit_loaders(ctx: context.Context, seed: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    """retain, forget and validation loaders as the kit builds them, shuffled by `seed`."""
    d = ctx.dataset
    train = TensorDataset(d.train_x.float().div(255), d.train_y)
    held_out = TensorDataset(d.test_x.float().div(255), d.test_y)
    val, _ = random_split(held_out, [0.5, 0.5], generator=torch.Generator().manual_seed(KIT_SPLIT_SEED))
    sets = (Subset(train, ctx.splits.retain.tolist()), Subset(train, ctx.splits.forget.tolist()), val)
    return tuple(DataLoader(s, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(seed + k))
                 for k, s in enumerate(sets))


def fingerprint(logits: torch.Tensor) -> str:
    return hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16]


def one_call(ctx: context.Context, original: nn.Module, method: str, i: int, path: Path, original_fp: str) -> dict:
    """Run (or read back) call i of `method` from a fresh copy of the original."""
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        return {**json.loads(meta_path.read_text()), "confidence": np.load(path)["confidence"]}
    seed = CALL_SEED + i
    torch.manual_seed(seed)
    net = copy.deepcopy(original)
    retain_loader, forget_loader, val_loader = kit_loaders(ctx, seed)
    start = time.perf_counter()
    net = (unlearning if method == "tmu" else kit_finetune)(net, retain_loader, forget_loader, val_loader, seed=seed)
    seconds = time.perf_counter() - start
    labels = {s: ctx.subset(s)[1] for s in ("forget", "retain", "test")}
    logits = {s: predict(net, ctx.subset(s)[0], ctx.device) for s in labels}
    meta = {"method": method, "call": i, "seed": seed, "seconds": seconds, "original_fingerprint": original_fp,
            **{f"{s}_acc": float((logits[s].argmax(1) == labels[s]).float().mean()) for s in labels}}
    confidence = logit_scaled_confidence(logits["forget"], labels["forget"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, confidence=confidence)
    meta_path.write_text(json.dumps(meta, indent=1))
    return {**meta, "confidence": confidence}


def compare(ctx: context.Context, population_dir: Path, n_runs: int, out: Path) -> dict:
    saved = [replicas.load(population_dir, ctx.for_replica(r)) for r in range(n_runs)]
    missing = [r for r, rep in enumerate(saved) if not {"retrain_a", "retrain_b", "original"} <= set(rep.margins)]
    if missing:
        raise SystemExit(f"{population_dir} has no replica file made under these parameters for replicas {missing}: "
                         f"run `python -m tmu_utils population ... --models {n_runs} --out {population_dir}` first")
    retrain = {h: np.stack([rep.confidences[f"retrain_{h}"] for rep in saved]) for h in ("a", "b")}
    floor_accs = {s: float(np.mean([rep.metrics["floor"][f"{s}_acc"] for rep in saved])) for s in ("retain", "test")}
    original, _ = context.original_model(ctx)  # replica 0's: trained here or read from the cache
    forget_x, forget_y = ctx.subset("forget")
    original_logits = predict(original, forget_x, ctx.device)
    rows, calls_of = {}, {}
    bar = tqdm(total=len(METHODS) * n_runs, desc="kit calls", unit="call")
    for method in METHODS:
        calls = []
        for i in range(n_runs):
            calls.append(one_call(ctx, original, method, i, out / "calls" / f"{method}_{i:02d}.npz",
                                  fingerprint(original_logits)))
            bar.update()
        calls_of[method] = calls
        rows[method] = summarise(np.stack([c["confidence"] for c in calls]), retrain["a"], calls, floor_accs)
    bar.close()
    nothing = np.repeat(logit_scaled_confidence(original_logits, forget_y)[None], n_runs, axis=0)
    original_accs = {f"{s}_acc": float((predict(original, ctx.subset(s)[0], ctx.device).argmax(1)
                                        == ctx.subset(s)[1]).float().mean()) for s in ("forget", "retain", "test")}
    rows["doing nothing"] = summarise(nothing, retrain["a"], [{**original_accs, "seconds": 0.0}], floor_accs)
    floor_calls = [{**{f"{s}_acc": rep.metrics["floor"][f"{s}_acc"] for s in ("forget", "retain", "test")},
                    "seconds": rep.metrics["floor"]["time_s"]} for rep in saved]
    rows["floor (retrain B vs A)"] = summarise(retrain["b"], retrain["a"], floor_calls, floor_accs)
    return {"protocol": f"one original (replica 0), {n_runs} seeded calls per method against {n_runs} retrains",
            "n_runs": n_runs, "params": ctx.params.to_dict(), "data": ctx.dataset.provenance(),
            "env": environment(ctx.device), "original_fingerprint": fingerprint(original_logits),
            "calls_from_another_original": sorted({c["original_fingerprint"] for r in calls_of.values() for c in r}
                                                  - {fingerprint(original_logits)}),
            "population": str(population_dir), "rows": rows}


def summarise(unlearned: np.ndarray, retrained: np.ndarray, calls: list[dict], floor_accs: dict) -> dict:
    row = {"forgetting": forgetting_quality(unlearned, retrained)}
    for key in ("forget_acc", "retain_acc", "test_acc", "seconds"):
        mean, half = mean_ci([c[key] for c in calls])
        row[key] = {"mean": mean, "ci95": half}
    row["score"] = challenge_score(row["forgetting"]["F"], row["retain_acc"]["mean"], floor_accs["retain"],
                                   row["test_acc"]["mean"], floor_accs["test"])
    return row


def table(result: dict) -> str:
    data, env = result["data"], result["env"]
    lines = [f"# The challenge's comparison: {result['protocol']}", "",
             f"Data: {data['dataset']} ({data['format']}, checksum {data['checksum']}); {env['device']}, "
             f"torch {env['torch']}, commit {env['git_sha']}. F: the challenge's forgetting quality on D_f "
             "[bootstrap 95 % CI over samples]; score: F × retain and test accuracy over the retrains' "
             "(retrain B); accuracies and seconds per call: mean ± 95 % CI over calls.", "",
             "| row | F | ε median | score | forget % | retain % | test % | seconds per call |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        f = row["forgetting"]
        cells = [f"{100 * row[k]['mean']:.2f} ± {100 * row[k]['ci95']:.2f}" for k in ("forget_acc", "retain_acc",
                                                                                     "test_acc")]
        seconds = f"{row['seconds']['mean']:.0f} ± {row['seconds']['ci95']:.0f}"
        lines.append(f"| {name} | {f['F']:.3f} [{f['F_ci95'][0]:.3f}, {f['F_ci95'][1]:.3f}] | "
                     f"{f['epsilon_median']:.2f} | {row['score']:.3f} | {' | '.join(cells)} | {seconds} |")
    return "\n".join(lines).replace("± nan", "") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("params", nargs="?", default=str(REPO / "params" / "cifar10.yaml"))
    parser.add_argument("--population", type=Path, required=True, help="the population folder with replica files")
    parser.add_argument("--runs", type=int, default=8, help="N: calls per method, and retrains per half")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.runs < 3:
        raise SystemExit("--runs must be at least 3: the challenge's ε needs N − 1 ≥ 2")
    ctx = context.prepare(load_params(args.params, args.overrides))
    args.out.mkdir(parents=True, exist_ok=True)
    result = compare(ctx, args.population, args.runs, args.out)
    (args.out / "kit_comparison.json").write_text(json.dumps(result, indent=1, allow_nan=True))
    (args.out / "kit_comparison.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
