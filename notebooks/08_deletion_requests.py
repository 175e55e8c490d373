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
# # 08 · Deletion requests: does alignment hold up over a stream, and what does it cost?
# A deployed model receives deletion requests one after another. Each method applies every request
# to the model the previous one left, and is judged against a model retrained without everything
# forgotten so far. TMU builds its twin problem and predictor once per original model and then pays,
# per request, only the request's features, the predictor's inference and the unlearning. This
# notebook reads a folder written by `python -m tmu_utils requests PARAMS --requests R --out DIR`;
# by default the committed benchmark (`benchmarks/requests_speed.py`).

# %%
import json
import math

from IPython.display import Markdown, display

from tmu_utils.core.params import params_from_namespace
from tmu_utils.experiments import runs
from tmu_utils.reporting import requests_report

# %% tags=["parameters"]
requests_dir = ""  # empty: benchmarks/results/requests, the committed benchmark

# %%
params = params_from_namespace(globals())
folder = runs.REPO_ROOT / (params.requests_dir or "benchmarks/results/requests")  # relative: to the repo
stream = json.loads((folder / "requests.json").read_text())
entries, timing = stream["entries"], stream["timing"]
p = stream["params"]
evaluated = [q["request"] for q in stream["requests"] if q["evaluated"]]
print(f"{p['dataset']} (train_limit {p['train_limit']}), {p['arch']}, {p['epochs']} epochs, seed {p['seed']}, on "
      f"{stream['env']['device']}; the command's last invocation took {timing['total_s'] / 60:.1f} min")

# %%
# NBVAL_CHECK_OUTPUT
print("members:", stream["members"])
print("requests:", stream["n_requests"], "of", stream["request_size"], "samples")
print("gold model at requests:", evaluated)
print("methods:", ", ".join(stream["methods"]))

# %% [markdown]
# ## 1. The stream
# The requests are disjoint random subsets of the members. After request `r` the gold model is
# retrained on the members minus requests `1..r`; its accuracy on the union forgotten so far is what
# every method should reproduce. The gold model's accuracy on the forgotten samples is the
# "generalisation" that TMU aims to keep: a retrained model still gets most of them right.

# %%
assert all(len(entries[m]) == stream["n_requests"] for m in stream["methods"]), "a method misses a request"
rows = [f"| {q['request']} | {q['union_size']} | {100 * q['gold']['forget_acc_union']:.2f} | "
        f"{100 * q['gold']['forget_acc_newest']:.2f} | {100 * q['gold']['test_acc']:.2f} | {q['gold_s']:.1f} |"
        for q in stream["requests"] if q["evaluated"]]
display(Markdown("| request | forgotten so far | gold: union % | gold: newest request % | gold: test % | retrain s |\n"
                 "|---|---|---|---|---|---|\n" + "\n".join(rows)))

# %% [markdown]
# ## 2. Alignment over the stream
# Δ forget is the gap between a method's accuracy on the union forgotten so far and the gold
# model's; the activation distance (AD) compares their softmax outputs sample by sample. A method
# whose errors pile up from request to request drifts upwards here.

# %%
fig = requests_report.plot_alignment(stream)

