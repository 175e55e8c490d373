"""TMU as a library, on a model and data the package has never seen (docs/api.md).

- `build_one_off(original, make_model, members, holdout)`: TMU's twin problem, built once per original
  model: M_t, the curriculum model M_c, the twin features and the fitted predictor, as a `OneOff` that
  saves and loads as tensors only.
- `unlearn(original, retain, forget, one_off, method="tmu")`: one request; the baselines go through
  the same call (`method="finetune"`, ...) and need no one-off.
- `challenge.unlearning(net, retain_loader, forget_loader, val_loader)` (tmu_utils/challenge.py): the
  NeurIPS 2023 Machine Unlearning Challenge's entry point on top of these, the validation set as holdout.

Data are map-style `torch.utils.data.Dataset`s of `(image, label)`, images as float tensors in [0, 1]
(what torchvision's ToTensor gives; any normalisation belongs inside the model). They are read through
DataLoaders in batches. The computation is method/amortised.py's, which the pipeline runs too; nothing
here reads a gold model.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from .core.context import model_seeds
from .core.models import Penultimate
from .core.params import Params, ParamsError, make_params
from .core.splits import SplitError
from .core.streaming import DatasetImages, read_labels
from .core.training import resolve_device, seed_everything, to_input
from .experiments.tuning_grids import fixed_table
from .method import amortised
from .method.amortised import OneOff
from .method.predictor import PredictorOutput
from .unlearning import METHODS, UnlearnTask
from .unlearning.runner import TWIN_METHODS, artefact_name

# The gold labels (tmu_oracle) and a run's random ranking (tmu_random_rank) are not a user's to give.
LIBRARY_METHODS = tuple(m for m in METHODS if m not in ("tmu_oracle", "tmu_random_rank"))


class LibraryError(ValueError):
    """An input the library cannot work with; the message says what is wrong, in one line."""


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


def _images(dataset: Dataset, name: str, batch_size: int, num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (small) set's images and labels as tensors, refused with the reason when the package cannot use them."""
    if len(dataset) == 0:
        raise LibraryError(f"the {name} is empty")
    x, y = DatasetImages(dataset, batch_size, num_workers)[:], read_labels(dataset, batch_size, num_workers)
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise LibraryError(f"the {name}'s images are {x.dtype}: give float images in [0, 1] (or uint8)")
    if x.is_floating_point() and (x.min() < 0 or x.max() > 1):
        raise LibraryError(f"the {name}'s images lie in [{x.min():.3g}, {x.max():.3g}], not [0, 1]: put the "
                           "normalisation inside the model (the adversarial feature works in pixel space)")
    return x, y


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
                  num_workers: int = 0, **knobs) -> OneOff:
    """TMU's one-off for `original`, trained on `members`: D_tf drawn from `holdout` (which `original`
    never saw), M_t, M_c (`make_model()` trained `curriculum_epochs` with the recipe), the twin features
    and the predictor. `knobs` are Params fields; docs/api.md lists those that matter here."""
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
    _num_classes(original, images[holdout_idx[:2]], labels, device, "member set or holdout")
    try:
        twin_forget = amortised.draw_twin_forget(labels, member_idx, holdout_idx, params.forget_fraction, seed)
    except SplitError:
        raise LibraryError(f"the holdout ({len(holdout)} samples) is smaller than the twin forget set it must supply "
                           f"(forget_fraction {params.forget_fraction} of {len(members)} members): give a larger "
                           "holdout or a smaller forget_fraction") from None
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
    payload, meta = amortised.fit_on_twin(original, twin, curriculum, images[twin_forget], labels[twin_forget],
                                          images[bank], labels[bank], params, device, seeds["unlearning"],
                                          names=list(params.features))
    one = amortised.assemble(payload, meta, curriculum, twin_meta, cur_meta, params, len(holdout))
    at = _positions(members)
    one.member_indices = at[1] if at else None
    return one


def method_params(method: str, knobs: dict) -> Params:
    """The knobs `method` runs at: its row of the shipped fixed-knobs table, overridden by `knobs`."""
    if method not in LIBRARY_METHODS:
        raise LibraryError(f"unknown method {method!r}: one of {', '.join(LIBRARY_METHODS)}")
    base = _params(knobs)
    return _params({**fixed_table(base.fixed_knobs).get(artefact_name(method, base), {}), **knobs})


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
                                 device, names=list(p.features))
    return amortised.predict_with(one_off, raw)


def unlearn(original: nn.Module, retain: Dataset, forget: Dataset, one_off: OneOff | None = None, *,
            method: str = "tmu", device: str | torch.device = "auto", seed: int = 0, batch_size: int = 256,
            num_workers: int = 0, **knobs) -> nn.Module:
    """One request: a copy of `original` unlearns `forget` and keeps `retain`, with `method` (TMU or a
    baseline) at its shipped knobs overridden by `knobs`. `original` itself is left untouched."""
    params, device = method_params(method, knobs), _device(device)
    if method in TWIN_METHODS and one_off is None:
        raise LibraryError(f"method {method!r} needs the one-off: build_one_off(original, make_model, members, holdout)")
    if len(retain) == 0:
        raise LibraryError("the retain set is empty")
    _check_disjoint(retain, forget, "forget set", "retain set")
    forget_x, forget_y = _images(forget, "forget set", batch_size, num_workers)
    retain_x, retain_y = DatasetImages(retain, batch_size, num_workers), read_labels(retain, batch_size, num_workers)
    num_classes = _num_classes(original, forget_x, torch.cat([forget_y, retain_y]), device, "forget or retain set")
    easy = proba = margins = None
    if method in TWIN_METHODS:
        at = _positions(forget)
        if one_off.member_indices is not None and at is not None and not torch.isin(at[1], one_off.member_indices).all():
            raise LibraryError(f"the forget set is not a subset of the members the one-off was built on: "
                               f"{int((~torch.isin(at[1], one_off.member_indices)).sum())} of its samples are not")
        if len(forget) > one_off.holdout_size:
            raise LibraryError(f"the holdout ({one_off.holdout_size} samples) is smaller than the forget set "
                               f"({len(forget)}): the twin problem cannot stand for this request")
        pred = request_prediction(one_off, original, forget_x, forget_y, retain_x, retain_y, device)
        easy, proba, margins = pred.easy, pred.proba, pred.reference_margins
    elif method == "tmu_all_hard":
        easy = torch.zeros(len(forget_y), dtype=torch.bool)
    task = UnlearnTask(original, retain_x, retain_y, forget_x, forget_y, num_classes, params, device, easy=easy,
                       seed=model_seeds(seed)["unlearning"], easy_proba=proba, reference_margins=margins)
    seed_everything(task.run_seed)
    return METHODS[method](task)
