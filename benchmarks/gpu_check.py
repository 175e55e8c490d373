"""The GPU check behind benchmarks/gpu_check.sh: one JSON file of every figure it measures.

1. smoke: `python -m tmu_utils run params/smoke.yaml --direct --set device=cuda`: every stage and
   every unlearning method on the GPU (device mix-ups fail here), with its wall time.
2. speed: the default recipe (small_cnn on the default members) trained for a few epochs on CUDA
   and on the CPU, the ratio of the two, and the cost of `deterministic: true` on CUDA.
3. resnet18: a few epochs of params/cifar10_resnet18.yaml's recipe on a fake CIFAR-10 (random
   images in the real python-pickle format, written here), to time one ResNet-18 epoch; then two
   epochs with `deterministic: true`, which fails if a layer lacks a deterministic CUDA kernel.

Without CUDA the CUDA parts are skipped, each with its reason in the JSON; `--quick` shrinks
every size so that the CPU path runs in a minute (a check of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tmu_utils.core.context import recipe
from tmu_utils.core.data import load_dataset
from tmu_utils.core.models import build_model
from tmu_utils.core.params import load_params
from tmu_utils.core.training import TrainConfig, predict, seed_everything, set_deterministic, train_model

ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()
NO_CUDA = "skipped: CUDA is not available on this machine"


def smoke(out: Path, work: Path) -> dict:
    """The smoke run on CUDA in its own process, as a user would start it."""
    if not CUDA:
        return {"status": NO_CUDA}
    try:
        load_dataset("fashion_mnist")
    except FileNotFoundError as e:
        return {"status": f"skipped: Fashion-MNIST is missing ({str(e).splitlines()[0]})"}
    cmd = [sys.executable, "-m", "tmu_utils", "run", str(ROOT / "params" / "smoke.yaml"), "--direct", "--quiet",
           "--out", str(work / "smoke"), "--set", "device=cuda", "--set", f"cache_dir={work / 'cache'}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (out / "smoke.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"status": f"FAILED (exit {done.returncode}), see {out / 'smoke.log'}", "wall_s": seconds}
    results = json.loads((work / "smoke" / "results.json").read_text())
    return {"status": "ok", "wall_s": seconds, "env": results["env"], "timing": results["timing"],
            "tmu_time_s": results["methods"]["tmu"]["time_s"]}


def _time_training(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, arch: str, shape: tuple[int, int, int],
                   num_classes: int, device: torch.device) -> dict:
    """Seconds per epoch of one recipe (epoch 1 holds the warm-up, so later epochs are the figure)."""
    seed_everything(0)
    model = build_model(arch, num_classes, shape[0], shape[1])
    epoch_ends = []
    start = time.perf_counter()

    def on_epoch(epoch: int, loss: float) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_ends.append(time.perf_counter() - start)

    train_model(model, x, y, cfg, device=device, seed=0, progress=False, on_epoch=on_epoch)
    per_epoch = np.diff([0.0] + epoch_ends).tolist()
    predict_start = time.perf_counter()
    predict(model, x[:10_000], device)
    return {"epochs": cfg.epochs, "images": len(x), "epoch_s": per_epoch,
            "steady_epoch_s": float(np.mean(per_epoch[1:] if len(per_epoch) > 1 else per_epoch)),
            "predict_10k_s": time.perf_counter() - predict_start}


def speed(epochs: int, quick: bool) -> dict:
    """The default recipe on CUDA and on the CPU, same data and epochs; ratio = CPU time / CUDA time."""
    params = load_params(ROOT / "params" / "default.yaml")
    try:
        data = load_dataset(params.dataset, params.data_dir or None)
    except FileNotFoundError as e:
        return {"status": f"skipped: the default data set is missing ({str(e).splitlines()[0]})"}
    n = 2048 if quick else int(round(params.member_fraction * len(data.train_y)))  # the members' count
    x, y = data.train_x[:n], data.train_y[:n]
    cfg = recipe(params, epochs=epochs)
    shape = (data.in_channels, data.image_size, data.image_size)
    figures = {"status": "ok", "recipe": f"{params.arch}, batch {cfg.batch_size}, {epochs} epochs, {n} images",
               "cpu_threads": torch.get_num_threads(),
               "cpu": _time_training(x, y, cfg, params.arch, shape, data.num_classes, torch.device("cpu"))}
    if not CUDA:
        figures["cuda"] = NO_CUDA
        return figures
    cuda = torch.device("cuda")
    figures["cuda"] = _time_training(x, y, cfg, params.arch, shape, data.num_classes, cuda)
    figures["cpu_over_cuda"] = figures["cpu"]["steady_epoch_s"] / figures["cuda"]["steady_epoch_s"]
    set_deterministic(True, cuda)
    try:
        figures["cuda_deterministic"] = _time_training(x, y, cfg, params.arch, shape, data.num_classes, cuda)
    except RuntimeError as e:  # an op without a deterministic kernel: worth knowing, not a crash
        figures["cuda_deterministic"] = f"FAILED: {e}"
    finally:
        set_deterministic(False, cuda)
    return figures


def fake_cifar10(folder: Path, n_train: int, n_test: int) -> Path:
    """Random images and labels in the CIFAR-10 python-pickle layout (5 train batches, a test batch, meta)."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def write(name: str, n: int) -> None:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))

    for i in range(5):
        write(f"data_batch_{i + 1}", n_train // 5)
    write("test_batch", n_test)
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": n_train // 5}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def resnet18(work: Path, epochs: int, quick: bool) -> dict:
    """Epochs of the paper-scale recipe (ResNet-18, SGD, augmentation, bf16 autocast on CUDA)."""
    device = torch.device("cuda" if CUDA else "cpu")
    if not CUDA and not quick:
        return {"status": NO_CUDA + " (a CPU ResNet-18 epoch on 50 000 images takes too long; --quick runs a tiny one)"}
    n_train = 160 if quick else 50_000
    data = load_dataset("cifar10", fake_cifar10(work / "fake_cifar10", n_train, 100 if quick else 10_000))
    params = load_params(ROOT / "params" / "cifar10_resnet18.yaml")
    # quick: small batches, so that the one-cycle schedule has enough steps to be defined
    cfg = recipe(params, epochs=epochs, **({"batch_size": 32} if quick else {}))
    figures = _time_training(data.train_x, data.train_y, cfg, params.arch, (3, 32, 32), 10, device)
    if CUDA:  # every layer of ResNet-18 must have a deterministic CUDA backward, or this raises
        set_deterministic(True, device)
        try:
            figures["deterministic"] = _time_training(data.train_x, data.train_y, recipe(params, epochs=2),
                                                      params.arch, (3, 32, 32), 10, device)
        except RuntimeError as e:
            figures["deterministic"] = f"FAILED: {e}"
        finally:
            set_deterministic(False, device)
    return {"status": "ok", "device": device.type, "recipe": f"{params.arch}, batch {cfg.batch_size}, augment "
            f"{cfg.augment}, {epochs} epochs on {n_train} random images", **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json (and smoke.log)")
    parser.add_argument("--work", default="/tmp/tmu-gpu-check", help="scratch: fake CIFAR-10, model cache, smoke run")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each timed training run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "cuda": CUDA,
                          "gpu": torch.cuda.get_device_name(0) if CUDA else None, "cpu_count": os.cpu_count()},
              "quick": args.quick}
    steps = [("smoke", lambda: smoke(out, work)), ("speed", lambda: speed(args.epochs, args.quick)),
             ("resnet18", lambda: resnet18(work, args.epochs, args.quick))]
    for name, step in steps:
        print(f"gpu_check: {name} ...", flush=True)
        start = time.perf_counter()
        try:
            report[name] = step()
        except Exception as e:  # noqa: BLE001 - record it and go on: the other parts still measure
            report[name] = {"status": f"FAILED: {type(e).__name__}: {e}"}
        report[name]["step_s"] = time.perf_counter() - start
        print(f"gpu_check: {name}: {report[name]['status']}", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2))  # what is measured survives a timeout
    print(json.dumps(report, indent=2))
    return 1 if any(str(report[n]["status"]).startswith("FAILED") for n, _ in steps) else 0


if __name__ == "__main__":
    sys.exit(main())
