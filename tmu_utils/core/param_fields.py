"""Every parameter of a run: one flat dataclass with each field's type, default and one-line doc, and
how a value given as text or YAML is read into a field's type (core/params.py loads and checks them).

The names are shared by `params/*.yaml`, the notebooks' `parameters` cells, papermill's `-p` and
the command line. They stay flat because papermill merges parameter files shallowly.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    twin_match: str = "scratch"  # none | members | scratch: the tuner's M_t as TMU's, matched to M_o, or from scratch
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
    methods: list = field(default_factory=lambda: list(choices.DEFAULT_METHODS))  # rows to score: methods, variants
    variants: dict = field(default_factory=lambda: dict(choices.VARIANTS))  # name -> a method at knob overrides
    unlearn_epochs: int = 3  # epochs of every fine-tuning-based unlearning method
    # The knobs below (and each baseline's): the tuning grids' centres and the values of a method without a
    # row in the fixed-knobs table (docs/tuning.md); first chosen against a gold model at seed 0 (a record).
    unlearn_lr: float = 0.005  # SGD learning rate of the unlearning fine-tune
    unlearn_batch_size: int = 128  # batch size of the unlearning fine-tune
    retain_fraction: float = 0.3  # share of D_r replayed during unlearning (efficiency knob)
    hard_loss: str = "random_label"  # random_label | ascent: how predicted-hard samples are unlearned
    hard_label: str = "runner_up"  # random | runner_up: the wrong label given to hard samples
    # hard_only: the twin criterion's choice among the four (benchmarks/choose_target.py, docs/method.md)
    tmu_target: str = "hard_only"  # hard | soft | margin | hard_only: what tmu fine-tunes D_f towards
    tmu_split: str = "predictor"  # predictor | gold | random | none: where tmu's easy/hard split comes from
    hard_repeat: int = 4  # times each hard sample appears per epoch: its weight in the objective
    noise_std: float = 0.05  # std of Gaussian input noise on easy forget samples (0 disables)
    # TMU's step (docs/method.md, "Step variants"): distill + last_block, the twin problem's choice at seeds
    # never reported (benchmarks/results/step_choice/); then calibrated and perturbed by 0.3, judged per
    # sample on a population at a seed never reported, by a rule written first (step_per_sample_demo/)
    tmu_retain_loss: str = "distill"  # ce | distill: retain rows fitted to their labels, or held to M_o's softmax
    tmu_update: str = "last_block"  # all | head | last_block | bn: the only parameters the step updates
    tmu_calibrate: bool = True  # pull predicted-easy samples to M_o's margins on correct twin forget samples
    tmu_perturb: float = 0.3  # share of the way the trained weights move to a fresh init before the step
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
    # auto is fixed where the fixed_knobs table was tuned for this data set and architecture, else twin
    tuning: str = "auto"  # auto | fixed | twin: each method at its fixed_knobs row, or tuned on the twin problem
    # 6: at the tuning seeds within 0.004 ToW of 8 for all but the hard flip, for 2x a fixed run, not 2.2x
    tune_budget: int = 6  # grid points every method gets when tuning on the twin problem (1 to 16)
    # alignment: ToW x (1 - AD/sqrt 2), which ranked TMU's grid as the real problem did on the twin from
    # scratch; margins: per sample, how far the unlearned twin's margins are from M_o's (docs/tuning.md)
    tuning_criterion: str = "alignment"  # alignment | margins: the score every grid point gets on the twin problem
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
    elif want is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items())
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ParamsError(f"parameter '{key}' must be of type {want.__name__}, got {value!r}")
    return value
