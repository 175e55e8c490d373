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
# # 06 · Sweep report: means and confidence intervals over runs
# One run is one draw of the splits, the initialisations and the batches. This notebook gathers
# every run below a folder (seeds, and parameter settings of a sweep) into mean ± 95 % CI.

# %%
import json
from pathlib import Path

from IPython.display import Markdown, display

from tmu_utils import pipeline, plots, runs, sweep
from tmu_utils.params import params_from_namespace

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
# gold-free tuning: fixed keeps the knobs above, twin chooses them per run (docs/tuning.md)
tuning = "fixed"
tune_budget = 8
# evaluation (docs/method.md: single-run metrics)
mia_max_per_side = 5000
# the folder of runs to summarise (relative: to the repository; empty: runs/<name>). The demo
# reads the five-seed sweep of params/default.yaml measured for the README and committed with it.
sweep_dir = "benchmarks/results/default_seeds"

# %%
params = params_from_namespace(globals())
ctx = pipeline.prepare(params)
run_folder = runs.run_dir(params)
figures_dir = run_folder / "figures"
saved_figures = []
sweep_folder = runs.REPO_ROOT / (params.sweep_dir or Path("runs", params.name))  # relative: to the repo
print(f"summarising the runs below {sweep_folder}")

# %% [markdown]
# ## 1. The runs
# A run is a folder holding a complete `results.json`: `<folder>/<seed>/` for a list of seeds, or
# `<folder>/<setting>/<seed>/` for a sweep over a parameter grid (`python -m tmu_utils sweep`).
# When there is none yet, this notebook scores its own run (from the cache) so it has one to show.

# %%
sweep_runs = []
for path in sorted(sweep_folder.glob("**/results.json")):
    setting = "/".join(path.parent.relative_to(sweep_folder).parts[:-1]) or "base"
    sweep_runs.append(sweep.SweepRun(setting, json.loads(path.read_text())["params"]["seed"], [], path.parent))
sweep_runs = [run for run in sweep_runs if run.done]
if not sweep_runs:
    runs.evaluate(ctx)
    sweep_runs = [sweep.SweepRun("base", params.seed, [], run_folder)]
seeds = {}
for run in sweep_runs:
    seeds.setdefault(run.label, []).append(run.seed)
display(Markdown("| setting | runs | seeds |\n|---|---|---|\n" + "\n".join(
    f"| {label} | {len(s)} | {', '.join(map(str, sorted(s)))} |" for label, s in seeds.items())))

# %% [markdown]
# ## 2. Mean ± 95 % CI per method
# For each setting and method, every metric is averaged over seeds; the half-width of the 95 %
# confidence interval comes from Student's t with `n − 1` degrees of freedom. Differences between
# methods smaller than these intervals are not evidence of anything.

# %%
if max(len(s) for s in seeds.values()) < 2:
    display(Markdown(
        "**Only one seed per setting**, so there are no confidence intervals yet: a 95 % CI needs at least "
        "two seeds. Run, for example, `python -m tmu_utils sweep params/sweeps/seeds.yaml --out runs/seeds` "
        "and set `sweep_dir = \"runs/seeds\"`."))

# %%
table = sweep.collect(sweep_runs)
run_folder.mkdir(parents=True, exist_ok=True)
summary_path = sweep.summarize(sweep_runs, run_folder)
display(Markdown(summary_path.read_text()))

# %%
for (label, method), metrics in table.items():
    if method != "predictor":
        assert len(metrics["delta_forget"]) == len(seeds[label]), (label, method)

# %% [markdown]
# ## 3. Δ per method, with error bars

# %%
for index, label in enumerate(seeds):
    delta = {method: sweep.mean_ci(metrics["delta_forget"]) for (row, method), metrics in table.items()
             if row == label and method not in ("predictor", "noise_floor", "retrain")}
    floor = sweep.mean_ci(table[(label, "noise_floor")]["delta_forget"])
    title = f"{label}: Δ forget over {len(seeds[label])} seed(s), mean ± 95 % CI"
    fig = plots.plot_delta_ci(delta, floor, title=title)
    saved_figures.append(plots.save_fig(fig, f"sweep_delta_{index}", figures_dir))

# %% [markdown]
# ## Summary
# - `summary.md` and `summary.csv` (every metric: mean, CI half-width, number of seeds) are written
#   to this notebook's run folder, with the figures; the folder of runs is only read.
# - Compare methods by their intervals, and Δ with the noise floor's interval.

# %%
print("figures:", ", ".join(path.name for path in saved_figures))
print("summary:", summary_path.name, "and", summary_path.with_suffix(".csv").name)
