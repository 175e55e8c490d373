"""Tables of results: one markdown table helper and the labels every table uses, for the CLI, the
notebooks and the sweep summary."""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

# (results key, column header, scale, decimals): accuracies and gaps are stored as fractions
TABLE_COLUMNS = (
    ("forget_acc", "forget%", 100, 2), ("retain_acc", "retain%", 100, 2), ("test_acc", "test%", 100, 2),
    ("delta_forget", "Δforget pp", 100, 2), ("avg_gap", "avg gap pp", 100, 2),
    ("activation_distance", "AD", 1, 3), ("js_divergence", "JS", 1, 4), ("agreement", "agree%", 100, 1),
    ("easy_acc", "easy%", 100, 1), ("hard_acc", "hard%", 100, 1), ("mia_gap", "MIA gap pp", 100, 1),
    ("tow", "ToW", 1, 3), ("time_s", "time s", 1, 1), ("rte", "RTE", 1, 1),
    ("rte_with_one_off", "RTE+one-off", 1, 1),
)
COLUMNS = {key: (label, scale, decimals) for key, label, scale, decimals in TABLE_COLUMNS}
# The rows that are not a method's name in results.json
NOISE_FLOOR_LABEL = "noise floor (M_g')"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: the header, then one line per row, each cell as `str(cell)`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(key: str, value: Any, ci: float | None = None) -> str:
    """`value` (and a ± `ci`) of metric `key` in its table unit and precision; – when missing."""
    _, scale, decimals = COLUMNS.get(key, (key, 1, 3))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value * scale:.{decimals}f}"
    return text if ci is None or math.isnan(ci) else f"{text} ± {ci * scale:.{decimals}f}"


def label(key: str) -> str:
    """The column header of metric `key`."""
    return COLUMNS[key][0] if key in COLUMNS else key


def results_rows(results: dict) -> list[tuple[str, dict]]:
    """(label, metrics) rows: every method, then the retrain noise floor (M_g' vs M_g)."""
    rows = list(results["methods"].items())
    if "noise_floor" in results:
        rows.append((NOISE_FLOOR_LABEL, results["noise_floor"]))
    return rows


def results_table(results: dict) -> str:
    """A markdown table of every method's key metrics, next to the noise floor."""
    return markdown_table(["method", *(label(key) for key in COLUMNS)],
                          [[name, *(fmt(key, m.get(key)) for key in COLUMNS)] for name, m in results_rows(results)])


def predictor_table(predictor: dict) -> str:
    """The generalization-label predictor's quality against the gold model's labels."""
    keys = ("twin_easy_rate", "true_easy_rate", "predicted_easy_rate", "accuracy", "balanced_accuracy", "auc",
            "twin_cv_accuracy")
    return markdown_table(keys, [[fmt(k, predictor.get(k)) for k in keys]])


PUBLISHED_F, EARLIER_F = "challenge F", "margins F (earlier definition)"


def forgetting_label(population: dict) -> str | None:
    """The name a population's F goes by: PUBLISHED_F when it follows the challenge's published definition
    (its rows name that statistic, the logit-scaled confidence), EARLIER_F for the margins-based F of
    populations written before confidences were stored, None without an F."""
    forgetting = population["floor"].get("forgetting")
    if not forgetting:
        return None
    return PUBLISHED_F if forgetting.get("statistic") == "logit_scaled_confidence" else EARLIER_F


def forgetting_caption(population: dict) -> str:
    """What the population table's F columns mean ('' without them)."""
    name = forgetting_label(population)
    if name == PUBLISHED_F:
        k = population["floor"]["forgetting"]["epsilon_max"]
        return (" Challenge F: the NeurIPS 2023 unlearning challenge's forgetting quality on D_f by its published "
                "definition (logit-scaled confidence of the true class; threshold and interval rules; δ = 1e-5), "
                "higher is better: the mean over samples of 1 where no rule tells the populations apart, halving "
                f"per 0.5 of ε, and 0 from ε = {k} on (with {population['n_models']} models a side), so 0 where "
                "they are separated or one is collapsed. Challenge score: F × the retain and test accuracy "
                "relative to retraining.")
    if name:
        return (" Margins F (earlier definition): this repository's earlier margins-based variant of the "
                "challenge's forgetting quality (thresholds on the margin only, add-½ rates, δ = 0.01), not the "
                "challenge's published definition; "
                "this population predates the confidences that definition needs. Its score: F × the retain and "
                "test accuracy relative to retraining.")
    return ""


