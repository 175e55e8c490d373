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
# # 01 · The original model and the gold model
# What should an unlearned model look like? We train the original model on its members, retrain
# the gold model without the forget set, and measure the gap that unlearning has to close.

# %%
import torch
from IPython.display import Markdown, display

from tmu_utils.core import context
from tmu_utils.evaluation import scoring
from tmu_utils.evaluation.metrics import accuracy
from tmu_utils.experiments import notebooks, runs
from tmu_utils.experiments.checks import research_check
from tmu_utils.reporting import plots, tables

# %% tags=["parameters"]
# The run starts from params_file (relative: to the repository); the names below are the knobs this
# notebook is about, and papermill's -p (or `python -m tmu_utils run --set`) sets any Params field.
params_file = "params/demo.yaml"
seed = 0  # seeds the splits; each model's own seed derives from it (docs/method.md: seeds)
# the forget request (docs/method.md: data splits)
forget_scenario = "random"
forget_fraction = 0.1
# the recipe of M_o, M_g and M_g': Adam without weight decay lets M_o memorise its members
arch = "small_cnn"
epochs = 15
weight_decay = 0.0

# %%
params = notebooks.notebook_params(globals())
ctx = context.prepare(params)
figures_dir = runs.run_dir(params) / "figures"
saved_figures = []
print(f"{params.dataset}, seed {params.seed}, on {ctx.device}")

# %% [markdown]
# ## 1. Data and splits
# The training split is cut into **members** `M`, which the original model trains on, and a
# **holdout** `H`, which it never sees. The user asks to forget `D_f`, a random part of the
# members; what remains is the retain set `D_r`. The twin forget set `D_tf` is drawn from the
# holdout with the same class make-up as `D_f`; notebook 02 explains what it is for.

# %%
# NBVAL_CHECK_OUTPUT
sizes = ctx.splits.sizes()
print(f"{len(ctx.dataset.train_y)} training and {len(ctx.dataset.test_y)} test images, "
      f"{ctx.dataset.num_classes} classes: {', '.join(ctx.dataset.classes)}")
for split, size in sizes.items():
    print(f"  {split:12s} {size:6d}")

# %%
assert sizes["forget"] + sizes["retain"] == sizes["members"]
assert torch.isin(ctx.splits.forget, ctx.splits.members).all()
assert not torch.isin(ctx.splits.holdout, ctx.splits.members).any()  # M_o never sees the holdout

# %% [markdown]
# ## 2. The original model `M_o`
# `M_o` is trained from scratch on all members, forget set included. It is cached: a second run,
# or any later notebook, loads it instead of training again.

# %%
original, original_meta = context.original_model(ctx)
losses = original_meta["losses"]
print(f"M_o: {len(losses)} epochs, training loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
      f"trained in {original_meta['seconds']:.1f} s")

# %% [markdown]
# ## 3. The gold model `M_g`, and a second one `M_g'`
# The gold model is what exact unlearning gives: the same recipe retrained from scratch on `D_r`
# alone. It is the target every unlearning method should imitate, and far too costly to compute
# for each request. The method itself never sees it; we train it here only to *judge* methods.
#
# We train it twice with different seeds. Two retrains never agree exactly, so `M_g'` measured
# against `M_g` gives the **noise floor**: no method can be meaningfully closer to the gold model
# than another retrain is.

# %%
refs = scoring.references(ctx)
print(", ".join(f"{key} {seconds:.1f} s" for key, seconds in refs.timing.items()))

# %% [markdown]
# ## 4. What is the alignment target?
# Accuracy of the three models on the forget, retain and test sets.

# %%
labels = {split: ctx.subset(split)[1] for split in ("forget", "retain", "test")}
outputs = {"original M_o": context.model_outputs(ctx, original), "gold M_g": refs.gold_outputs,
           "gold M_g'": refs.gold2_outputs}
acc = {model: {split: accuracy(getattr(out, split), y) for split, y in labels.items()}
       for model, out in outputs.items()}
display(Markdown(tables.markdown_table(["model", *(tables.label(f"{split}_acc") for split in labels)],
                                       [[model, *(tables.fmt(f"{split}_acc", a[split]) for split in labels)]
                                        for model, a in acc.items()])))

# %%
fig = plots.plot_accuracy_groups(acc)
saved_figures.append(plots.save_fig(fig, "accuracy_original_gold", figures_dir))

# %% [markdown]
# The original model is better on `D_f` than on the test set: it has partly memorised its
# members. The gold model never saw `D_f`, so for it these are ordinary unseen images and it
# classifies them about as well as the test set. That is the point of the paper: **the target for
# `D_f` is the gold model's accuracy, not zero.** A method that drives forget accuracy to zero
# moves *away* from the gold model, and the unusually low accuracy itself gives away which samples
# were removed.

# %%
o, g, g2 = acc["original M_o"], acc["gold M_g"], acc["gold M_g'"]
gap, floor = o["forget"] - g["forget"], abs(g2["forget"] - g["forget"])
display(Markdown(
    f"On `D_f` the original model is right on **{100 * o['forget']:.2f} %**, the gold model on "
    f"**{100 * g['forget']:.2f} %** (its test accuracy: {100 * g['test']:.2f} %). Unlearning has to "
    f"close a gap of **Δ = {100 * gap:.2f} pp**, while two retrains differ by {100 * floor:.2f} pp "
    f"(the noise floor)."))

# %%
# The demo's D_f has 2400 samples: over 16 seeds this gap measured 4.28 ± 0.29 pp and the floor
# 0.42 ± 0.18 pp (benchmarks/results/population). A smoke-sized D_f (240) cannot resolve either.
# At params/demo.yaml a failed check raises; on other data it is kept as a warning of the run.
if sizes["forget"] >= 1000:
    research_check(params, "01_original_and_gold", "M_o is farther from the gold model on D_f than two retrains are",
                   gap > floor, f"gap {100 * gap:.2f} pp, noise floor {100 * floor:.2f} pp")
if params.forget_scenario != "class":  # forgetting a whole class: the gold model never saw the class
    n = sizes["forget"]
    sampling_error = (g["test"] * (1 - g["test"]) / n) ** 0.5
    research_check(params, "01_original_and_gold", "the gold model treats D_f like unseen data",
                   abs(g["forget"] - g["test"]) < 4 * sampling_error + 0.01,
                   f"forget {100 * g['forget']:.2f} % against test {100 * g['test']:.2f} %, allowed "
                   f"{100 * (4 * sampling_error + 0.01):.2f} pp")

# %% [markdown]
# ## Summary
# - `M_o` fits its members, `D_f` included, better than unseen data; the gold model `M_g` treats
#   `D_f` like the test set.
# - So the alignment target on `D_f` is `M_g`'s accuracy. Its gap to `M_o` is what unlearning must
#   close, measured against the noise floor between two retrains.
# - Next, 02 shows how TMU estimates which forget samples the gold model gets right, without it.

# %%
# NBVAL_CHECK_OUTPUT
print("figures:", ", ".join(path.name for path in saved_figures))
