"""A stream of deletion requests (docs/method.md, "Streams of deletion requests"): R disjoint random
subsets of the members in order, their size, and the context of request r, whose D_f is request r and
whose D_r is the members minus requests 1..r. experiments/requests.py runs every method along it.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch

from ..core.context import Context
from ..core.params import Params, ParamsError
from ..core.seeds import generator

# the stream `forget` is the one splits.py draws the random D_f from: with R = 1, request 1 is D_f


def request_size(params: Params, n_members: int, n_requests: int, given: int | None = None) -> int:
    """`given`, else a `forget_fraction / R` share of the members; ParamsError unless R requests fit."""
    size = given if given is not None else int(round(params.forget_fraction * n_members / n_requests))
    if size < 1:
        raise ParamsError(f"a request size of 0: forget_fraction {params.forget_fraction} of {n_members} members "
                          f"split into {n_requests} requests; give --request-size or fewer --requests")
    if n_requests * size >= n_members:
        raise ParamsError(f"{n_requests} requests of {size} samples do not fit in the {n_members} members "
                          "(something must be retained)")
    return size


@dataclass
class Stream:
    """The requests, in order: disjoint, sorted index tensors into the training split."""

    requests: list[torch.Tensor]

    def union(self, r: int) -> torch.Tensor:
        """Requests 1..r together, sorted."""
        return torch.cat(self.requests[:r]).sort().values


def make_stream(ctx: Context, n_requests: int, size: int) -> Stream:
    """R disjoint random requests of `size` members each, seeded by `seed`."""
    members = ctx.splits.members
    order = members[torch.randperm(len(members), generator=generator(ctx.params.seed, "forget"))]
    return Stream([order[i * size:(i + 1) * size].sort().values for i in range(n_requests)])


def _digest(indices: torch.Tensor) -> str:
    return hashlib.sha256(indices.numpy().tobytes()).hexdigest()[:16]


def request_context(ctx: Context, stream: Stream, r: int) -> Context:
    """The context of request r: D_f is request r, D_r the members minus requests 1..r."""
    members = ctx.splits.members
    retain = members[~torch.isin(members, stream.union(r))]
    return dataclasses.replace(ctx, splits=dataclasses.replace(ctx.splits, forget=stream.requests[r - 1], retain=retain))
