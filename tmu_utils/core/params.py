"""Every parameter of a run: one flat dataclass, YAML loading, `key=value` overrides, a stable hash.

The names are shared by `params/*.yaml`, the notebooks' `parameters` cells, papermill's `-p` and
the command line. They stay flat because papermill merges parameter files shallowly.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import choices

class ParamsError(ValueError):
    """A parameter is unknown, of the wrong type, out of range, or inconsistent with another."""


@dataclass
class Params:
    """All knobs of one TMU run (docs/method.md). Each field: type, default, one-line doc."""

    # --- run ---
    name: str = "default"  # run name: results go to runs/<name>/<seed>/
    seed: int = 0  # seeds splits, initialisation, batches and attacks
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (auto picks CUDA when present)
    deterministic: bool = False  # deterministic cuDNN/cuBLAS/torch kernels: repeatable GPU runs, slower
    progress: bool = True  # show tqdm progress bars
    cache_dir: str = ""  # artefact cache; empty means $TMU_CACHE_DIR or ~/.cache/tmu/artifacts
    out_dir: str = ""  # this run's folder (results.json, figures); empty means runs/<name>/<seed>
    sweep_dir: str = ""  # folder of runs that 06_sweep_report summarises; empty means runs/<name>
    population_dir: str = ""  # population folder that 07 reads; empty means the committed benchmark
    requests_dir: str = ""  # requests folder that 08 reads; empty means the committed benchmark
    # --- data (docs/method.md: data splits) ---
    dataset: str = "fashion_mnist"  # fashion_mnist | mnist | cifar10 | cifar100 | cifar20 | imagefolder
    data_dir: str = ""  # folder holding the data set; empty means the usual places
    image_size: int = 64  # side length images are resized to (imagefolder only)
    train_limit: int = 0  # use a stratified subsample of this many training images (0 = all)
    test_limit: int = 0  # use a stratified subsample of this many test images (0 = all)
    member_fraction: float = 0.8  # share of the training split that the original model trains on
    forget_scenario: str = "random"  # random | class_subset | class
    forget_fraction: float = 0.1  # share of the members (random) or of one class's members (class_subset)
    forget_class: int = 0  # the class used by the class scenarios
    # --- models and training (docs/method.md: seeds) ---
    arch: str = "small_cnn"  # small_cnn | mlp | resnet18 | resnet9 (a compact residual CNN for CPU-scale CIFAR-10)
    epochs: int = 20  # epochs for the original and gold models
    batch_size: int = 256  # training batch size
    optimizer: str = "adam"  # adam | sgd: the optimiser of the training recipe
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0  # L2 weight decay
    schedule: str = "onecycle"  # onecycle | cosine | constant
    augment: bool = False  # random crop and horizontal flip (CIFAR-style)
    # --- twin problem (docs/method.md: the twin problem) ---
    twin_epochs: int = 2  # epochs fine-tuning M_o on M ∪ D_tf to get the twin original M_t
    twin_lr: float = 5e-4  # peak learning rate of that fine-tune
    twin_match: str = "members"  # none | members: the tuner's M_t is fine-tuned until it knows D_tf as M_o knows M
    twin_max_epochs: int = 12  # at most this many epochs of that matched fine-tune
    twin_forget: str = "matched"  # matched | independent: D_tf like D_f, or drawn once per M_o for any request
    curriculum_epochs: int = 2  # epochs of the early-stopped curriculum model M_c
    # --- generalization-label features (docs/method.md: features) ---
    features: list = field(default_factory=lambda: ["df", "af", "cf"])  # subset of df, af, cf
    knn_k: int = 5  # neighbours averaged in the distance feature DF
    bank_per_class: int = 500  # retain samples per class in the DF bank
    adv_steps: int = 5  # PGD steps of the adversarial feature AF
    adv_eps: float = 0.03  # L-inf PGD radius in [0,1] pixel space; step is adv_eps/3
    feature_scaling: str = "per_set"  # per_set | twin: where the robust scaling statistics come from
    # --- generalization-label predictor (docs/method.md: the predictor) ---
    predictor_epochs: int = 200  # full-batch Adam epochs of the MLP predictor
    predictor_lr: float = 1e-2  # Adam learning rate of the predictor
    threshold: str = "rate_match"  # 0.5 (or any probability) | rate_match
    cv_folds: int = 5  # folds of the twin cross-validated accuracy
    # --- unlearning (docs/method.md: unlearning) ---
    methods: list = field(default_factory=lambda: list(choices.DEFAULT_METHODS))  # methods to run and score
    unlearn_epochs: int = 3  # epochs of every fine-tuning-based unlearning method
    # The shared unlearning knobs below (and each baseline's) are the centres of the tuning grids and
    # the values of a method without a row in the fixed-knobs table (`fixed_knobs`, docs/tuning.md).
    # They were first chosen against a gold model at seed 0 (benchmarks/*_defaults.py, a record).
    unlearn_lr: float = 0.005  # SGD learning rate of the unlearning fine-tune
    unlearn_batch_size: int = 128  # batch size of the unlearning fine-tune
    retain_fraction: float = 0.3  # share of D_r replayed during unlearning (efficiency knob)
    hard_loss: str = "random_label"  # random_label | ascent: how predicted-hard samples are unlearned
    hard_label: str = "runner_up"  # random | runner_up: the wrong label given to hard samples
    # hard_only: the twin criterion's choice among the four (benchmarks/choose_target.py, docs/method.md)
    tmu_target: str = "hard_only"  # hard | soft | margin | hard_only: what tmu fine-tunes D_f towards
    hard_repeat: int = 4  # times each hard sample appears per epoch: its weight in the objective
    noise_std: float = 0.05  # std of Gaussian input noise on easy forget samples (0 disables)
    # TMU's step (docs/method.md, "Step variants"; unlearning/tmu_step.py): how the fine-tune moves the model.
    # distill + last_block: the twin problem's choice at seeds never reported, by a rule written before
    # any population ran (benchmarks/results/step_choice/); the reference step is ce + all
    tmu_retain_loss: str = "distill"  # ce | distill: retain rows fitted to their labels, or held to M_o's softmax
    tmu_update: str = "last_block"  # all | head | last_block | bn: the only parameters the step updates
    tmu_calibrate: bool = False  # pull predicted-easy samples to M_o's margins on correct twin forget samples
    # --- baselines (docs/method.md: unlearning); each field is prefixed with its method ---
    neggrad_lr: float = 1.5e-4  # ascent learning rate of neggrad
    neggrad_plus_alpha: float = 0.5  # weight of forget ascent against retain descent
    bad_teacher_temperature: float = 1.0  # distillation temperature of bad_teacher
    scrub_lr: float = 0.002  # SGD learning rate of SCRUB (its max-steps diverge at unlearn_lr)
    scrub_max_epochs: int = 2  # epochs with forget max-steps (then only min-steps)
    scrub_alpha: float = 1.0  # weight of the KL term in SCRUB's min-step
    scrub_gamma: float = 0.1  # weight of the retain CE term in SCRUB's min-step
    scrub_temperature: float = 4.0  # SCRUB distillation temperature
    salun_sparsity: float = 0.5  # share of weights kept trainable by SalUn's saliency mask
    l1_sparse_alpha: float = 5e-4  # initial L1 penalty of l1_sparse, decays linearly to 0
    # --- tuning (docs/tuning.md) ---
    # auto is fixed on every data set: on natural images twin tuning chose too short a step (docs/tuning.md)
    tuning: str = "auto"  # auto | fixed | twin: each method at its fixed_knobs row, or tuned on the twin problem
    # 6: at the tuning seeds within 0.004 ToW of 8 for all but the hard flip, for 2x a fixed run, not 2.2x
    tune_budget: int = 6  # grid points every method gets when tuning on the twin problem (1 to 16)
    # alignment: ToW x (1 - AD/sqrt 2); margins: per sample, how far the unlearned twin's margins are from
    # M_o's on D_tf and on members (docs/tuning.md)
    # margins: the same rule's choice (its choice kept the twin ToW of the alignment criterion's)
    tuning_criterion: str = "margins"  # alignment | margins: the score every grid point gets on the twin problem
    fixed_knobs: str = "default"  # none | a table of tmu_utils/fixed_knobs/: each method's own knobs at tuning fixed
    # `--set hard_repeat=8` or a sweep's grid point adds its knob: an explicit value runs as given (docs/tuning.md)
    pinned: list = field(default_factory=list)  # knobs kept as given: the fixed-knobs table and twin tuning leave them
    # --- evaluation (docs/method.md: single-run metrics) ---
    mia_max_per_side: int = 5000  # samples per side for the membership-inference attack

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (JSON- and YAML-ready)."""
        return dataclasses.asdict(self)


