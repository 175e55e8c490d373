"""What a population says about TMU (notebook 07's verdict): the decisions, computed from the result
dict of `population` and its per-sample arrays, then the same decisions as markdown bullets. The bars
are the ones docs/method.md names: the floor (retrain B against A) and doing nothing (the original)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..core.choices import REFERENCE_STEP, VARIANTS
from ..core.variants import split_of
from .tables import forgetting_label

# The first milestone: U-LiRA below doing nothing's, with Δ forget at most the floor's + this.
MILESTONE_DELTA_SLACK = 0.01
# The goal: U-LiRA at most this far above the floor's, and below every baseline's.
GOAL_ULIRA_GAP = 0.05


def easy_forget_samples(retrain_a: np.ndarray) -> np.ndarray:
    """The gold model's easy forget samples: those most of retrain A's models classify correctly.
    `retrain_a` holds their margins, (n_models, n_forget); a tie is hard."""
    return (np.asarray(retrain_a, dtype=float) > 0).mean(0) > 0.5  # (n_forget,)


def shift_and_spread(margins: np.ndarray, retrain_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per forget sample, how far a population's mean margin sits from retrain A's (positive: more
    confident in the true class) and its spread across seeds over retrain A's (1: the retrains' own)."""
    margins, retrain_a = np.asarray(margins, dtype=float), np.asarray(retrain_a, dtype=float)
    shift = margins.mean(0) - retrain_a.mean(0)
    spread = margins.std(0, ddof=1) / np.maximum(retrain_a.std(0, ddof=1), 1e-6)
    return shift, spread


def baselines(population: dict) -> list[str]:
    """The population's methods that are neither TMU (any row of it) nor doing nothing."""
    params = population.get("params", {})
    return [m for m in population["methods"] if split_of(m, params) is None and m != "original"]


def tmu_variants(population: dict) -> list[tuple[str, str]]:
    """(kind, row) of each TMU row with the predictor's split other than `tmu`, in the order of the
    variants: `Step` where the row sets a step knob, `Target` otherwise."""
    params = population.get("params", {})
    variants = params.get("variants", VARIANTS)
    return [("Step" if set(variants[v]) & set(REFERENCE_STEP) else "Target", v) for v in variants
            if v in population["methods"] and split_of(v, params) == "predictor"]


def population_verdict(population: dict, samples: Mapping[str, np.ndarray], step_decision: dict | None = None) -> dict:
    """The decisions on `population` (population.json) and `samples` (population_samples.npz): the floor,
    then, when TMU ran, TMU against doing nothing, every baseline, its controls and variants, on easy and
    hard forget samples, on F, and against the first milestone and the goal. `step_decision` is the twin
    problem's choice of the default step
    (step_choice's `decision`), shown when given."""
    methods, floor = population["methods"], population["floor"]
    ulira = {m: row["ulira"]["balanced_accuracy"] for m, row in methods.items()}
    klom_p95 = {m: row["klom"]["forget"]["p95"] for m, row in methods.items()}
    verdict = {"floor": {"ulira": floor["ulira"]["balanced_accuracy"], "klom_p95": floor["klom"]["forget"]["p95"]},
               "tmu": None}
    if "tmu" not in methods:
        return verdict
    tmu, others = methods["tmu"], baselines(population)
    harder = [m for m in others if ulira[m] < ulira["tmu"]]
    variants = tmu_variants(population)
    params = population.get("params", {})
    retrain_a = samples["margins/retrain_a"]
    easy = easy_forget_samples(retrain_a)
    shift, spread = shift_and_spread(samples["margins/tmu"], retrain_a)
    klom_tmu, klom_original = samples["tmu/forget"], samples["original/forget"]
    f_name = forgetting_label(population)
    forgetting = None
    if "forgetting" in tmu:
        forgetting = {"name": f_name, "tmu": tmu["forgetting"]["F"], "original": methods["original"]["forgetting"]["F"],
                      "floor": floor["forgetting"]["F"],
                      "baselines_above": [m for m in others if methods[m]["forgetting"]["F"] > tmu["forgetting"]["F"]]}
    delta, floor_delta = tmu["delta_forget"]["mean"], floor["delta_forget"]["mean"]
    gap = ulira["tmu"] - floor["ulira"]["balanced_accuracy"]
    below_all = all(ulira["tmu"] < ulira[m] for m in others)
    verdict["tmu"] = {
        "ulira": ulira["tmu"], "ulira_original": ulira["original"], "klom_p95": klom_p95["tmu"],
        "klom_p95_original": klom_p95["original"], "forget_acc": tmu["forget_acc"]["mean"],
        "forget_acc_retrains": floor["forget_acc"]["mean"],
        "harder_than_original": ulira["tmu"] < ulira["original"],
        "harder_baselines": harder, "easier_baselines": [m for m in others if m not in harder],
        # TMU at the random split (the ranking control) and at the gold model's (the oracle)
        "controls": {m: {"split": split_of(m, params), "ulira": ulira[m], "klom_p95": klom_p95[m]}
                     for split in ("random", "gold") for m in methods if split_of(m, params) == split},
        "variants": [{"kind": kind, "name": v, "ulira": ulira[v], "klom_p95": klom_p95[v],
                      "delta_forget": methods[v]["delta_forget"]["mean"]} for kind, v in variants],
        "delta_forget": delta, "floor_delta_forget": floor_delta,
        "easy": {"shift": shift[easy].mean(), "spread": np.median(spread[easy]), "klom": klom_tmu[easy].mean(),
                 "klom_original": klom_original[easy].mean()},
        "hard": {"klom": klom_tmu[~easy].mean(), "klom_original": klom_original[~easy].mean()},
        "forgetting": forgetting,
        "step_decision": step_decision,
        "not_applicable": dict(population.get("not_applicable", {})),
        "first_milestone": ulira["tmu"] < ulira["original"] and delta <= floor_delta + MILESTONE_DELTA_SLACK,
        "ulira_gap_to_floor": gap, "below_every_baseline": below_all,
        "goal": gap <= GOAL_ULIRA_GAP and below_all,
    }
    return verdict


