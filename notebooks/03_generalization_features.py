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
# # 03 · Generalization-label features and the predictor
# Three cheap per-sample features hint at whether a sample is easy. A small MLP learns from them
# on the twin problem, where the labels are known, and then labels the real forget set.

# %%
import dataclasses

import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from sklearn.metrics import roc_auc_score, roc_curve

from tmu_utils.core import context
from tmu_utils.core.training import predict
from tmu_utils.evaluation import scoring
from tmu_utils.experiments import notebooks, runs
from tmu_utils.experiments.checks import research_check
from tmu_utils.method import generalization, predictor, stages
from tmu_utils.reporting import plots, tables

# %% tags=["parameters"]
# The run starts from params_file (relative: to the repository); the names below are the knobs this
# notebook is about, and papermill's -p (or `python -m tmu_utils run --set`) sets any Params field.
params_file = "params/demo.yaml"
seed = 0
# the features (docs/method.md: features) and the predictor (docs/method.md: the predictor)
features = ["df", "af", "cf"]
curriculum_epochs = 2
knn_k = 5
adv_eps = 0.03
threshold = "rate_match"

# %%
params = notebooks.notebook_params(globals())
ctx = context.prepare(params)
figures_dir = runs.run_dir(params) / "figures"
saved_figures = []
print(f"{params.dataset}, seed {params.seed}, on {ctx.device}")

# %% [markdown]
# ## 1. Three features of "easiness"
# Each feature is computed for a model `f` on a query set: with `(M_t, D_tf)` to train the
# predictor, and with `(M_o, D_f)` to apply it. In both cases `f` is the model that *saw* the
# query set, so the two settings match.
# - **DF, distance.** How far the sample's penultimate feature lies from its `knn_k` nearest
#   same-class neighbours in a fixed bank of retain samples (features from the same model `f`).
#   A typical image sits among its class; an odd one sits apart.
# - **AF, adversarial.** How much a few small PGD steps raise the sample's loss. A sample near the
#   decision boundary is easily pushed across it.
# - **CF, curriculum.** The loss of `M_c`, a model trained for only `curriculum_epochs` epochs.
#   Samples that an early-stopped model already fits are the ones learnt from the data's general
#   patterns, not memorised.

# %%
original, _ = context.original_model(ctx)
twin_original, _ = stages.twin_model(ctx, original)
curriculum, curriculum_meta = stages.curriculum_model(ctx)
raw, features_meta = stages.generalization_features(ctx, original, twin_original, curriculum)
print(f"M_c: {len(curriculum_meta['losses'])} epochs; features computed in {features_meta['seconds']:.1f} s")

# %%
# NBVAL_CHECK_OUTPUT
for part in ("twin", "forget"):
    print(f"{part:6s}", {name: tuple(values.shape) for name, values in raw[part].items()})
print("twin labels g:", tuple(raw["twin_labels"].shape), raw["twin_labels"].dtype)

# %%
# extra code – CF from scratch, checked against the package: the early-stopped model's loss on D_f
fx, fy = ctx.subset("forget")
curriculum_loss = F.cross_entropy(predict(curriculum, fx, ctx.device), fy, reduction="none")
# equal up to float rounding: the features may come from a cache filled on another CPU, and the losses
# reach 1e-6 (measured: at most 1.4e-6 apart with oneDNN capped at AVX2 against AVX-512's cache)
assert torch.allclose(curriculum_loss, raw["forget"]["cf"], rtol=1e-4, atol=1e-5)

# %% [markdown]
# ## 2. Do the features separate easy from hard?
# Here, and only to evaluate, we colour the real forget samples by their true generalization label
# (from the gold model).

# %%
refs = scoring.references(ctx)
true_easy = refs.true_easy
both_kinds = bool(true_easy.any() and (~true_easy).any())  # forgetting a whole class leaves no easy sample
fig = plots.plot_feature_distributions(raw["forget"], true_easy)
saved_figures.append(plots.save_fig(fig, "feature_distributions", figures_dir))

# %%
single_auc = {name: roc_auc_score(true_easy.numpy(), -values.numpy()) if both_kinds else float("nan")
              for name, values in raw["forget"].items()}
display(Markdown(tables.markdown_table(
    ["feature", "mean, easy", "mean, hard", "AUC of −feature for easy"],
    [[name.upper(), f"{values[true_easy].mean():.3f}", f"{values[~true_easy].mean():.3f}", f"{single_auc[name]:.3f}"]
     for name, values in raw["forget"].items()])))

