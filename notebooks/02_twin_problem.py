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
# # 02 · The twin problem
# TMU needs to know which forget samples the gold model would get right, without the gold model.
# It builds a stand-in unlearning problem whose answer is known: the twin problem.

# %%
import torch
from IPython.display import Markdown, display

from tmu_utils.core import context
from tmu_utils.core.training import predict
from tmu_utils.evaluation import scoring
from tmu_utils.evaluation.metrics import accuracy
from tmu_utils.experiments import notebooks, runs
from tmu_utils.experiments.checks import research_check
from tmu_utils.method import stages, twin
from tmu_utils.reporting import plots

# %% tags=["parameters"]
# The run starts from params_file (relative: to the repository); the names below are the knobs this
# notebook is about, and papermill's -p (or `python -m tmu_utils run --set`) sets any Params field.
params_file = "params/demo.yaml"
seed = 0
# the twin original M_t: M_o fine-tuned on M ∪ D_tf
twin_epochs = 2
twin_lr = 0.0005

# %%
params = notebooks.notebook_params(globals())
ctx = context.prepare(params)
figures_dir = runs.run_dir(params) / "figures"
saved_figures = []
print(f"{params.dataset}, seed {params.seed}, on {ctx.device}")

# %% [markdown]
# ## 1. Generalization labels, and why they are unknown
# Call a forget sample **easy** when the gold model classifies it correctly and **hard** when it
# does not: that is its *generalization label*. An aligned unlearned model should stay right on
# the easy ones and become wrong on the hard ones. But the labels come from the gold model, which
# is exactly what we cannot afford to train.
#
# The twin problem copies the real one with every part known:
#
# | | real problem | twin problem |
# |---|---|---|
# | forget set | `D_f` ⊂ members | `D_tf` ⊂ holdout, same size and classes |
# | model that saw the forget set | `M_o` | `M_t` = `M_o` fine-tuned on `M ∪ D_tf` |
# | model that never saw it (the "gold") | `M_g` (unknown) | `M_o` (known!) |
#
# `M_o` never trained on the holdout, so it relates to `D_tf` exactly as `M_g` relates to `D_f`.
# The twin generalization label is therefore free: `g(x) = 1` when `M_o` is right on `x ∈ D_tf`.

# %%
# NBVAL_CHECK_OUTPUT
forget_y, twin_y = ctx.subset("forget")[1], ctx.subset("twin_forget")[1]
k = ctx.dataset.num_classes
forget_counts, twin_counts = forget_y.bincount(minlength=k), twin_y.bincount(minlength=k)
print(f"{'class':12s} {'D_f':>5s} {'D_tf':>5s}")
for name, nf, nt in zip(ctx.dataset.classes, forget_counts.tolist(), twin_counts.tolist()):
    print(f"{name:12s} {nf:5d} {nt:5d}")

# %%
assert not torch.isin(ctx.splits.twin_forget, ctx.splits.members).any()  # M_o never saw D_tf
if params.forget_scenario != "class":  # a whole class: the holdout holds fewer of it than D_f
    assert torch.equal(forget_counts, twin_counts)

# %% [markdown]
# ## 2. The twin original `M_t`
# Fine-tuning `M_o` for a few epochs on `M ∪ D_tf` lets it fit `D_tf` the way `M_o` fits `D_f`.

# %%
original, _ = context.original_model(ctx)
twin_original, twin_meta = stages.twin_model(ctx, original)
print(f"M_t: {len(twin_meta['losses'])} epochs from M_o, trained in {twin_meta['seconds']:.1f} s")

# %%
refs = scoring.references(ctx)
tx, ty = ctx.subset("twin_forget")
fx, fy = ctx.subset("forget")
real = {"saw it": accuracy(predict(original, fx, ctx.device), fy),
        "never saw it": accuracy(refs.gold_outputs.forget, fy)}
mirror = {"saw it": accuracy(predict(twin_original, tx, ctx.device), ty),
          "never saw it": accuracy(predict(original, tx, ctx.device), ty)}
display(Markdown(
    "| | model that saw the forget set | model that never saw it |\n|---|---|---|\n"
    f"| real: accuracy on `D_f` | M_o {100 * real['saw it']:.2f} % | M_g {100 * real['never saw it']:.2f} % |\n"
    f"| twin: accuracy on `D_tf` | M_t {100 * mirror['saw it']:.2f} % | M_o {100 * mirror['never saw it']:.2f} % |"))

