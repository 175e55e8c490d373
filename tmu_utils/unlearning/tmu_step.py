"""How TMU's fine-tune moves the model (docs/method.md, "Step variants"), apart from what it moves D_f
towards (the target, tmu.py). The reference step re-fits a retain replay with cross-entropy
on labels and updates every weight; in the 16-replica population that alone (plain `finetune`) is
easier to tell from retraining than doing nothing. Three knobs change only what must change:
- `tmu_retain_loss: distill`: the retain rows are held to M_o's own softmax (KL, as SCRUB's
  min-step) instead of being re-fitted to their labels, so their margins are not sharpened;
- `tmu_update`: `head`, `last_block` (the last block of the body plus the head: the body's last
  parameterised child, or on a model without `body` the last block before the head, or a block the
  caller names by its module path) or `bn` (BatchNorm's affine parameters) are the only weights updated; every other parameter and every
  BatchNorm statistic stays bit for bit as M_o has it;
- `tmu_calibrate`: the predicted-easy forget samples join the pool with a margin target: M_o's
  margins on the twin forget samples it classifies correctly (samples it never saw), quantile for
  quantile in the order of M_o's own margins on them. They stay right, at the confidence of an unseen
  sample instead of a memorised one. No gold model is involved: on the twin problem M_o is the gold.
- `tmu_perturb`: before the step, what it trains moves that share of the way to a fresh initialisation
  (1: re-initialised), drawn from the run's own seed, so that unlearned models spread as retrains do
  instead of all staying at M_o; the distillation teacher is M_o as it was.
The rows that force a step (`tmu_distill`, ...) are variants, choices.VARIANTS; `tmu_reference` is the
reference step itself. The default step (params) is the twin problem's choice by a rule fixed before any
population ran (benchmarks/results/step_choice/).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..core.training import full_precision
from .common import UnlearnTask, batch_input

PREFIX_CACHE_BYTES = 2 << 30  # the most a restricted step keeps of its frozen prefix's outputs
PREDICT_BATCH = 2048  # rows per no-grad forward pass, as core.training.predict


def _parameterised_children(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.children() if any(True for _ in m.parameters())]


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _block_before(module: nn.Module, head: nn.Module) -> nn.Module | None:
    """The last parameterised child of `module` registered before `head` (looked for inside the child
    that holds the head), descending through containers: a block, not a leaf, so torchvision's
    resnet18 gives layer4[1], not its last BatchNorm."""
    last = None
    for child in module.children():
        if child is head:
            break
        if any(m is head for m in child.modules()):
            last = _block_before(child, head) or last
            break
        if any(True for _ in child.parameters()):
            last = child
    while type(last) in CONTAINERS:  # exactly: a Sequential subclass (torchvision's Conv2dNormActivation) is a block
        last = _parameterised_children(last)[-1]
    return last


def perturb(model: nn.Module, trained: list[nn.Parameter], share: float, seed: int) -> None:
    """Move each trained parameter `share` of the way to a fresh initialisation of its module (the module's
    own `reset_parameters`, drawn from `seed`): 1 re-initialises what the step trains, a small share
    perturbs it at the scale of the initialisation. Modules without `reset_parameters` keep theirs."""
    if share == 0:
        return
    chosen = {id(p) for p in trained}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.default_generator.manual_seed(seed)  # the CPU's only: the fresh copies are drawn there
        for module in model.modules():
            own = [(name, p) for name, p in module.named_parameters(recurse=False) if id(p) in chosen]
            if not own or not hasattr(module, "reset_parameters"):
                continue
            fresh = copy.deepcopy(module).cpu()
            fresh.reset_parameters()
            for name, p in own:
                p.lerp_(getattr(fresh, name).to(p.device), share)


def step_parameters(model: nn.Module, update: str, block: str | None = None) -> list[nn.Parameter]:
    """The parameters the step updates under `tmu_update` (ValueError where the model has none such);
    `block`, a module path, names the block `last_block` trains."""
    if update == "all":
        return list(model.parameters())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = getattr(model, "head", None) if isinstance(getattr(model, "head", None), nn.Module) else (
        linears[-1] if linears else None)
    if update == "head":
        if head is None:
            raise ValueError("tmu_update head: the model has no `head` and no nn.Linear layer")
        return list(head.parameters())
    if update == "last_block":
        if block is not None:
            try:
                chosen = model.get_submodule(block)
            except AttributeError:
                raise ValueError(f"tmu_update last_block: the model has no module {block!r}") from None
        else:
            body = getattr(model, "body", None)
            chosen = (_parameterised_children(body) or [None])[-1] if isinstance(body, nn.Module) else (
                _block_before(model, head) if head is not None else None)
        if head is None or chosen is None:
            raise ValueError("tmu_update last_block: the model has no head with a parameterised block before it")
        return list({id(p): p for p in [*chosen.parameters(), *head.parameters()]}.values())
    if update == "bn":
        affine = [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
                  for p in m.parameters(recurse=False)]
        if not affine:
            raise ValueError("tmu_update bn: the model has no BatchNorm layer with affine parameters "
                             "(small_cnn and mlp have none; resnet18 has)")
        return affine
    raise ValueError(f"tmu_update must be one of all, head, last_block, bn; got {update!r}")


def restrict(model: nn.Module, update: str, block: str | None = None) -> list[nn.Parameter]:
    """Freeze everything the step must not change; return what it trains. A restricted step also keeps
    every BatchNorm layer in eval mode, so its running statistics stay M_o's."""
    trained = step_parameters(model, update, block)
    if update != "all":
        chosen = {id(p) for p in trained}
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return trained