def verdict_text(verdict: dict) -> str:
    """`verdict` (population_verdict) as markdown bullets, one per decision, each with its numbers."""
    floor, t = verdict["floor"], verdict["tmu"]
    lines = [f"- Floor (retrain B vs A): U-LiRA {100 * floor['ulira']:.1f} %, KLoM p95 on D_f {floor['klom_p95']:.3f}."]
    if t is None:
        return lines[0]
    lines += [
        f"- TMU: U-LiRA {100 * t['ulira']:.1f} % (doing nothing: {100 * t['ulira_original']:.1f} %), KLoM p95 "
        f"{t['klom_p95']:.3f} (doing nothing: {t['klom_p95_original']:.3f}); forget accuracy "
        f"{100 * t['forget_acc']:.2f} % against the retrains' {100 * t['forget_acc_retrains']:.2f} %.",
        f"- TMU is {'harder' if t['harder_than_original'] else 'easier'} to tell from retraining than the "
        f"untouched original, on U-LiRA.",
        f"- Baselines harder to tell from retraining than TMU (lower U-LiRA): "
        f"{', '.join(t['harder_baselines']) or 'none'}; easier: {', '.join(t['easier_baselines']) or 'none'}.",
    ]
    for name, c in t["controls"].items():
        if c["split"] == "random":
            lines.append(f"- The same number of easy samples chosen at random ({name}): U-LiRA "
                         f"{100 * c['ulira']:.1f} %, KLoM p95 {c['klom_p95']:.3f}. The gap "
                         f"to TMU is what the predictor's ranking buys.")
        else:
            lines.append(f"- With the gold labels ({name}): U-LiRA {100 * c['ulira']:.1f} %.")
    for v in t["variants"]:
        lines.append(f"- {v['kind']} variant {v['name']}: U-LiRA {100 * v['ulira']:.1f} %, KLoM p95 "
                     f"{v['klom_p95']:.3f}, Δ forget {100 * v['delta_forget']:.2f} pp "
                     f"(tmu: {100 * t['delta_forget']:.2f} pp).")
    easy, hard = t["easy"], t["hard"]
    lines.append(f"- Where TMU differs: on the easy samples its mean margin is {easy['shift']:+.2f} from the "
                 f"retrains' and its spread across seeds {easy['spread']:.2f}× theirs (KLoM "
                 f"{easy['klom']:.3f}, doing nothing {easy['klom_original']:.3f}); on the hard samples "
                 f"its KLoM is {hard['klom']:.3f} against doing nothing's {hard['klom_original']:.3f}.")
    f = t["forgetting"]
    if f is not None:
        lines.append(f"- {f['name']} on D_f: TMU {f['tmu']:.3f}, doing nothing {f['original']:.3f}, the floor "
                     f"{f['floor']:.3f}; baselines above TMU: {', '.join(f['baselines_above']) or 'none'}.")
    if t["step_decision"] is not None:
        decision = t["step_decision"]
        lines.append(f"- The default step is `{decision['step']}`'s (tuning criterion `{decision['criterion']}`), "
                     f"chosen on the twin problem at seeds no table reports (benchmarks/results/step_choice/RULE.md).")
    for method, why in t["not_applicable"].items():
        lines.append(f"- Not run here: {method} ({why}).")
    lines.append(f"- The first milestone, U-LiRA below doing nothing's with Δ forget within the floor's + "
                 f"{100 * MILESTONE_DELTA_SLACK:.0f} pp, is {'met' if t['first_milestone'] else 'not met'}: U-LiRA "
                 f"{100 * t['ulira']:.1f} % against {100 * t['ulira_original']:.1f} %, "
                 f"Δ {100 * t['delta_forget']:.2f} pp against the floor's {100 * t['floor_delta_forget']:.2f} pp.")
    lines.append(f"- The goal, U-LiRA within {100 * GOAL_ULIRA_GAP:.0f} pp of the floor and below every baseline's, is "
                 f"{'met' if t['goal'] else 'not met'}: TMU is {100 * t['ulira_gap_to_floor']:.1f} pp above the floor "
                 f"and {'below' if t['below_every_baseline'] else 'not below'} every baseline.")
    return "\n".join(lines)
