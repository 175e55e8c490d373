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

UnlearnMethod = Callable[[UnlearnTask], nn.Module]

# The TMU variants share one function; the pipeline hands each its easy/hard split (tmu_random_rank:
# the predictor's number of easy samples, chosen at random, a control for the predictor's ranking).
METHODS: dict[str, UnlearnMethod] = {
    "tmu": tmu_unlearn,
    "tmu_oracle": tmu_unlearn,
    "tmu_all_hard": tmu_unlearn,
    "tmu_random_rank": tmu_unlearn,
    "finetune": finetune,
    "neggrad": neggrad,
    "neggrad_plus": neggrad_plus,
    "random_label": random_label,
    "bad_teacher": bad_teacher,
    "scrub": scrub,
    "salun": salun,
    "l1_sparse": l1_sparse,
}
REFERENCES = ("original", "retrain")

__all__ = ["METHODS", "REFERENCES", "UnlearnMethod", "UnlearnTask"]