# %%
if both_kinds:
    research_check(params, "03_generalization_features", "every selected feature ranks easy above hard",
                   all(single_auc[name] > 0.5 for name in params.features),
                   ", ".join(f"{name} AUC {single_auc[name]:.3f}" for name in params.features))

# %% [markdown]
# ## 3. The predictor
# An MLP (`n_features → 32 → 16 → 1`) is fitted on the twin features with the twin labels `g`,
# then scores every forget sample with P(easy). Each feature is clipped to its inter-quartile fence
# and scaled to [0, 1] (`feature_scaling`): features of `M_t` on `D_tf` and of `M_o` on `D_f` need not
# share a scale. The gold labels appear below only to judge the predictor.

# %%
pred = generalization.predict_generalization(ctx, raw)
quality = predictor.quality_report(pred.proba, pred.easy, true_easy, pred.twin_easy_rate, pred.twin_cv_accuracy)
display(Markdown(tables.predictor_table(quality)))

# %%
if both_kinds:
    fpr, tpr, _ = roc_curve(true_easy.numpy(), pred.proba.numpy())
    fig = plots.plot_roc(fpr, tpr, quality["auc"], label="twin-trained predictor on D_f")
    saved_figures.append(plots.save_fig(fig, "predictor_roc", figures_dir))
    research_check(params, "03_generalization_features", "the predictor ranks easy above hard (AUC > 0.7)",
                   quality["auc"] > 0.7, f"AUC {quality['auc']:.3f}")
else:
    print("every forget sample is hard (or every one easy): the ROC curve is undefined")

# %% [markdown]
# ## 4. From scores to labels: the threshold
# With `threshold = "rate_match"` the cut is placed so that the share of `D_f` called easy equals
# the twin easy rate. The twin easy rate is our estimate of the gold model's forget accuracy, so
# this aims straight at the alignment gap Δ even where single predictions are wrong. A plain `0.5`
# cut is the alternative.

# %%
display(Markdown(
    f"Threshold {pred.threshold:.3f}: **{100 * quality['predicted_easy_rate']:.2f} %** of `D_f` called easy "
    f"(twin easy rate {100 * pred.twin_easy_rate:.2f} %, true easy rate {100 * quality['true_easy_rate']:.2f} %); "
    f"{100 * quality['accuracy']:.1f} % of the predicted labels are right."))

# %%
if params.threshold == "rate_match":
    assert abs(quality["predicted_easy_rate"] - pred.twin_easy_rate) <= 1 / len(pred.easy)

# %% [markdown]
# ## 5. Feature ablation
# Which features matter? The predictor is refitted on every subset. The features are cached, so
# this only retrains the small MLP.

# %%
subsets = [["df"], ["af"], ["cf"], ["df", "af"], ["df", "cf"], ["af", "cf"], ["df", "af", "cf"]]
ablation = {}
for subset in subsets:
    variant = dataclasses.replace(ctx, params=dataclasses.replace(params, features=subset))
    out = generalization.predict_generalization(variant, raw)
    ablation["+".join(subset)] = predictor.quality_report(out.proba, out.easy, true_easy, out.twin_easy_rate,
                                                          out.twin_cv_accuracy)
columns = ("auc", "balanced_accuracy", "accuracy", "predicted_easy_rate", "twin_cv_accuracy")
display(Markdown(tables.markdown_table(["features", *columns],
                                       [[name, *(tables.fmt(c, q[c]) for c in columns)] for name, q in ablation.items()])))

# %%
best = max(ablation, key=lambda name: ablation[name]["auc"])
display(Markdown(f"Best AUC: **{best}** ({ablation[best]['auc']:.3f}); all three features: "
                 f"{ablation['df+af+cf']['auc']:.3f}; the selected `features` {params.features}: "
                 f"{quality['auc']:.3f}."))

# %% [markdown]
# ## Summary
# - DF, AF and CF are computed the same way on the twin problem and on the real forget set.
# - A predictor fitted only on the twin problem ranks the real forget samples by how likely the
#   gold model is to get them right; its quality against the gold labels is in the tables above.
# - The `rate_match` threshold makes the predicted easy share equal the twin easy rate.
# - Next, 04 unlearns with these predicted labels.

# %%
# NBVAL_CHECK_OUTPUT
print("figures:", ", ".join(path.name for path in saved_figures))