# %%
header = "| method | " + " | ".join(f"Δ union pp, r={r}" for r in evaluated) + " | Δ newest pp (mean) | ToW (last) |"
lines = [header, "|---|" + "---|" * (len(evaluated) + 2)]
for method in stream["methods"]:
    scored = [e for e in entries[method] if e["request"] in evaluated]
    newest = sum(e["delta_forget_newest"] for e in scored) / len(scored)
    lines.append(f"| {method} | " + " | ".join(f"{100 * e['delta_forget_union']:.2f}" for e in scored)
                 + f" | {100 * newest:.2f} | {scored[-1]['tow']:.3f} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 3. What it costs
# Retraining at every request costs one retrain per request (`r` times the mean retrain time
# measured in this stream). TMU's curve starts at its one-off and then rises by its per-request
# cost; the baselines pay only their unlearning.

# %%
fig = requests_report.plot_cost(stream)

# %%
tmu = entries.get("tmu")
if tmu is not None:
    one = timing["one_off"]
    stage_means = {k: sum(e["stages"][k] for e in tmu) / len(tmu) for k in ("features_s", "inference_s", "unlearn_s")}
    per_request = sum(e["time_s"] for e in tmu) / len(tmu)
    retrain = timing["retrain_per_request_s"]
    display(Markdown(
        f"- One-off, paid once: {one['tmu_one_off_s']:.1f} s (M_t {one['twin_s']:.1f} s, M_c {one['curriculum_s']:.1f} s, "
        f"twin features {one['twin_features_s']:.1f} s, predictor fit {one['predictor_fit_s']:.2f} s).\n"
        f"- Per request: {per_request:.2f} s (features {stage_means['features_s']:.2f} s, inference "
        f"{stage_means['inference_s']:.4f} s, unlearning {stage_means['unlearn_s']:.2f} s); a retrain "
        f"{retrain:.1f} s, so {retrain / per_request:.1f}× cheaper per request.\n"
        f"- With the one-off spread over the {len(tmu)} requests: "
        f"{retrain / (per_request + one['tmu_one_off_s'] / len(tmu)):.1f}× cheaper; the cumulative time after the "
        f"last request is {tmu[-1]['cumulative_s']:.0f} s against {tmu[-1]['retrain_cumulative_s']:.0f} s of "
        f"retraining."))

# %%
for method in stream["methods"]:
    cumulative = [e["cumulative_s"] for e in entries[method]]
    assert cumulative == sorted(cumulative), f"{method}: cumulative time decreases"

# %% [markdown]
# ## 4. Does the request-independent twin align as well as the matched one?
# The benchmark also runs single-request TMU with both twins at seeds never reported elsewhere
# (`speed.md`, absent from a folder written by the command alone).

# %%
speed = folder / "speed.md"
if speed.is_file():
    text = speed.read_text()
    display(Markdown(text[text.index("## Alignment"):]))

# %% [markdown]
# ## 5. What the stream says

# %%
last = evaluated[-1]
final = {m: entries[m][last - 1] for m in stream["methods"]}
order = sorted(stream["methods"], key=lambda m: final[m]["delta_forget_union"])
lines = [f"- After request {last} ({stream['requests'][last - 1]['union_size']} samples forgotten), Δ forget on the "
         "union, smallest first: " + ", ".join(f"{m} {100 * final[m]['delta_forget_union']:.2f} pp" for m in order) + "."]
if "tmu" in final:
    first = entries["tmu"][evaluated[0] - 1]
    lines.append(f"- TMU's Δ on the union goes from {100 * first['delta_forget_union']:.2f} pp (request "
                 f"{evaluated[0]}) to {100 * final['tmu']['delta_forget_union']:.2f} pp (request {last}); its AD from "
                 f"{first['activation_distance_union']:.3f} to {final['tmu']['activation_distance_union']:.3f}.")
    lines.append(f"- Speed: {final['tmu']['speedup']:.1f}× cheaper than retraining at every request, one-off "
                 f"included, after request {last}.")
diverged = [m for m in stream["methods"] if math.isnan(final[m]["activation_distance_union"])]
if diverged:  # NaN outputs: the fine-tune blew up at these fixed knobs
    lines.append(f"- Diverged (outputs not finite, AD undefined): {', '.join(diverged)}.")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Summary
# - Each request is applied to the model the previous one left; the gold model is retrained on
#   everything not yet forgotten. Alignment is read on the union so far and on the newest request.
# - TMU pays its twin problem once; a request costs its features, one forward pass of the
#   predictor and the unlearning fine-tune, which dominates.
# - `requests.json` holds every number shown here; `requests.md` the table.
