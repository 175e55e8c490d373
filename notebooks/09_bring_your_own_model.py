# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Bring your own model: TMU through the public API
# A model the package has never seen, defined and trained here with a plain torch loop, unlearns a
# forget set with TMU and with two baselines, through `tmu_utils`' public API alone
# (`build_one_off`, `unlearn`, `unlearning`; docs/api.md). A retrain without the forget set, trained
# here with the same loop, is the reference they are judged against. It is never shown to them.

# %%
import copy
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

import tmu_utils as tmu
from tmu_utils.challenge import unlearning

# %% tags=["parameters"]
seed = 0  # seeds the split, the models and the unlearning
train_limit = 8000  # training images used: three quarters members, one quarter holdout
forget_fraction = 0.1  # share of the members to forget
epochs = 8  # epochs of the plain training loop (the original and the retrain)

# %% [markdown]
# ## 1. Data: a plain `TensorDataset`
# Fashion-MNIST, the package's default data, here only as tensors: float images in [0, 1] and int64
# labels, wrapped in a `TensorDataset` as any user's data would be. Members train the original; the
# holdout (never trained on) is what TMU draws its twin problem from; the forget set is a random
# `forget_fraction` of the members.

# %%
raw = tmu.load_dataset("fashion_mnist")
generator = torch.Generator().manual_seed(seed)
chosen = torch.randperm(len(raw.train_y), generator=generator)[:train_limit]
data = TensorDataset(raw.train_x[chosen].float() / 255, raw.train_y[chosen])  # (N, 1, 28, 28) in [0, 1]
test = TensorDataset(raw.test_x[:2000].float() / 255, raw.test_y[:2000])
n_members = 3 * train_limit // 4
members_idx, holdout_idx = torch.arange(n_members), torch.arange(n_members, train_limit)
forget_idx = members_idx[torch.randperm(n_members, generator=generator)[:int(forget_fraction * n_members)]].sort().values
retain_idx = members_idx[~torch.isin(members_idx, forget_idx)]
members, holdout = Subset(data, members_idx.tolist()), Subset(data, holdout_idx.tolist())
forget, retain = Subset(data, forget_idx.tolist()), Subset(data, retain_idx.tolist())

# %%
# NBVAL_CHECK_OUTPUT
print(f"members {len(members)}, holdout {len(holdout)}, forget {len(forget)}, retain {len(retain)}, "
      f"test {len(test)}")

# %% [markdown]
# ## 2. A model the package does not know, and a plain training loop
# A small convolutional network defined here, trained with Adam and cross-entropy: the original on
# the members, the retrain on the retain set only, each from its own seed.

# %%
class TinyConvNet(nn.Module):
    """Two convolutions and two linear layers; the package has no such architecture."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x))  # (B, 10)


def train(dataset, model_seed: int) -> nn.Module:
    """The user's own recipe: `epochs` of Adam at 1e-3, batches of 128."""
    torch.manual_seed(model_seed)
    model = TinyConvNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for x, y in DataLoader(dataset, batch_size=128, shuffle=True):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def logits(model: nn.Module, dataset) -> torch.Tensor:
    return torch.cat([model(x) for x, _ in DataLoader(dataset, batch_size=1000)])


def labels(dataset) -> torch.Tensor:
    return torch.cat([y for _, y in DataLoader(dataset, batch_size=1000)])


start = time.perf_counter()
original = train(members, seed)
original_s = time.perf_counter() - start
start = time.perf_counter()
retrained = train(retain, seed + 1000)  # the reference: never trained on the forget set
retrain_s = time.perf_counter() - start
accuracy = lambda model, dataset: (logits(model, dataset).argmax(1) == labels(dataset)).float().mean().item()  # noqa: E731
print(f"original: forget {100 * accuracy(original, forget):.1f} %, test {100 * accuracy(original, test):.1f} % "
      f"({original_s:.1f} s); retrain: forget {100 * accuracy(retrained, forget):.1f} %, "
      f"test {100 * accuracy(retrained, test):.1f} % ({retrain_s:.1f} s)")

# %% [markdown]
# The retrain still classifies most of the forget set correctly: it generalises to it as to unseen
# data. That is the behaviour TMU aims at, rather than a forget accuracy of zero.

# %% [markdown]
# ## 3. TMU's one-off: the twin problem, once per original model
# `build_one_off` fine-tunes a copy of the original on the members plus a twin forget set drawn from
# the holdout, trains the early-stopped curriculum model from `make_model` (here `TinyConvNet`),
# computes the generalization-label features, and fits the predictor of which forget samples a
# retrain would still get right. It serves every later request against this original.

# %%
start = time.perf_counter()
one_off = tmu.build_one_off(original, TinyConvNet, members, holdout, seed=seed, forget_fraction=forget_fraction,
                            progress=False)
