"""Named random streams (docs/method.md, "Seeds"). Every seeded draw that is not a model's own training
comes from `generator(seed, stream)`: the stream's name says what the draw is for, a new draw takes a
new name, and no existing draw changes. Each name keeps the number its draw has always used, so no
split, subsample or unlearning run made before the names existed changed.
"""
from __future__ import annotations

import torch

SPLIT = 1_000_003  # the splits' streams: the members never depend on the forget request
SALT = 7919  # a run's other draws, from the split seed or the unlearning seed

# stream -> (multiplier, offset): the generator is seeded with seed · multiplier + offset
STREAMS: dict[str, tuple[int, int]] = {
    # core/splits.py, from the split seed
    "train_limit": (SPLIT, 0), "members": (SPLIT, 1), "forget": (SPLIT, 2), "twin_forget": (SPLIT, 3),
    "test_limit": (SPLIT, 4),
    "independent_twin_forget": (SPLIT, 5),  # method/amortised.py: D_tf drawn once per M_o, for any request
    # each unlearning method's own draws (retain subsample, wrong labels, batches), from the unlearning seed
    "tmu/hard": (SALT, 1), "tmu/soft": (SALT, 2), "tmu/margin": (SALT, 3), "finetune": (SALT, 11),
    "neggrad": (SALT, 12), "neggrad_plus": (SALT, 13), "random_label": (SALT, 14), "bad_teacher": (SALT, 15),
    "scrub": (SALT, 16), "salun": (SALT, 17), "l1_sparse": (SALT, 18),
    # the split `tmu_split: random`, from the unlearning seed; it shares salun's number, which no control
    # recorded before the names could change
    "random_rank": (SALT, 17),
    # the twin problem's scoring subsamples and the margin target's unseen samples, from the split seed
    "twin_eval/retain": (SALT, 23), "twin_eval/test": (SALT, 29), "twin_unseen": (SALT, 31),
    "population/subsets": (SALT, 99),  # a population's retain and test samples, from the split seed
    "df_bank": (31, 7),  # the distance feature's bank of retain samples per class
}


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for the draws of `stream` under `seed`."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; the streams are {', '.join(STREAMS)}")
    multiplier, offset = STREAMS[stream]
    return torch.Generator().manual_seed(seed * multiplier + offset)
