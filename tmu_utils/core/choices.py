"""The values a parameter may take: the registered architectures, features, scenarios and methods,
the built-in variant rows, where the fixed-knobs tables live, and the choices and ranges `params.validate` checks.
"""
from __future__ import annotations

from pathlib import Path

ARCHS = ("small_cnn", "mlp", "resnet18", "resnet9")
FEATURES = ("df", "af", "cf")
FORGET_SCENARIOS = ("random", "class_subset", "class")
# The registered methods (unlearning/__init__.py) and the two references a run scores as they are.
UNLEARNING_METHODS = ("original", "retrain", "tmu", "finetune", "neggrad", "neggrad_plus", "random_label",
                      "bad_teacher", "scrub", "salun", "l1_sparse")
# TMU's reference step: retain rows fitted to their labels, every weight updated, no calibration.
REFERENCE_STEP = {"tmu_retain_loss": "ce", "tmu_update": "all", "tmu_calibrate": False, "tmu_perturb": 0.0}
# Built-in rows (docs/method.md, "Variants"): each is `tmu` at some knob overrides; a params file's
# `variants:` adds its own (or replaces one of these) with one line each. The controls hand TMU another
# easy/hard split; the target rows force a target; the step rows a step (the others at REFERENCE_STEP).
VARIANTS: dict[str, dict] = {
    "tmu_oracle": {"tmu_split": "gold"},  # the gold model's split: an upper bound, not a method
    "tmu_random_rank": {"tmu_split": "random"},  # as many easy samples as predicted, chosen at random
    "tmu_all_hard": {"tmu_split": "none"},  # no sample easy: the conventional "unlearn all of D_f"
    "tmu_hard": {"tmu_target": "hard"},
    "tmu_soft": {"tmu_target": "soft"},
    "tmu_margin": {"tmu_target": "margin"},
    "tmu_hard_only": {"tmu_target": "hard_only"},
    "tmu_reference": dict(REFERENCE_STEP),
    "tmu_distill": {**REFERENCE_STEP, "tmu_retain_loss": "distill"},
    "tmu_head": {**REFERENCE_STEP, "tmu_update": "head"},
    "tmu_last_block": {**REFERENCE_STEP, "tmu_update": "last_block"},
    "tmu_bn": {**REFERENCE_STEP, "tmu_update": "bn"},
    "tmu_calibrated": {**REFERENCE_STEP, "tmu_calibrate": True},
    "tmu_distill_calibrated": {**REFERENCE_STEP, "tmu_retain_loss": "distill", "tmu_calibrate": True},
    "tmu_distill_last_block": {**REFERENCE_STEP, "tmu_retain_loss": "distill", "tmu_update": "last_block"},
}
# What a run scores by default: TMU, its controls, the paper's hard flip, and every baseline. The other
# target and step rows are compared in the population benchmark (docs/method.md), not in every run.
DEFAULT_METHODS = ("original", "retrain", "tmu", "tmu_oracle", "tmu_all_hard", "tmu_random_rank", "tmu_hard",
                   "finetune", "neggrad", "neggrad_plus", "random_label", "bad_teacher", "scrub", "salun", "l1_sparse")
# The fields a variant may override: those of the unlearning step and the baselines. A row shares the
# run's data, models, twin problem and predictor, so it can change only what happens after them.
VARIANT_FIELDS = ("unlearn_epochs", "unlearn_lr", "unlearn_batch_size", "retain_fraction", "hard_loss", "hard_label",
                  "tmu_target", "tmu_split", "hard_repeat", "noise_std", "tmu_retain_loss", "tmu_update",
                  "tmu_calibrate", "tmu_perturb", "neggrad_lr", "neggrad_plus_alpha", "bad_teacher_temperature", "scrub_lr",
                  "scrub_max_epochs", "scrub_alpha", "scrub_gamma", "scrub_temperature", "salun_sparsity",
                  "l1_sparse_alpha")
FIXED_KNOBS_DIR = Path(__file__).resolve().parent.parent / "fixed_knobs"  # the tables `fixed_knobs` names


def fixed_knobs_path(name: str) -> Path:
    """The file of the fixed-knobs table `name` (the one place that knows where the tables live)."""
    return FIXED_KNOBS_DIR / f"{name}.yaml"


# Every Params field some method's tuning grid (experiments/tuning/grids.py) varies, which a fixed-knobs
# row may set and `pinned` may hold; tuning.grids checks that its grids vary no other field.
TUNABLE_KNOBS = ("unlearn_lr", "hard_repeat", "unlearn_epochs", "neggrad_lr", "neggrad_plus_alpha",
                 "bad_teacher_temperature", "scrub_lr", "scrub_max_epochs", "salun_sparsity", "l1_sparse_alpha")
TUNE_GRID_POINTS = 16  # candidate points of every method's tuning grid (tuning/grids.py): tune_budget's ceiling


CHOICES = {
    "dataset": ("fashion_mnist", "mnist", "cifar10", "cifar100", "cifar20", "imagefolder"),
    "forget_scenario": FORGET_SCENARIOS,
    "arch": ARCHS,
    "optimizer": ("adam", "sgd"),
    "schedule": ("onecycle", "cosine", "constant"),
    "feature_scaling": ("per_set", "twin"),
    "hard_loss": ("random_label", "ascent"),
    "hard_label": ("random", "runner_up"),
    "tmu_target": ("hard", "soft", "margin", "hard_only"),
    "tmu_split": ("predictor", "gold", "random", "none"),
    "tmu_retain_loss": ("ce", "distill"),
    "tmu_update": ("all", "head", "last_block", "bn"),
    "tuning_criterion": ("alignment", "margins"),
    "twin_forget": ("matched", "independent"),
    "tuning": ("auto", "fixed", "twin"),
    "twin_match": ("none", "members", "scratch"),
}
POSITIVE = ("epochs", "batch_size", "lr", "twin_lr", "knn_k", "bank_per_class", "predictor_epochs",
             "predictor_lr", "unlearn_epochs", "unlearn_lr", "unlearn_batch_size", "hard_repeat",
             "image_size", "neggrad_lr", "scrub_lr", "bad_teacher_temperature", "scrub_temperature",
             "mia_max_per_side", "curriculum_epochs", "tune_budget", "twin_max_epochs")
NON_NEGATIVE = ("seed", "train_limit", "test_limit", "weight_decay", "momentum", "twin_epochs",
                 "adv_steps", "adv_eps", "noise_std", "neggrad_plus_alpha", "scrub_max_epochs",
                 "scrub_alpha", "scrub_gamma", "l1_sparse_alpha", "forget_class")
OPEN_UNIT = ("member_fraction", "forget_fraction", "retain_fraction", "salun_sparsity")