one_off_s = time.perf_counter() - start
print(f"one-off in {one_off_s:.1f} s: twin easy rate {100 * one_off.twin_easy_rate:.1f} % "
      f"(the twin problem's estimate of the retrain's forget accuracy), predictor CV accuracy "
      f"{100 * one_off.twin_cv_accuracy:.1f} %")

# %% [markdown]
# ## 4. One request, three methods, one call
# The same `unlearn` call runs TMU and the baselines, each at its shipped knobs; `original` is not
# changed. `tmu_utils.challenge.unlearning(net, retain_loader, forget_loader, val_loader)` is the unlearning
# challenge's form of the same thing (section 6).

# %%
methods = ["tmu", "finetune", "neggrad_plus"]
unlearned, seconds = {}, {}
for method in methods:
    start = time.perf_counter()
    unlearned[method] = tmu.unlearn(original, retain, forget, one_off if method == "tmu" else None, method=method,
                                    seed=seed).eval()
    seconds[method] = time.perf_counter() - start
print(", ".join(f"{m} {s:.1f} s" for m, s in seconds.items()))

# %% [markdown]
# ## 5. Against the retrain: Δ, AD and a figure
# Δ is the gap between a model's and the retrain's forget accuracy (the headline of the method);
# AD the mean L2 distance between their softmax outputs on the forget set. Both are computed here
# from the logits, with nothing from the package.

# %%
reference = logits(retrained, forget)
forget_y = labels(forget)
models = {"original": original, **unlearned}
rows = {}
for name, model in models.items():
    out = logits(model, forget)
    rows[name] = {"delta": abs((out.argmax(1) == forget_y).float().mean() - (reference.argmax(1) == forget_y).float().mean()).item(),
                  "ad": (out.softmax(1) - reference.softmax(1)).norm(dim=1).mean().item(),
                  "test": accuracy(model, test)}
table = ["| model | Δ forget pp | AD | test % | time s |", "|---|---|---|---|---|"]
table += [f"| {n} | {100 * r['delta']:.2f} | {r['ad']:.3f} | {100 * r['test']:.2f} | "
          f"{seconds.get(n, 0.0) + (one_off_s if n == 'tmu' else 0.0):.1f} |" for n, r in rows.items()]
display(Markdown("\n".join(table) + f"\n\nThe retrain took {retrain_s:.1f} s; TMU's time includes its one-off."))

# %%
# extra code – the figure
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
names = list(rows)
axes[0].bar(names, [100 * rows[n]["delta"] for n in names], color=["0.6", "C0", "C1", "C2"])
axes[0].set_ylabel("Δ forget vs retrain (pp)")
axes[1].bar(names, [rows[n]["ad"] for n in names], color=["0.6", "C0", "C1", "C2"])
axes[1].set_ylabel("activation distance vs retrain")
fig.tight_layout()
plt.show()

# %% [markdown]
# Every method ran at its row of the shipped fixed-knobs table, which was chosen on the twin problem
# of the package's `small_cnn` on the whole of Fashion-MNIST: not for this network, its Adam recipe
# or a member set of 6 000. They are a starting point here, and one forget sample is 0.17 pp of Δ, so
# the table above is one noisy draw rather than a ranking. docs/tuning.md says how knobs are chosen
# for a new model on the twin problem, without a retrain.

# %% [markdown]
# ## 6. The unlearning challenge's interface
# The NeurIPS 2023 Machine Unlearning Challenge hands a submission `net` and three loaders; the
# validation loader serves as TMU's holdout. Without `make_model`, the curriculum model is a
# re-initialised copy of `net` (docs/api.md).

# %%
net = copy.deepcopy(original)
loaders = [DataLoader(d, batch_size=128) for d in (retain, forget, holdout)]
net = unlearning(net, *loaders, seed=seed, progress=False)
challenge = logits(net, forget)
print(f"unlearning(): Δ forget {100 * abs((challenge.argmax(1) == forget_y).float().mean() - (reference.argmax(1) == forget_y).float().mean()).item():.2f} pp, "
      f"AD {(challenge.softmax(1) - reference.softmax(1)).norm(dim=1).mean().item():.3f}")

# %% [markdown]
# ## Summary

# %%
best = min(methods, key=lambda m: rows[m]["delta"])
display(Markdown(
    f"- The original sits {100 * rows['original']['delta']:.2f} pp from the retrain's forget accuracy; "
    f"TMU {100 * rows['tmu']['delta']:.2f} pp, finetune {100 * rows['finetune']['delta']:.2f} pp, "
    f"neggrad_plus {100 * rows['neggrad_plus']['delta']:.2f} pp: closest here is {best}.\n"
    f"- AD to the retrain: original {rows['original']['ad']:.3f}, TMU {rows['tmu']['ad']:.3f}, finetune "
    f"{rows['finetune']['ad']:.3f}, neggrad_plus {rows['neggrad_plus']['ad']:.3f}.\n"
    "- One draw at a small size: the multi-seed tables of docs/results.md are the ones to quote."))
assert all(not torch.equal(logits(unlearned[m], forget), logits(original, forget)) for m in methods)
