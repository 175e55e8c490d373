"""One replica of a population, and its file: what survives the model cache.

A population's models live in the artefact cache, which a new machine does not have. What the
population's statistics read from a replica is small: each model's margins on the compared
samples, its confidences on D_f, its per-run metrics and times. `save` writes that beside the
population (`<out>/replicas/replica_NN.npz` and `.json`), after every model, so a population
resumes from its folder alone: on another machine, after an interruption, or from a committed
result to which more replicas are added. A file is read back only where it was made under the
same parameters (every field that can change a number, the replica, the device type and the
data's checksum), and only the models it holds are skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import context
from ..core.params import params_hash

# Fields that name, place or display a run, or choose which rows it has: none changes a model's numbers.
NOT_IN_KEY = ("name", "device", "progress", "cache_dir", "out_dir", "sweep_dir", "population_dir", "requests_dir",
              "data_dir", "methods")


@dataclass
class Replica:
    """What one replica contributes: margins per model and set, confidences on D_f, per-run metrics, model times."""

    margins: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> set -> (samples,)
    confidences: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (forget samples,), float32
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # method or "floor" -> metrics vs A
    seconds: dict[str, float] = field(default_factory=dict)


def replica_key(ctx: context.Context) -> str:
    """What a replica file must have been made under to be read back in `ctx`."""
    fields = [f for f in ctx.params.to_dict() if f not in NOT_IN_KEY]
    d = ctx.dataset
    data = d.checksum if d is not None else "no-data"
    return f"{params_hash(ctx.params, fields)}-r{ctx.replica}-{ctx.device.type}-{data}"


def replica_path(out: Path, replica: int) -> Path:
    """The replica's arrays; its metrics and key lie beside them with the suffix .json."""
    return Path(out) / "replicas" / f"replica_{replica:02d}.npz"


def save(out: Path, ctx: context.Context, replica: Replica, env: dict[str, str]) -> None:
    """Write the replica's file (arrays first, then the .json that makes them count)."""
    path = replica_path(out, ctx.replica)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"margins/{m}/{s}": v.astype(np.float32) for m, sets in replica.margins.items() for s, v in sets.items()}
    arrays.update({f"confidence/{m}": v.astype(np.float32) for m, v in replica.confidences.items()})
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    meta = {"key": replica_key(ctx), "replica": ctx.replica, "env": env, "models": sorted(replica.margins),
            "metrics": replica.metrics, "seconds": replica.seconds}
    tmp_json = path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(meta, indent=1, allow_nan=True))
    tmp_json.replace(path.with_suffix(".json"))


def load(out: Path, ctx: context.Context) -> Replica:
    """The replica's saved models, or an empty Replica where there is no file or it was made otherwise."""
    path = replica_path(out, ctx.replica)
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return Replica()
    meta = json.loads(meta_path.read_text())
    if meta.get("key") != replica_key(ctx):
        return Replica()
    with np.load(path) as arrays:
        stored = {k: arrays[k] for k in arrays.files}
    replica = Replica(metrics=meta["metrics"], seconds=meta["seconds"])
    for model in meta["models"]:
        try:
            replica.margins[model] = {s: stored[f"margins/{model}/{s}"] for s in ("forget", "retain", "test")}
            replica.confidences[model] = stored[f"confidence/{model}"]
        except KeyError:  # arrays of an older write than the .json: the model is computed again
            replica.margins.pop(model, None)
            replica.metrics.pop(model, None)
    return replica
