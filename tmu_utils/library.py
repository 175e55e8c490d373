"""TMU as a library, on a model and data the package has never seen (docs/api.md).

- `build_one_off(original, make_model, members, holdout)`: TMU's twin problem, built once per original
  model: M_t, the curriculum model M_c, the twin features and the fitted predictor, as a `OneOff` that
  saves and loads as tensors only.
- `unlearn(original, retain, forget, one_off, method="tmu")`: one request; the baselines go through
  the same call (`method="finetune"`, ...) and need no one-off.
- `challenge.unlearning(net, retain_loader, forget_loader, val_loader)` (tmu_utils/challenge.py): the
  NeurIPS 2023 Machine Unlearning Challenge's entry point on top of these, the validation set as holdout.

Data are map-style `torch.utils.data.Dataset`s of `(image, label)`, images as float tensors in [0, 1]
(what torchvision's ToTensor gives), uint8, or normalised by `Normalize(mean, std)` when both calls are
given `normalization=(mean, std)`. They are read through DataLoaders in batches. The computation is
method/amortised.py's, which the pipeline runs too; nothing here reads a gold model.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from .core.context import model_seeds
from .core.input_range import InputRange, range_problem, same_range
from .core.models import Penultimate
from .core.params import Params, ParamsError, make_params
from .core.splits import SplitError
from .core.streaming import DatasetImages, read_labels
from .core.training import resolve_device, seed_everything, to_input
from .experiments.tuning import fixed_table
from .method import amortised
from .method.amortised import OneOff
from .method.predictor import PredictorOutput
from .core.choices import VARIANTS
from .core.variants import Row, row
from .experiments.tuning import tuned_as
from .unlearning import METHODS, UnlearnTask
from .unlearning.runner import stored_name
from .unlearning.tmu_step import step_parameters

# The methods and the built-in rows a user may name. TMU at `tmu_split` gold (tmu_oracle) needs the gold
# labels and at random (tmu_random_rank) a run's random ranking: neither is a user's to give.
USER_SPLITS = ("predictor", "none")
LIBRARY_METHODS = (*METHODS, *(n for n, o in VARIANTS.items() if o.get("tmu_split", "predictor") in USER_SPLITS))


Normalization = tuple[Sequence[float], Sequence[float]]


class LibraryError(ValueError):
    """An input the library cannot work with; the message says what is wrong, in one line."""


class TwinSizeWarning(UserWarning):
    """The twin forget set is smaller than the forget set, so the twin easy rate is a wider estimate."""


def _params(knobs: dict) -> Params:
    try:
        return make_params(knobs)
    except ParamsError as e:
        raise LibraryError(str(e)) from None


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(str(device))


def _positions(dataset: Dataset) -> tuple[int, torch.Tensor] | None:
    """(identity of the data set under it, the indices into it) for a Subset, else None."""
    if isinstance(dataset, Subset):
        return id(dataset.dataset), torch.as_tensor(list(dataset.indices), dtype=torch.long)
    return None


def input_range(normalization: Normalization | None, channels: int) -> InputRange | None:
    """Where images normalised by `normalization` live (None: [0, 1] pixels), refused when malformed."""
    if normalization is None:
        return None
    try:
        mean, std = normalization
        return InputRange.from_normalization(mean, std, channels)
    except (TypeError, ValueError) as e:
        raise LibraryError(f"normalization must be (mean, std), one value or one per channel: {e}") from None


def _check_range(x: torch.Tensor, name: str, where: InputRange | None) -> None:
    problem = range_problem(x, name, where)
    if problem:
        raise LibraryError(problem)


def _num_classes(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, device: torch.device, name: str) -> int:
    """The model's output width, refused when some label of `name` has no output."""
    with torch.no_grad():
        width = model.to(device).eval()(to_input(x[:2], device)).shape[1]
    if len(labels) and int(labels.max()) >= width:
        raise LibraryError(f"the model has {width} outputs but the {name} has label {int(labels.max())}: its "
                           "output width must be the number of classes")
    return width


