"""A run's parameters read and checked: YAML loading, `key=value` overrides, each field's choice and
range, each row of `methods`, and a stable hash. The dataclass itself is core/param_fields.py.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import choices
from .param_fields import FIELD_DOCS, FIELD_TYPES, Params, ParamsError, _coerce, _unknown
from .variants import row

__all__ = ["FIELD_DOCS", "FIELD_TYPES", "Params", "ParamsError", "load_params", "make_params", "params_from_namespace",
           "params_hash", "validate"]


def validate(p: Params) -> Params:
    """Raise ParamsError naming the field for any out-of-range value or impossible combination, in the
    run's own fields and in each variant row's (core/variants.py)."""
    check_fields(p)
    check_rows(p)
    return p


def check_fields(p: Params) -> None:
    """validate's checks of the fields themselves, without the rows."""
    for key, value in p.to_dict().items():
        _coerce(key, value)
    for key, allowed in choices.CHOICES.items():
        if getattr(p, key) not in allowed:
            raise ParamsError(f"parameter '{key}' must be one of {', '.join(allowed)}; got {getattr(p, key)!r}")
    for key in choices.POSITIVE:
        if not getattr(p, key) > 0:
            raise ParamsError(f"parameter '{key}' must be > 0; got {getattr(p, key)!r}")
    for key in choices.NON_NEGATIVE:
        if getattr(p, key) < 0:
            raise ParamsError(f"parameter '{key}' must be >= 0; got {getattr(p, key)!r}")
    for key in choices.OPEN_UNIT:
        if not 0 < getattr(p, key) < 1 and not (key in ("retain_fraction", "salun_sparsity") and getattr(p, key) == 1):
            raise ParamsError(f"parameter '{key}' must lie in (0, 1); got {getattr(p, key)!r}")
    if not 0 <= p.tmu_perturb <= 1:
        raise ParamsError(f"parameter 'tmu_perturb' must lie in [0, 1] (the share of the way to a fresh "
                          f"initialisation); got {p.tmu_perturb!r}")
    if not p.features or any(f not in choices.FEATURES for f in p.features) or len(set(p.features)) != len(p.features):
        raise ParamsError(f"parameter 'features' must be a non-empty subset of {list(choices.FEATURES)}; got {p.features}")
    if "cf" in p.features and p.curriculum_epochs >= p.epochs:
        raise ParamsError("parameter 'curriculum_epochs' must be < 'epochs': the curriculum model is early-stopped")
    if p.threshold != "rate_match":
        try:
            t = float(p.threshold)
        except ValueError:
            raise ParamsError(f"parameter 'threshold' must be a probability or 'rate_match'; got {p.threshold!r}") from None
        if not 0 < t < 1:
            raise ParamsError(f"parameter 'threshold' must lie in (0, 1); got {p.threshold!r}")
    if p.dataset == "imagefolder" and not p.data_dir:
        raise ParamsError("parameter 'data_dir' is required when dataset is 'imagefolder'")
    if p.device not in ("auto", "cpu", "mps") and not p.device.startswith("cuda"):
        raise ParamsError(f"parameter 'device' must be auto, cpu, cuda, cuda:N or mps; got {p.device!r}")
    if p.tune_budget > choices.TUNE_GRID_POINTS:
        raise ParamsError(f"parameter 'tune_budget' must not exceed {choices.TUNE_GRID_POINTS}, the candidate points of every "
                          f"method's tuning grid; got {p.tune_budget}")
    if p.fixed_knobs != "none" and not choices.fixed_knobs_path(p.fixed_knobs).is_file():
        tables = sorted(f.stem for f in choices.FIXED_KNOBS_DIR.glob("*.yaml"))
        raise ParamsError(f"parameter 'fixed_knobs' must be 'none' or one of {tables}; got {p.fixed_knobs!r}")
    bad = [k for k in p.pinned if k not in choices.TUNABLE_KNOBS]
    if bad:
        raise ParamsError(f"parameter 'pinned': '{bad[0]}' is no knob that tuning or the fixed-knobs table sets; "
                          f"those are {', '.join(choices.TUNABLE_KNOBS)}")
    if p.knn_k > p.bank_per_class:
        raise ParamsError("parameter 'knn_k' must not exceed 'bank_per_class'")


def check_rows(p: Params) -> None:
    """Every variant's overrides are fields a variant may change, with valid values; every row in
    `methods` is a registered method or a variant."""
    for name in p.variants:
        try:
            check_fields(row(p, name).params)
        except ParamsError as e:
            raise ParamsError(f"variant '{name}': {e}") from None
    bad = [m for m in p.methods if m not in choices.UNLEARNING_METHODS and m not in p.variants]
    if bad:
        known = [*choices.UNLEARNING_METHODS, *p.variants]
        close = difflib.get_close_matches(bad[0], known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ParamsError(f"parameter 'methods': '{bad[0]}' is neither a method nor a variant{hint}")


def make_params(values: dict[str, Any] | None = None, overrides: Iterable[str] = ()) -> Params:
    """Build and validate Params from a dict of values plus `key=value` override strings."""
    merged = dict(values or {})
    given = []
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        merged[key.strip()] = raw
        given.append(key.strip())
    # a knob set by an override is pinned: neither the fixed-knobs table nor twin tuning replaces it
    knobs_given = [k for k in given if k in choices.TUNABLE_KNOBS]
    if knobs_given:
        pinned = _coerce("pinned", merged.get("pinned", []))
        merged["pinned"] = list(dict.fromkeys([*pinned, *knobs_given]))
    kwargs = {key: _coerce(key, value) for key, value in merged.items()}
    if "variants" in kwargs:  # a params file's rows add to the built-in ones
        kwargs["variants"] = {**choices.VARIANTS, **kwargs["variants"]}
    return validate(Params(**kwargs))


def load_params(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Params:
    """Load a params YAML file (or only defaults when `path` is None) and apply `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ParamsError(f"params file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:  # one line naming the file and the line, not a traceback
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise ParamsError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
        if not isinstance(values, dict):
            raise ParamsError(f"{path}: expected a mapping of parameter names to values")
        try:
            return make_params(values, overrides)
        except ParamsError as e:
            raise ParamsError(f"{path}: {e}") from None
    return make_params(values, overrides)


def params_hash(params: Params, fields: Iterable[str]) -> str:
    """A stable 16-hex-digit hash of the chosen fields' values: the cache key of an artefact."""
    d = params.to_dict()
    chosen = {}
    for f in sorted(set(fields)):
        if f not in d:
            raise _unknown(f)
        chosen[f] = d[f]
    blob = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def params_from_namespace(namespace: dict[str, Any]) -> Params:
    """Params from the names a notebook's `parameters` cell defined (others keep their defaults)."""
    return make_params({k: v for k, v in namespace.items() if k in FIELD_TYPES})
