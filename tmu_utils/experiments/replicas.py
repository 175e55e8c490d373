"""One replica of a population, and its file: what survives the model cache.

A population's models live in the artefact cache, which a new machine does not have. What the
population's statistics read from a replica is small: each model's margins on the compared
samples, its confidences on D_f, its per-run metrics and times. `save` writes that beside the
population (`<out>/replicas/replica_NN.npz` and `.json`), after every model, so a population
resumes from its folder alone: on another machine, after an interruption, or from a committed
result to which more replicas are added. A file is read back only where it was made under the
same parameters (every field that can change a number, the replica, the device type and the
data's checksum; a field added to the code since must be at its default), and only the models it
holds are skipped. The fields a row may set (a variant's knobs) are checked row by row instead: a
changed TMU step redoes the TMU rows, not the retrains and the baselines, and under `tuning: fixed`
a row whose fixed-knobs entry changed is run again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import context
from ..core.choices import VARIANT_FIELDS
from ..core.params import Params, params_hash
from ..core.variants import row
from ..unlearning.runner import NAMED_FIELDS, TUNER_FIELDS, method_key_fields
from .tuning import fixed_context, ran_knobs, tuning_mode

# Fields that name, place or display a run, or choose which rows it has: none changes a model's numbers.
# `variants` is checked per row instead (`rows`): a built-in row added since changes no saved model.
NOT_IN_KEY = ("name", "device", "progress", "cache_dir", "out_dir", "sweep_dir", "population_dir", "requests_dir",
              "data_dir", "methods", "variants")


@dataclass
class Replica:
    """What one replica contributes: margins per model and set, confidences on D_f, per-run metrics, model times."""

    margins: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> set -> (samples,)
    confidences: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (forget samples,), float32
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # method or "floor" -> metrics vs A
    seconds: dict[str, float] = field(default_factory=dict)


def _key_fields(ctx: context.Context) -> list[str]:
    """The fields a replica file must match; VARIANT_FIELDS are checked per row (rows). Under `tuning: fixed`
    the tuner's own fields (which twin, which score) choose nothing, so a change of their defaults keeps a file."""
    skip = NOT_IN_KEY + VARIANT_FIELDS
    if tuning_mode(ctx.params) == "fixed":
        skip += tuple(f for f in TUNER_FIELDS if f != "tuning")
    return [f for f in ctx.params.to_dict() if f not in skip]


def _where(ctx: context.Context) -> str:
    d = ctx.dataset
    return f"r{ctx.replica}-{ctx.device.type}-{d.checksum if d is not None else 'no-data'}"


def replica_key(ctx: context.Context) -> str:
    """What a replica file was made under, as one string: the parameters' hash, the replica, the device
    type and the data's checksum."""
    return f"{params_hash(ctx.params, _key_fields(ctx))}-{_where(ctx)}"


def made_under(meta: dict, ctx: context.Context) -> bool:
    """Whether a replica file's record matches `ctx`: the same replica, device type and data, and every
    parameter that can change a number equal to the file's, where a parameter the file does not name
    (added to the code since) must be at its default, which by this repository's rule keeps what the
    code did before it existed."""
    stored = meta.get("params")
    if stored is None or not meta.get("key", "").endswith(_where(ctx)):
        return False
    current = json.loads(json.dumps({f: ctx.params.to_dict()[f] for f in _key_fields(ctx)}))
    defaults = json.loads(json.dumps(Params().to_dict()))
    return all(stored[f] == v if f in stored else defaults[f] == v for f, v in current.items())


def row_record(ctx: context.Context, name: str) -> dict | None:
    """What a saved row ran as: its method and the knobs a variant may set (None for the retrains)."""
    if name in ("retrain_a", "retrain_b"):
        return None
    try:
        r = row(ctx.params, name)
    except ValueError:  # a row these parameters no longer define
        return {"method": None}
    knobs = r.params.to_dict()
    return json.loads(json.dumps({"method": r.method, **{f: knobs[f] for f in VARIANT_FIELDS}}))


def _fields_of(record: dict) -> list[str]:
    """The fields of a row record its numbers depend on: the method, and the knobs in its cache key (TMU's
    target, split and step too; the references, `original` and `retrain`, read none)."""
    if record["method"] in (None, "original", "retrain"):
        return ["method"]
    keyed = set(method_key_fields(Params())) | (set(NAMED_FIELDS) if record["method"] == "tmu" else set())
    return ["method", *(f for f in VARIANT_FIELDS if f in keyed)]


def same_row(saved: dict | None, current: dict | None) -> bool:
    """Whether a saved row record computes what the current one does (a field the saved one lacks, added
    since, must be at its default)."""
    if saved is None or current is None:
        return saved == current
    defaults = json.loads(json.dumps(Params().to_dict()))
    return all(saved.get(f, defaults.get(f)) == current[f] for f in _fields_of(current))


def ran_record(ctx: context.Context, name: str) -> dict | None:
    """The knobs the row `name` runs at under `tuning: fixed` (its fixed-knobs entry applied); None under
    twin tuning, whose choice the parameters and the data decide."""
    if name in ("retrain_a", "retrain_b") or tuning_mode(ctx.params) != "fixed":
        return None
    try:
        return json.loads(json.dumps(ran_knobs(fixed_context(ctx, name), name)))
    except ValueError:
        return None


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
    params = {f: ctx.params.to_dict()[f] for f in _key_fields(ctx)}
    meta = {"key": replica_key(ctx), "params": params, "replica": ctx.replica, "env": env,
            "models": sorted(replica.margins), "rows": {m: row_record(ctx, m) for m in sorted(replica.margins)},
            "ran": {m: ran_record(ctx, m) for m in sorted(replica.margins)},
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
    if not made_under(meta, ctx):
        return Replica()
    with np.load(path) as arrays:
        stored = {k: arrays[k] for k in arrays.files}
    replica = Replica(metrics=meta["metrics"], seconds=meta["seconds"])
    saved_rows, saved_ran = meta.get("rows", {}), meta.get("ran", {})
    for model in meta["models"]:
        if (model in saved_rows and not same_row(saved_rows[model], row_record(ctx, model))
                or model in saved_ran and saved_ran[model] != ran_record(ctx, model)):  # the row is another now
            replica.metrics.pop(model, None)
            continue
        try:
            replica.margins[model] = {s: stored[f"margins/{model}/{s}"] for s in ("forget", "retain", "test")}
            replica.confidences[model] = stored[f"confidence/{model}"]
        except KeyError:  # arrays of an older write than the .json: the model is computed again
            replica.margins.pop(model, None)
            replica.metrics.pop(model, None)
    return replica