def challenge_cells(row: dict) -> list[str]:
    """A population row's F and score, '–' where the population predates them."""
    forgetting = row.get("forgetting") or {}
    return [f"{forgetting['F']:.3f}" if "F" in forgetting else "–",
            f"{forgetting['score']:.3f}" if forgetting.get("score") is not None else "–"]


def _ulira_cell(ulira: dict) -> str:
    """U-LiRA's balanced accuracy in %, with its interval where the population recorded one."""
    low, high = ulira.get("balanced_accuracy_ci95", [math.nan, math.nan])
    interval = f" [{100 * low:.1f}, {100 * high:.1f}]" if not (math.isnan(low) or math.isnan(high)) else ""
    return f"{100 * ulira['balanced_accuracy']:.1f}{interval}"


def population_table(population: dict) -> str:
    """The population evaluation as markdown: per method, KLoM p95 per set, U-LiRA on D_f, F, and the
    per-run alignment (mean ± 95 % CI over the N replicas), with the floor (retrain B vs A) first."""
    n = population["n_models"]
    f_name = forgetting_label(population) or PUBLISHED_F
    lines = [f"# Population evaluation: {n} originals, {n} + {n} retrains", "",
             "KLoM: p95 over samples [bootstrap 95 % CI], lower is better. U-LiRA on D_f: balanced accuracy "
             "[jackknife 95 % CI over models, where recorded] and TPR at 1 % FPR, 50 % and 1 % mean "
             "indistinguishable from retraining. Δ forget and ToW: each unlearned model against retrain A's "
             "model of the same index, mean ± 95 % CI over replicas; time: seconds per model (the floor's: "
             "a retrain)."
             + forgetting_caption(population),
             ""]
    header = ["method", label("forget_acc"), "KLoM p95 forget", "KLoM p95 retain", "KLoM p95 test",
              "U-LiRA bal. acc %", "TPR@1%FPR %", f_name, f_name.replace(" F", " score"), label("delta_forget"),
              label("tow"), "time s"]
    rows = []
    for name, row in {"floor (retrain B vs A)": population["floor"], **population["methods"]}.items():
        klom = [f"{row['klom'][s]['p95']:.3f} [{row['klom'][s]['p95_ci95'][0]:.3f}, {row['klom'][s]['p95_ci95'][1]:.3f}]"
                for s in ("forget", "retain", "test")]
        rows.append([name, fmt("forget_acc", row["forget_acc"]["mean"], row["forget_acc"]["ci95"]), *klom,
                     _ulira_cell(row["ulira"]), f"{100 * row['ulira']['tpr_at_1fpr']:.1f}",
                     *challenge_cells(row),
                     fmt("delta_forget", row["delta_forget"]["mean"], row["delta_forget"]["ci95"]),
                     fmt("tow", row["tow"]["mean"], row["tow"]["ci95"]), f"{row['time_s']['mean']:.1f}"])
    lines.append(markdown_table(header, rows))
    for method, why in population.get("not_applicable", {}).items():
        lines += ["", f"Not run: `{method}` ({why})."]
    evaluation = population["evaluation"]
    lines += ["", f"Samples compared: {evaluation['sets']}; KLoM with {evaluation['klom_bins']} bins, "
              f"{evaluation['klom_smoothing']}, margins clipped to ±{evaluation['margin_clip']:g}. "
              f"Wall time of this command: {population['timing']['total_s']:.0f} s on {population['env']['device']}.", ""]
    return "\n".join(lines)
