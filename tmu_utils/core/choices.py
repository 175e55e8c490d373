"""The values a parameter may take: the registered architectures, features, scenarios and methods,
where the fixed-knobs tables live, and the choices and ranges `params.validate` checks.
"""
from __future__ import annotations

from pathlib import Path

ARCHS = ("small_cnn", "mlp", "resnet18", "resnet9")
FEATURES = ("df", "af", "cf")
FORGET_SCENARIOS = ("random", "class_subset", "class")
UNLEARNING_METHODS = (
    "original", "retrain", "tmu", "tmu_oracle", "tmu_all_hard", "tmu_random_rank", "tmu_hard", "tmu_soft",
    "tmu_margin", "tmu_hard_only",
    # the step variants (unlearning/tmu_step.py): tmu's target with one step knob (or two) forced
    "tmu_reference", "tmu_distill", "tmu_head", "tmu_last_block", "tmu_bn", "tmu_calibrated", "tmu_distill_calibrated",
    "tmu_distill_last_block",
    "finetune", "neggrad", "neggrad_plus", "random_label", "bad_teacher", "scrub", "salun", "l1_sparse",
)
# What a run scores by default: every method but the target variants other than the paper's hard flip
# (tmu_hard): `tmu` computes tmu_hard_only at the default target, and tmu_soft and tmu_margin, the
# variants the twin criterion ranked below it, are compared in the population benchmark (docs/method.md).
# The step variants are compared there too, not in every run.
DEFAULT_METHODS = tuple(m for m in UNLEARNING_METHODS if m not in ("tmu_soft", "tmu_margin", "tmu_hard_only")
                        and not m.startswith(("tmu_reference", "tmu_distill", "tmu_head", "tmu_last_block", "tmu_bn",
                                               "tmu_calibrated")))
FIXED_KNOBS_DIR = Path(__file__).resolve().parent.parent / "fixed_knobs"  # the tables `fixed_knobs` names


def fixed_knobs_path(name: str) -> Path:
    """The file of the fixed-knobs table `name` (the one place that knows where the tables live)."""
    return FIXED_KNOBS_DIR / f"{name}.yaml"


# Every Params field some method's tuning grid (experiments/tuning_grids.py) varies, which a fixed-knobs
# row may set and `pinned` may hold; tuning_grids checks that its grids vary no other field.
TUNABLE_KNOBS = ("unlearn_lr", "hard_repeat", "unlearn_epochs", "neggrad_lr", "neggrad_plus_alpha",
                 "bad_teacher_temperature", "scrub_lr", "scrub_max_epochs", "salun_sparsity", "l1_sparse_alpha")
TUNE_GRID_POINTS = 16  # candidate points of every method's tuning grid (tuning_grids.py): tune_budget's ceiling


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
    "tmu_retain_loss": ("ce", "distill"),
    "tmu_update": ("all", "head", "last_block", "bn"),
    "tuning_criterion": ("alignment", "margins"),
    "twin_forget": ("matched", "independent"),
    "tuning": ("auto", "fixed", "twin"),
    "twin_match": ("none", "members"),
}
POSITIVE = ("epochs", "batch_size", "lr", "twin_lr", "knn_k", "bank_per_class", "predictor_epochs",
             "predictor_lr", "unlearn_epochs", "unlearn_lr", "unlearn_batch_size", "hard_repeat",
             "image_size", "neggrad_lr", "scrub_lr", "bad_teacher_temperature", "scrub_temperature",
             "mia_max_per_side", "curriculum_epochs", "tune_budget", "twin_max_epochs")
NON_NEGATIVE = ("seed", "train_limit", "test_limit", "weight_decay", "momentum", "twin_epochs",
                 "adv_steps", "adv_eps", "noise_std", "neggrad_plus_alpha", "scrub_max_epochs",
                 "scrub_alpha", "scrub_gamma", "l1_sparse_alpha", "forget_class")
OPEN_UNIT = ("member_fraction", "forget_fraction", "retain_fraction", "salun_sparsity")
