# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Unlearning: TMU, its variants and the baselines
# TMU fine-tunes a copy of the original model so that it stays right on the forget samples it
# predicts easy and becomes wrong on those it predicts hard. Every baseline runs on the same data.

# %%
import torch
from IPython.display import Markdown, display

from tmu_utils import generalization, pipeline, plots, runs, scoring
from tmu_utils.metrics import accuracy
from tmu_utils.params import params_from_namespace
from tmu_utils.training import predict

# %% tags=["parameters"]
# the run: figures (and 05's results.json) go to runs/<name>/<seed>/ unless out_dir is set
name = "demo"
seed = 0
device = "auto"  # auto: CUDA when present
deterministic = False  # True: deterministic cuDNN and torch algorithms (slower on a GPU)
progress = True
cache_dir = ""  # empty: $TMU_CACHE_DIR or ~/.cache/tmu/artifacts
out_dir = ""
# data and the forget request (docs/method.md: data splits); half of Fashion-MNIST keeps all six notebooks within
# 10 minutes on a 2-core CPU
dataset = "fashion_mnist"
data_dir = ""
image_size = 64  # imagefolder only
train_limit = 30000
test_limit = 0
member_fraction = 0.8
forget_scenario = "random"
forget_fraction = 0.1
forget_class = 0  # class scenarios only
# the recipe of M_o, M_g, M_g' and M_c: Adam without weight decay lets M_o memorise its members,
# so it sits visibly above the gold model on D_f; 15 epochs (not 20) for the time budget
arch = "small_cnn"
epochs = 15
batch_size = 256
optimizer = "adam"
lr = 0.001
momentum = 0.9
weight_decay = 0.0
schedule = "onecycle"
augment = False
# the twin original M_t: M_o fine-tuned on M ∪ D_tf
twin_epochs = 2
twin_lr = 0.0005
# generalization-label features (docs/method.md: features) and the predictor (docs/method.md: the predictor)
curriculum_epochs = 2
features = ["df", "af", "cf"]
knn_k = 5
bank_per_class = 500
adv_steps = 5
adv_eps = 0.03
feature_scaling = "per_set"
predictor_epochs = 200
predictor_lr = 0.01
threshold = "rate_match"
cv_folds = 5
# unlearning (docs/method.md: unlearning): the methods to run and TMU's fine-tune
methods = ["original", "retrain", "tmu", "tmu_oracle", "tmu_all_hard", "tmu_random_rank", "tmu_soft", "tmu_margin",
           "finetune", "neggrad", "neggrad_plus", "random_label", "bad_teacher", "scrub", "salun", "l1_sparse"]
unlearn_epochs = 3
unlearn_lr = 0.005
unlearn_batch_size = 128
retain_fraction = 0.3
hard_loss = "random_label"
hard_label = "runner_up"
tmu_target = "hard"
hard_repeat = 4
noise_std = 0.05
# baselines (docs/method.md: unlearning)
neggrad_lr = 0.00015
neggrad_plus_alpha = 0.5
bad_teacher_temperature = 1.0
scrub_lr = 0.002
scrub_max_epochs = 2
scrub_alpha = 1.0
scrub_gamma = 0.1
scrub_temperature = 4.0
salun_sparsity = 0.5
l1_sparse_alpha = 0.0005

# %%
params = params_from_namespace(globals())
ctx = pipeline.prepare(params)
figures_dir = runs.run_dir(params) / "figures"
saved_figures = []
print(f"{params.dataset}, seed {params.seed}, on {ctx.device}")

# %% [markdown]
# ## 1. The device
# With `device = "auto"` every stage runs on CUDA when a GPU is present (data held on the GPU,
# bf16 autocast), else on the CPU. Unlearning times below are measured on this device.

# %%
env = runs.environment(ctx.device)
threads = "" if ctx.device.type == "cuda" else f" (CPU threads: {torch.get_num_threads()})"
print(f"torch {env['torch']} on {env['device']}{threads}")

# %% [markdown]
# ## 2. The models so far
# Training curves of the four models the earlier notebooks built (fetched from the cache, or
# trained now). The twin original `M_t` continues `M_o`'s training on `M ∪ D_tf`; the curriculum
# model `M_c` stops after a few epochs, while its loss is still high: that early loss is what the
# CF feature reads.

# %%
refs = scoring.references(ctx)
curves = {"original M_o": pipeline.original_model(ctx)[1]["losses"],
          "gold M_g": pipeline.gold_model(ctx)[1]["losses"],
          "twin M_t": pipeline.twin_model(ctx, refs.original)[1]["losses"],
          "curriculum M_c": pipeline.curriculum_model(ctx)[1]["losses"]}
fig = plots.plot_training_curves(curves, first_epoch={"twin M_t": len(curves["original M_o"]) + 1})
saved_figures.append(plots.save_fig(fig, "training_curves", figures_dir))