# %%
real_gap, twin_gap = real["saw it"] - real["never saw it"], mirror["saw it"] - mirror["never saw it"]
display(Markdown(f"Seeing the forget set is worth {100 * real_gap:.2f} pp to `M_o` and {100 * twin_gap:.2f} pp to "
                 "`M_t`. The closer the two, the more the twin features (computed with `M_t` on `D_tf`) look "
                 "like the real ones (`M_o` on `D_f`)."))
if len(ctx.splits.twin_forget) >= 1000:  # a smoke-sized D_tf (240) moves in steps of 0.4 pp
    research_check(params, "02_twin_problem", "fine-tuning on M ∪ D_tf makes M_t no worse on D_tf", twin_gap >= 0,
                   f"M_t's gain on D_tf {100 * twin_gap:.2f} pp")

# %% [markdown]
# ## 3. Twin easy rate vs the real easy rate
# The share of easy twin samples, `mean(g)`, is computed without any gold model. The real easy
# rate, the gold model's accuracy on `D_f`, is shown only to check it: we train `M_g` for
# evaluation, TMU never uses it.

# %%
g = twin.generalization_labels(original, tx, ty, ctx.device)
rates = {"twin easy rate\n(M_o on D_tf)": g.float().mean().item(),
         "real easy rate\n(M_g on D_f)": refs.true_easy.float().mean().item()}
fig = plots.plot_rates(rates, "Easy forget samples: twin estimate vs truth", "easy samples (%)")
saved_figures.append(plots.save_fig(fig, "easy_rates", figures_dir))

# %%
twin_rate, true_rate = rates.values()
display(Markdown(f"Twin easy rate **{100 * twin_rate:.2f} %**, real easy rate **{100 * true_rate:.2f} %**: "
                 f"the twin problem estimates the gold model's forget accuracy to within "
                 f"{100 * abs(twin_rate - true_rate):.2f} pp."))

# %%
if params.forget_scenario != "class":  # forgetting a class: M_o has seen that class, M_g has not
    sampling_error = (2 * true_rate * (1 - true_rate) / len(fy)) ** 0.5
    research_check(params, "02_twin_problem", "the twin easy rate tracks the real easy rate",
                   abs(twin_rate - true_rate) < 4 * sampling_error + 0.01,
                   f"twin {100 * twin_rate:.2f} % against real {100 * true_rate:.2f} %, allowed "
                   f"{100 * (4 * sampling_error + 0.01):.2f} pp")

# %% [markdown]
# ## 4. What easy and hard samples look like
# The top rows are twin samples labelled by `M_o`, the bottom rows real forget samples labelled
# by the gold model. Each hard sample's caption reads *true class → predicted class*. Hard
# samples tend to be atypical or ambiguous images of their class: a model that never saw them gets them
# wrong, so an aligned unlearned model should too.

# %%
per_row = 8
twin_pred = predict(original, tx, ctx.device).argmax(1)
gold_pred = refs.gold_outputs.forget.argmax(1)
classes = ctx.dataset.classes


def examples(x, y, predicted, mask):
    """The first `per_row` images under `mask`, captioned with the class (true → predicted if wrong)."""
    idx = mask.nonzero().flatten()[:per_row]
    captions = [classes[t] if t == p else f"{classes[t]}\n→ {classes[p]}"
                for t, p in zip(y[idx].tolist(), predicted[idx].tolist())]
    return x[idx], captions


fig = plots.plot_image_grid({
    "D_tf easy": examples(tx, ty, twin_pred, g), "D_tf hard": examples(tx, ty, twin_pred, ~g),
    "D_f easy": examples(fx, fy, gold_pred, refs.true_easy),
    "D_f hard": examples(fx, fy, gold_pred, ~refs.true_easy)})
saved_figures.append(plots.save_fig(fig, "easy_hard_samples", figures_dir))

# %% [markdown]
# ## Summary
# - The twin problem mirrors the real one: `M_t` saw `D_tf`, `M_o` did not, just as `M_o` saw `D_f`
#   and `M_g` did not.
# - Its generalization labels `g` come for free from `M_o`, and their mean estimates the gold
#   model's forget accuracy.
# - Next, 03 learns to predict `g` from features of a sample, and transfers the predictor to `D_f`.

# %%
# NBVAL_CHECK_OUTPUT
print("figures:", ", ".join(path.name for path in saved_figures))
