"""The unlearning methods, one file each, all with the signature `UnlearnTask -> nn.Module`.

`original` (no change) and `retrain` (the gold model) are references the pipeline scores
directly; they are not methods and are not in METHODS.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .bad_teacher import bad_teacher
from .common import UnlearnTask
from .finetune import finetune
from .l1_sparse import l1_sparse
from .neggrad import neggrad
from .neggrad_plus import neggrad_plus
from .random_label import random_label
from .salun import salun
from .scrub import scrub
from .tmu import tmu_unlearn
from .tmu_step import STEP_VARIANTS, with_step
from .tmu_targets import tmu_by_target, tmu_hard_only, tmu_margin, tmu_rank_control, tmu_soft

UnlearnMethod = Callable[[UnlearnTask], nn.Module]

# The pipeline hands every TMU variant its easy/hard split (tmu_random_rank: the predictor's number of
# easy samples, chosen at random, a control for the predictor's ranking). `tmu` uses the target
# `tmu_target` names; tmu_hard, tmu_soft, tmu_margin and tmu_hard_only force theirs; the ranking controls
# follow tmu's split-based target (tmu_targets.py).
METHODS: dict[str, UnlearnMethod] = {
    "tmu": tmu_by_target,
    "tmu_oracle": tmu_rank_control,
    "tmu_all_hard": tmu_unlearn,
    "tmu_random_rank": tmu_rank_control,
    "tmu_hard": tmu_unlearn,
    "tmu_soft": tmu_soft,
    "tmu_margin": tmu_margin,
    "tmu_hard_only": tmu_hard_only,
    # tmu's target with a step variant's knobs (tmu_step.py)
    **{name: (lambda task, name=name: tmu_by_target(with_step(task, name))) for name in STEP_VARIANTS},
    "finetune": finetune,
    "neggrad": neggrad,
    "neggrad_plus": neggrad_plus,
    "random_label": random_label,
    "bad_teacher": bad_teacher,
    "scrub": scrub,
    "salun": salun,
    "l1_sparse": l1_sparse,
}

__all__ = ["METHODS", "UnlearnMethod", "UnlearnTask"]
