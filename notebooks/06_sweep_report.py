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
# # 06 · Sweep report: means and confidence intervals over runs
# One run is one draw of the splits, the initialisations and the batches. This notebook gathers
# every finished run below a folder (seeds, and parameter settings of a sweep) into mean ± 95 % CI.
# It only reads results: `python -m tmu_utils sweep` runs it once, after the sweep's runs.

# %%
from pathlib import Path

from IPython.display import Markdown, display

from tmu_utils.experiments import runs, sweep
from tmu_utils.reporting import plots, tables

# %% tags=["parameters"]
# the folder of runs to summarise (relative: to the repository). The demo reads the five-seed sweep
# of params/default.yaml with every method twin-tuned, measured for the README and committed with it.
sweep_dir = "benchmarks/results/default_seeds_twin"
out_dir = ""  # where the figures go; empty: runs/sweep_report

# %%
sweep_folder = runs.REPO_ROOT / sweep_dir
figures_dir = Path(out_dir or runs.REPO_ROOT / "runs" / "sweep_report") / "figures"
saved_figures = []
print(f"summarising the runs below {sweep_folder}")

# %% [markdown]
# ## 1. The runs
# A run is a folder holding a complete `results.json`: `<folder>/<seed>/` for a list of seeds, or
# `<folder>/<setting>/<seed>/` for a sweep over a parameter grid.

# %%
sweep_runs = sweep.find_runs(sweep_folder)
assert sweep_runs, f"no finished run below {sweep_folder}"
seeds = {}
for run in sweep_runs:
    seeds.setdefault(run.label, []).append(run.seed)
display(Markdown(tables.markdown_table(["setting", "runs", "seeds"],
                                       [[label, len(s), ", ".join(map(str, sorted(s)))] for label, s in seeds.items()])))

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
        "and read `runs/seeds`."))

# %%
table = sweep.collect(sweep_runs)
display(Markdown(sweep.summary_markdown(table)))

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
# - The table is the sweep's `summary.md` (`python -m tmu_utils sweep` writes it, with `summary.csv`);
#   the folder of runs is only read, and the figures go to `out_dir`.
# - Compare methods by their intervals, and Δ with the noise floor's interval.

# %%
print("figures:", ", ".join(path.name for path in saved_figures))
