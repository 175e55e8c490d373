"""A stream of deletion requests shown: the requests.md table and the figures of alignment and
cumulative cost over the stream (the stream itself: requests.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt


def _pp(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def requests_table(result: dict) -> str:
    """requests.md: the setting, the one-off and, per evaluated request and method, alignment and cost."""
    p, t = result["params"], result["timing"]
    lines = [f"# Stream of {result['n_requests']} deletion requests",
             "",
             f"{p['dataset']} (train_limit {p['train_limit']}), {p['arch']}, {p['epochs']} epochs, seed {p['seed']}; "
             f"{result['members']} members, requests of {result['request_size']} samples, gold model every "
             f"{result['gold_every']} request(s); on {result['env']['device']}.",
             ""]
    if t["one_off"]:
        o = t["one_off"]
        lines += [f"TMU's one-off, paid once: {o['tmu_one_off_s']:.2f} s (M_t {o['twin_s']:.2f} s, M_c "
                  f"{o['curriculum_s']:.2f} s, twin features {o['twin_features_s']:.2f} s, predictor fit "
                  f"{o['predictor_fit_s']:.2f} s).", ""]
    if t.get("retrain_per_request_s"):
        lines += [f"A retrain took {t['retrain_per_request_s']:.2f} s on average (M_o: {t['original_s']:.2f} s).", ""]
    lines += ["| request | method | Δ forget union pp | Δ forget newest pp | AD union | agreement union % | ToW | "
              "time s | cumulative s | retrain cumulative s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for q in result["requests"]:
        if not q["evaluated"]:
            continue
        r = q["request"]
        for method, entries in result["entries"].items():
            e = entries[r - 1]
            retrain = "–" if e["retrain_cumulative_s"] is None else f"{e['retrain_cumulative_s']:.1f}"
            lines.append(f"| {r} | {method} | {_pp(e['delta_forget_union'])} | {_pp(e['delta_forget_newest'])} | "
                         f"{e['activation_distance_union']:.3f} | {_pp(e['agreement_union'])} | {e['tow']:.3f} | "
                         f"{e['time_s']:.2f} | {e['cumulative_s']:.1f} | {retrain} |")
    return "\n".join(lines) + "\n"


def plot_alignment(result: dict) -> plt.Figure:
    """Δ forget and AD on the union forgotten so far against the request index, per method."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method, entries in result["entries"].items():
        evaluated = [e for e in entries if "delta_forget_union" in e]
        x = [e["request"] for e in evaluated]
        axes[0].plot(x, [100 * e["delta_forget_union"] for e in evaluated], marker="o", label=method)
        axes[1].plot(x, [e["activation_distance_union"] for e in evaluated], marker="o", label=method)
    axes[0].set_ylabel("Δ forget on the union (pp)")
    axes[1].set_ylabel("activation distance on the union")
    for ax in axes:
        ax.set_xlabel("request")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cost(result: dict) -> plt.Figure:
    """Cumulative seconds per method against retraining at every request."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for method, entries in result["entries"].items():
        ax.plot([e["request"] for e in entries], [e["cumulative_s"] for e in entries], marker="o", label=method)
    if result["timing"].get("retrain_per_request_s"):
        entries = next(iter(result["entries"].values()))
        ax.plot([e["request"] for e in entries], [e["retrain_cumulative_s"] for e in entries], color="k", ls="--",
                label="retrain each time")
    ax.set_xlabel("request")
    ax.set_ylabel("cumulative time (s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
