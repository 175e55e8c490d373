"""The unlearning methods, one file each, all with the signature `UnlearnTask -> nn.Module`.

`original` (no change) and `retrain` (the gold model) are references the pipeline scores
directly; they are not methods and are not in METHODS. A variant (`tmu_oracle`, or any row a params
file's `variants:` names) is a method here at other knobs, core/variants.py.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

from ..core.variants import row

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

# One TMU, whose variants are knobs (unlearning/tmu.py); a table's other TMU rows are variants
# (core/variants.py), each `tmu` at some knob overrides.
METHODS: dict[str, UnlearnMethod] = {
    "tmu": tmu_unlearn,
    "finetune": finetune,
    "neggrad": neggrad,
    "neggrad_plus": neggrad_plus,
    "random_label": random_label,
    "bad_teacher": bad_teacher,
    "scrub": scrub,
    "salun": salun,
    "l1_sparse": l1_sparse,
}



def unlearn_row(task: UnlearnTask, name: str) -> nn.Module:
    """Run the row `name` (a method, or a variant: a method at some knob overrides) on `task`, at the
    row's params."""
    r = row(task.params, name)
    return METHODS[r.method](dataclasses.replace(task, params=r.params))


__all__ = ["METHODS", "UnlearnMethod", "UnlearnTask", "unlearn_row"]