class _Prefix(nn.Module):
    """The frozen start of a Classifier: input normalisation and the body up to the trained part."""

    def __init__(self, model: nn.Module, layers: list[nn.Module]):
        super().__init__()
        self.mean, self.std, self.layers = model.mean, model.std, nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std)


def frozen_split(model: nn.Module, update: str, block: str | None = None) -> tuple[nn.Module, nn.Module] | None:
    """(prefix, rest) with model(x) == rest(prefix(x)), where a restricted step (`head`, `last_block`)
    trains only `rest` and the prefix is a fixed function: none of its parameters trained, its
    BatchNorm layers in eval mode (`restrict` puts them there), no dropout. The step can then compute
    the prefix once per pool row instead of once per row and epoch. None where the model is not a
    Classifier with a Sequential body, where the prefix has dropout, or where the step updates every
    weight or BatchNorm's."""
    body = getattr(model, "body", None)
    if update not in ("head", "last_block") or not isinstance(body, nn.Sequential) or not hasattr(model, "mean"):
        return None
    trained = {id(p) for p in step_parameters(model, update, block)}
    layers = list(body.children())
    first = next((i for i, m in enumerate(layers) if any(id(p) in trained for p in m.parameters())), len(layers))
    prefix = layers[:first]
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for layer in prefix for m in layer.modules()):
        return None
    return _Prefix(model, prefix), nn.Sequential(*layers[first:], model.head)


@torch.no_grad()
def prefix_outputs(task: UnlearnTask, prefix: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The frozen prefix's outputs on every pool row, on the task's device; None where they would take
    more than PREFIX_CACHE_BYTES (the step then runs the whole model on every batch)."""
    if len(x) == 0:
        return None
    first = prefix(batch_input(x, torch.arange(1), task.device))
    if first.numel() * first.element_size() * len(x) > PREFIX_CACHE_BYTES:
        return None
    chunks = torch.arange(len(x)).split(task.params.unlearn_batch_size)
    return torch.cat([prefix(batch_input(x, idx, task.device)) for idx in chunks])


@torch.no_grad()
def eval_outputs(task: UnlearnTask, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """`module`'s outputs on `h` in eval mode and float32, on the CPU (as `predict` computes logits);
    each submodule's train or eval mode is put back afterwards."""
    modes = [(m, m.training) for m in module.modules()]  # parents first: restoring in order is exact
    module.eval()
    try:
        with full_precision(task.device):
            return torch.cat([module(chunk).float().cpu() for chunk in h.split(PREDICT_BATCH)])
    finally:
        for m, training in modes:
            m.train(training)


def distillation_losses(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per row KL(softmax(teacher) ‖ softmax(student)) at temperature 1."""
    teacher = F.log_softmax(teacher_logits, dim=1)
    return (teacher.exp() * (teacher - F.log_softmax(logits, dim=1))).sum(1)


def quantile_targets(order_by: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Quantile matching: the sample ranked k-th of n by `order_by` (ascending) gets the reference value
    at quantile (k + ½)/n, so the largest `order_by` gets the largest reference value."""
    n = len(order_by)
    order = torch.argsort(order_by, stable=True)
    quantiles = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    targets = torch.empty(n, dtype=torch.float64)
    targets[order] = torch.quantile(reference.double(), quantiles)
    return targets.float()


def calibration_targets(original_margins: torch.Tensor, unseen_margins: torch.Tensor | None) -> torch.Tensor:
    """The margin each predicted-easy forget sample is pulled to: the reference's correctly classified
    (positive-margin) part, in the order of M_o's own margins on the samples."""
    if unseen_margins is None:
        raise ValueError("tmu_calibrate needs task.unseen_margins: M_o's margins on the twin forget set")
    correct = unseen_margins[unseen_margins > 0]
    if len(correct) == 0:
        raise ValueError("tmu_calibrate: M_o classifies no twin forget sample correctly, so there is no "
                         "confidence of an unseen correct sample to calibrate to")
    return quantile_targets(original_margins, correct)