def _field_docs() -> dict[str, str]:
    """Read each field's trailing comment from this file, so docs live next to defaults."""
    docs = {}
    for line in Path(__file__).read_text().splitlines():
        stripped = line.strip()
        if ":" in stripped and "#" in stripped and not stripped.startswith(("#", "def", "class")):
            name = stripped.split(":", 1)[0]
            if name.isidentifier() and name in {f.name for f in dataclasses.fields(Params)}:
                docs[name] = stripped.rsplit("  # ", 1)[-1]
    return docs


FIELD_DOCS: dict[str, str] = _field_docs()  # each field's one-line doc, shown by --help
FIELD_TYPES: dict[str, type] = {f.name: typing.get_type_hints(Params)[f.name] for f in dataclasses.fields(Params)}


def _unknown(key: str) -> ParamsError:
    close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ParamsError(f"unknown parameter '{key}'{hint}")


def _coerce(key: str, value: Any) -> Any:
    """Check (and, from strings, parse) one value against its field's type."""
    if key not in FIELD_TYPES:
        raise _unknown(key)
    want = FIELD_TYPES[key]
    if key == "threshold" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # YAML reads `threshold: 0.5` as a number
    if isinstance(value, str) and want is str and value[:1] in ("'", '"'):
        try:
            value = str(yaml.safe_load(value))  # a quoted override such as threshold='0.5'
        except yaml.YAMLError:
            pass
    if isinstance(value, str) and want is float:
        try:
            value = float(value)  # YAML 1.1 reads "5e-05" (no dot) as a string
        except ValueError:
            pass
    if isinstance(value, str) and want is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ParamsError(f"parameter '{key}': cannot parse {value!r}: {e}") from None
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif want is list:
        value = [value] if isinstance(value, str) else value
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ParamsError(f"parameter '{key}' must be of type {want.__name__}, got {value!r}")
    return value


def validate(p: Params) -> Params:
    """Raise ParamsError naming the field for any out-of-range value or impossible combination."""
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
    if not p.features or any(f not in choices.FEATURES for f in p.features) or len(set(p.features)) != len(p.features):
        raise ParamsError(f"parameter 'features' must be a non-empty subset of {list(choices.FEATURES)}; got {p.features}")
    if "cf" in p.features and p.curriculum_epochs >= p.epochs:
        raise ParamsError("parameter 'curriculum_epochs' must be < 'epochs': the curriculum model is early-stopped")
    bad = [m for m in p.methods if m not in choices.UNLEARNING_METHODS]
    if bad:
        close = difflib.get_close_matches(bad[0], choices.UNLEARNING_METHODS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ParamsError(f"parameter 'methods': unknown method '{bad[0]}'{hint}")
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
    return p


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