# %%
assert curves["curriculum M_c"][-1] > curves["original M_o"][-1], "the early-stopped M_c fits as well as M_o"

# %% [markdown]
# ## 3. TMU's one-off preparation
# Everything TMU does before touching the model: the twin original, the curriculum model, the
# features and the predictor (notebooks 02 and 03). It receives `M_o` only, never the gold model.
# Its cost is paid once per original model: later forget requests against the same `M_o` can reuse
# the fitted predictor.

# %%
pred, tmu_timing = generalization.tmu_predict_easy(ctx, refs.original)
n_easy = int(pred.easy.sum())
print(f"predicted easy: {n_easy} of {len(pred.easy)} forget samples, hard: {len(pred.easy) - n_easy}")
print(", ".join(f"{key} {seconds:.1f} s" for key, seconds in tmu_timing.items()))

# %% [markdown]
# ## 4. Easy and hard unlearning
# TMU fine-tunes a copy of `M_o` for `unlearn_epochs` epochs (SGD) on one pool of samples:
# - a `retain_fraction` share of `D_r`, so the model keeps what it should know;
# - the **predicted-easy** forget samples with their *true* labels: the gold model would get them
#   right, so should we. They are seen with fresh Gaussian noise (`noise_std`), which keeps them
#   right without the extra confidence that a membership-inference attack would read;
# - the **predicted-hard** forget samples with a *wrong* label (`hard_label = "runner_up"`:
#   `M_o`'s second choice, a plausible mistake of the kind the gold model makes), repeated
#   `hard_repeat` times so that they are not drowned by the retain samples.
#
# Two variants bracket it: `tmu_oracle` gets the gold model's labels (the best the predictor could
# do) and `tmu_all_hard` calls every sample hard, the conventional "make the model fail on `D_f`"
# behaviour. `tmu_soft` and `tmu_margin` replace the confident flip by a per-sample target, a soft
# label or a margin drawn from samples `M_o` never saw (docs/method.md, "Target variants"). The
# baselines (fine-tuning, NegGrad, NegGrad+, random labels, Bad Teacher, SCRUB,
# SalUn, ℓ1-sparse) start from the same `M_o` with the same data. Unlearned outputs are cached, so
# 05 scores them without rerunning.

# %%
unlearning_methods = [m for m in params.methods if m not in ("original", "retrain")]
outputs, seconds = {}, {}
for method in unlearning_methods:
    outputs[method], seconds[method] = scoring.method_outputs(ctx, refs, method, pred)
    print(f"{method:14s} {seconds[method]:6.1f} s")

# %%
fx, fy = ctx.subset("forget")
forget_acc = {"original": accuracy(predict(refs.original, fx, ctx.device), fy),
              "retrain": accuracy(refs.gold_outputs.forget, fy)}
forget_acc.update({method: accuracy(out.forget, fy) for method, out in outputs.items()})
fig = plots.plot_forget_accuracy({"methods": {method: {"forget_acc": a} for method, a in forget_acc.items()}})
saved_figures.append(plots.save_fig(fig, "forget_accuracy_by_method", figures_dir))

# %% [markdown]
# The dashed line is the target. Bars far below it are methods that *destroy* the forget set
# rather than align with the gold model.

# %%
if "tmu" in outputs and pred.easy.any() and (~pred.easy).any():
    tmu_right = outputs["tmu"].forget.argmax(1) == fy
    on_easy, on_hard = tmu_right[pred.easy].float().mean().item(), tmu_right[~pred.easy].float().mean().item()
    display(Markdown(f"After TMU the model is right on **{100 * on_easy:.1f} %** of the forget samples it "
                     f"predicted easy and on **{100 * on_hard:.1f} %** of those it predicted hard."))
    assert on_easy > on_hard

# %%
gold_acc = forget_acc["retrain"]
times = {"original": 0.0, "retrain": refs.timing["gold_s"], **seconds}
display(Markdown("| method | forget % | Δ to gold pp | time s |\n|---|---|---|---|\n" + "\n".join(
    f"| {method} | {100 * a:.2f} | {100 * abs(a - gold_acc):.2f} | {times[method]:.1f} |"
    for method, a in forget_acc.items())))

# %%
if {"tmu", "tmu_all_hard"} <= set(forget_acc) and params.forget_scenario != "class":
    assert abs(forget_acc["tmu"] - gold_acc) < abs(forget_acc["tmu_all_hard"] - gold_acc)

# %% [markdown]
# ## Summary
# - TMU's only extra input over a conventional method is the predicted easy/hard label of each
#   forget sample; the gold model is never used.
# - Easy samples are kept with their labels, hard ones pushed to a plausible wrong class; the
#   all-hard variant shows what happens when every sample is pushed away.
# - 05 scores every method against the gold model and the noise floor.

# %%
# NBVAL_CHECK_OUTPUT
print("figures:", ", ".join(path.name for path in saved_figures))