def build_one_off(original: nn.Module, make_model: Callable[[], nn.Module] | None, members: Dataset,
                  holdout: Dataset, *, device: str | torch.device = "auto", seed: int = 0, batch_size: int = 256,
                  num_workers: int = 0, normalization: Normalization | None = None, **knobs) -> OneOff:
    """TMU's one-off for `original`, trained on `members`: D_tf drawn from `holdout` (which `original`
    never saw), M_t, M_c (`make_model()` trained `curriculum_epochs` with the recipe), the twin features
    and the predictor. `normalization=(mean, std)`: the images went through `Normalize(mean, std)`.
    `knobs` are Params fields; docs/api.md lists those that matter here."""
    params, device = _params(knobs), _device(device)
    if len(members) == 0:
        raise LibraryError("the member set is empty")
    if len(holdout) == 0:
        raise LibraryError("the holdout is empty: the twin problem needs samples the original never saw")
    if make_model is None and "cf" in params.features:
        raise LibraryError("the curriculum feature needs make_model (a fresh, untrained model of the architecture): "
                           "give it, or features=['df', 'af']")
    _check_disjoint(members, holdout, "holdout", "member set")
    images = DatasetImages(ConcatDataset([members, holdout]), batch_size, num_workers)
    labels = read_labels(images.dataset, batch_size, num_workers)
    member_idx, holdout_idx = torch.arange(len(members)), torch.arange(len(members), len(images))
    first = images[holdout_idx[:2]]
    _num_classes(original, first, labels, device, "member set or holdout")
    where = input_range(normalization, first.shape[1])
    try:
        twin_forget = amortised.draw_twin_forget(labels, member_idx, holdout_idx, params.forget_fraction, seed)
    except SplitError:
        raise LibraryError(f"the holdout ({len(holdout)} samples) is smaller than the twin forget set it must supply "
                           f"(forget_fraction {params.forget_fraction} of {len(members)} members): give a larger "
                           "holdout or a smaller forget_fraction") from None
    twin_forget_x = images[twin_forget]
    _check_range(twin_forget_x, "holdout", where)
    check_bank(params, labels[twin_forget], labels[member_idx], "member set")
    seeds = model_seeds(seed)
    idx = torch.cat([member_idx, twin_forget])
    twin_x, twin_y = images.subset(idx), labels[idx]
    wrapped = Penultimate(original) if "df" in params.features else original
    twin, twin_meta = amortised.fit_twin(wrapped, twin_x, twin_y, params, device, seeds["twin"])
    curriculum, cur_meta = None, {"seconds": 0.0}
    if "cf" in params.features:
        curriculum, cur_meta = amortised.fit_curriculum(make_model, twin_x, twin_y, params, device,
                                                        seeds["curriculum"])
    bank = member_idx[amortised.class_bank(labels[member_idx], params.bank_per_class, params.seed)]
    payload, meta = amortised.fit_on_twin(original, twin, curriculum, twin_forget_x, labels[twin_forget],
                                          images[bank], labels[bank], params, device, seeds["unlearning"],
                                          names=list(params.features), input_range=where)
    one = amortised.assemble(payload, meta, curriculum, twin_meta, cur_meta, params, len(holdout))
    at = _positions(members)
    one.member_indices, one.input_range = (at[1] if at else None), where
    return one


def check_bank(params: Params, query_y: torch.Tensor, bank_y: torch.Tensor, bank_name: str) -> None:
    """Refuse, before any training, a DF bank (drawn from `bank_name`) with fewer than knn_k samples of a
    class the query holds."""
    if "df" not in params.features or len(query_y) == 0:
        return
    counts = torch.bincount(bank_y, minlength=int(query_y.max()) + 1)[query_y.unique()]
    if bool((counts < params.knn_k).any()):
        c = int(query_y.unique()[counts.argmin()])
        raise LibraryError(f"the {bank_name} has {int(counts.min())} samples of class {c}, fewer than the knn_k="
                           f"{params.knn_k} neighbours the distance feature DF averages: lower knn_k or leave 'df' "
                           "out of features")


def method_row(method: str, knobs: dict) -> Row:
    """The row `method` (a method or a built-in variant) at its knobs: its row of the shipped fixed-knobs
    table, overridden by `knobs`, and a variant's own overrides over both."""
    if method not in LIBRARY_METHODS:
        raise LibraryError(f"unknown method {method!r}: one of {', '.join(LIBRARY_METHODS)}")
    base = _params(knobs)
    table = fixed_table(base.fixed_knobs).get(stored_name(tuned_as(row(base, method))), {})
    r = row(_params({**table, **knobs}), method)
    if r.method == "tmu" and r.params.tmu_split not in USER_SPLITS:
        raise LibraryError(f"tmu_split {r.params.tmu_split!r} is a control of a run (the gold labels or a random "
                           f"ranking); the library runs TMU at tmu_split {' or '.join(USER_SPLITS)}")
    return r


def _check_disjoint(a: Dataset, b: Dataset, b_name: str, a_name: str) -> None:
    pa, pb = _positions(a), _positions(b)
    if pa is not None and pb is not None and pa[0] == pb[0] and torch.isin(pb[1], pa[1]).any():
        raise LibraryError(f"the {b_name} and the {a_name} share {int(torch.isin(pb[1], pa[1]).sum())} samples")


def request_prediction(one_off: OneOff, model: nn.Module, forget_x: torch.Tensor, forget_y: torch.Tensor,
                       retain_x: DatasetImages, retain_y: torch.Tensor, device: torch.device) -> PredictorOutput:
    """The predictor's easy/hard split of one request, its features read under `model` (the model the
    request is applied to) with the DF bank drawn from what is retained."""
    p = one_off.params
    bank = amortised.class_bank(retain_y, p.bank_per_class, p.seed)
    reader = Penultimate(model) if "df" in p.features else model
    raw = amortised.raw_features(p, reader, one_off.curriculum, forget_x, forget_y, retain_x[bank], retain_y[bank],
                                 device, names=list(p.features), input_range=one_off.input_range)
    return amortised.predict_with(one_off, raw)


