"""The data splits (docs/method.md): members M and holdout H, the forget set D_f ⊂ M under one of three
forget scenarios, the retain set D_r = M \\ D_f, and the twin forget set D_tf ⊂ H with the same
size and class composition as D_f. All seeded and stratified by class."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .params import Params
from .seeds import generator  # separate streams: M_o is reused when only the forget request changes


class SplitError(ValueError):
    """The requested split cannot be made from this data set."""


@dataclass
class Splits:
    """Index tensors (int64). All but `test` index the training split; `test` indexes the test split."""

    members: torch.Tensor
    holdout: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor
    twin_forget: torch.Tensor
    test: torch.Tensor

    def sizes(self) -> dict[str, int]:
        """The `splits` block of results.json."""
        return {"members": len(self.members), "holdout": len(self.holdout), "forget": len(self.forget),
                "retain": len(self.retain), "twin_forget": len(self.twin_forget), "test": len(self.test)}

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Plain dict of tensors, for the cache and for saving with a run."""
        return dict(self.__dict__)


def stratified_subset(labels: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of a `fraction` of each class, drawn at random; sorted."""
    chosen = []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        take = int(round(fraction * len(idx)))
        chosen.append(idx[torch.randperm(len(idx), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def stratified_limit(labels: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of about `limit` samples keeping class proportions (all when limit is 0 or too big)."""
    if limit <= 0 or limit >= len(labels):
        return torch.arange(len(labels))
    return stratified_subset(labels, limit / len(labels), generator)


def _same_composition(pool: torch.Tensor, labels: torch.Tensor, like: torch.Tensor,
                      generator: torch.Generator, allow_fewer: bool = False) -> torch.Tensor:
    """Draw from `pool` as many samples of each class as `like` has (or all there are, if allowed)."""
    chosen = []
    for c, count in zip(*labels[like].unique(return_counts=True)):
        candidates = pool[labels[pool] == c]
        if len(candidates) < count and not allow_fewer:
            raise SplitError(f"the holdout has {len(candidates)} samples of class {int(c)} but the twin forget "
                             f"set needs {int(count)}: lower member_fraction (a larger holdout) or forget_fraction")
        chosen.append(candidates[torch.randperm(len(candidates), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def make_splits(train_y: torch.Tensor, test_y: torch.Tensor, params: Params) -> Splits:
    """Split the training set into M, H, D_f, D_r, D_tf and pick the test set, per docs/method.md."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    if not 0 < params.member_fraction < 1:
        raise SplitError(f"member_fraction must lie in (0, 1); got {params.member_fraction}")
    if not 0 < params.forget_fraction < 1:
        raise SplitError(f"forget_fraction must lie in (0, 1); got {params.forget_fraction}")
    if params.forget_scenario != "random" and not 0 <= params.forget_class < num_classes:
        raise SplitError(f"forget_class {params.forget_class} is out of range: the data set has "
                         f"{num_classes} classes (0..{num_classes - 1})")

    pool = stratified_limit(train_y, params.train_limit, generator(params.seed, "train_limit"))
    in_members = stratified_subset(train_y[pool], params.member_fraction, generator(params.seed, "members"))
    mask = torch.zeros(len(pool), dtype=torch.bool)
    mask[in_members] = True
    members, holdout = pool[mask], pool[~mask]

    g = generator(params.seed, "forget")
    if params.forget_scenario == "random":
        take = int(round(params.forget_fraction * len(members)))
        forget = members[torch.randperm(len(members), generator=g)[:take]]
    else:
        of_class = members[train_y[members] == params.forget_class]
        take = len(of_class) if params.forget_scenario == "class" else int(round(params.forget_fraction * len(of_class)))
        forget = of_class[torch.randperm(len(of_class), generator=g)[:take]]
    if len(forget) == 0:
        raise SplitError(f"the forget set is empty ({params.forget_scenario} scenario, forget_fraction "
                         f"{params.forget_fraction}, {len(members)} members): raise forget_fraction or train_limit")
    forget = forget.sort().values
    retain = members[~torch.isin(members, forget)]
    # Forgetting a whole class: the holdout holds only (1 - member_fraction) of that class, so the
    # twin set takes all of it rather than failing.
    twin_forget = _same_composition(holdout, train_y, forget, generator(params.seed, "twin_forget"),
                                    allow_fewer=params.forget_scenario == "class")
    test = stratified_limit(test_y, params.test_limit, generator(params.seed, "test_limit"))
    return Splits(members, holdout, forget, retain, twin_forget, test)