def unlearn(original: nn.Module, retain: Dataset, forget: Dataset, one_off: OneOff | None = None, *,
            method: str = "tmu", device: str | torch.device = "auto", seed: int = 0, batch_size: int = 256,
            num_workers: int = 0, normalization: Normalization | None = None, last_block: str | None = None,
            **knobs) -> nn.Module:
    """One request: a copy of `original` unlearns `forget` and keeps `retain`, with `method` (TMU or a
    baseline) at its shipped knobs overridden by `knobs`. `original` itself is left untouched.
    `normalization` as build_one_off's (the one-off's by default); `last_block`, a module path such as
    "layer4.1", names the block that TMU's step `tmu_update: last_block` trains with the head."""
    r, device = method_row(method, knobs), _device(device)
    params, predicted = r.params, r.method == "tmu" and r.params.tmu_split == "predictor"
    if predicted and one_off is None:
        raise LibraryError(f"method {method!r} needs the one-off: build_one_off(original, make_model, members, holdout)")
    if len(retain) == 0:
        raise LibraryError("the retain set is empty")
    check_step(original, r, last_block)
    _check_disjoint(retain, forget, "forget set", "retain set")
    if len(forget) == 0:
        raise LibraryError("the forget set is empty")
    forget_x, forget_y = DatasetImages(forget, batch_size, num_workers)[:], read_labels(forget, batch_size, num_workers)
    where = input_range(normalization, forget_x.shape[1])
    if one_off is not None and where is None:
        where = one_off.input_range
    elif one_off is not None and not same_range(where, one_off.input_range):
        raise LibraryError("normalization differs from the one the one-off was built with")
    _check_range(forget_x, "forget set", where)
    retain_x, retain_y = DatasetImages(retain, batch_size, num_workers), read_labels(retain, batch_size, num_workers)
    num_classes = _num_classes(original, forget_x, torch.cat([forget_y, retain_y]), device, "forget or retain set")
    easy = proba = margins = None
    if predicted:
        at = _positions(forget)
        if one_off.member_indices is not None and at is not None and not torch.isin(at[1], one_off.member_indices).all():
            raise LibraryError(f"the forget set is not a subset of the members the one-off was built on: "
                               f"{int((~torch.isin(at[1], one_off.member_indices)).sum())} of its samples are not")
        check_bank(one_off.params, forget_y, retain_y, "retain set")
        if len(forget) > one_off.holdout_size:
            warn_twin_size(len(one_off.unseen_margins), one_off.holdout_size, len(forget), one_off.twin_easy_rate)
        pred = request_prediction(one_off, original, forget_x, forget_y, retain_x, retain_y, device)
        easy, proba, margins = pred.easy, pred.proba, pred.unseen_margins
    elif r.method == "tmu":  # tmu_split none: no sample easy
        easy = torch.zeros(len(forget_y), dtype=torch.bool)
    task = UnlearnTask(original, retain_x, retain_y, forget_x, forget_y, num_classes, params, device, easy=easy,
                       seed=model_seeds(seed)["unlearning"], easy_proba=proba, unseen_margins=margins,
                       input_range=where, block=last_block)
    seed_everything(task.run_seed)
    return METHODS[r.method](task)


def check_step(model: nn.Module, r: Row, last_block: str | None) -> None:
    """Refuse, before any training, a TMU step whose parameters cannot be found on `model`, or a
    `last_block` given to a step that does not train one."""
    update = r.params.tmu_update if r.method == "tmu" else None
    if last_block is not None and update != "last_block":
        raise LibraryError(f"last_block={last_block!r} names the block TMU's step trains at tmu_update last_block, "
                           f"but method {r.name!r} runs at tmu_update {update or 'none (not a TMU method)'}")
    if update is not None:
        try:
            step_parameters(model, update, last_block)
        except ValueError as e:
            hint = ": name the block with last_block='module.path', or set tmu_update" if (
                update == "last_block" and last_block is None) else ""
            raise LibraryError(f"{e}{hint}") from None


def warn_twin_size(twin_size: int, holdout_size: int, forget_size: int, twin_easy_rate: float) -> None:
    """Warn that the twin easy rate, which sets how many forget samples TMU predicts easy, comes from
    fewer samples than the forget set holds, with its binomial standard error at both sizes."""
    def bound(n: int) -> float:  # the largest binomial standard error of a rate over n samples, at rate 1/2
        return 0.5 / math.sqrt(n)

    warnings.warn(f"the holdout has {holdout_size} samples, fewer than the forget set's {forget_size}: the twin easy "
                  f"rate ({twin_easy_rate:.3f}), which sets how many forget samples are predicted easy, comes from a "
                  f"twin forget set of {twin_size}, so its binomial standard error is up to {bound(twin_size):.3f} "
                  f"instead of {bound(forget_size):.3f} at the forget set's size", TwinSizeWarning, stacklevel=3)
