"""Tables of results: one run's method table, printed by the CLI and shown by the notebooks."""
from __future__ import annotations

import math

# (results key, column header, scale, decimals): accuracies and gaps are stored as fractions
TABLE_COLUMNS = (
    ("forget_acc", "forget%", 100, 2), ("retain_acc", "retain%", 100, 2), ("test_acc", "test%", 100, 2),
    ("delta_forget", "Δforget pp", 100, 2), ("avg_gap", "avg gap pp", 100, 2),
    ("activation_distance", "AD", 1, 3), ("js_divergence", "JS", 1, 4), ("agreement", "agree%", 100, 1),
    ("easy_acc", "easy%", 100, 1), ("hard_acc", "hard%", 100, 1), ("mia_gap", "MIA gap pp", 100, 1),
    ("tow", "ToW", 1, 3), ("time_s", "time s", 1, 1), ("rte", "RTE", 1, 1),
    ("rte_with_one_off", "RTE+one-off", 1, 1),
)


def _cell(value, scale: float, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{decimals}f}"


def results_rows(results: dict) -> list[tuple[str, dict]]:
    """(label, metrics) rows: every method, then the retrain noise floor (M_g' vs M_g)."""
    rows = list(results["methods"].items())
    if "noise_floor" in results:
        rows.append(("noise floor (M_g')", results["noise_floor"]))
    return rows


def results_table(results: dict) -> str:
    """A markdown table of every method's key metrics, next to the noise floor."""
    header = "| method | " + " | ".join(c[1] for c in TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for label, m in results_rows(results):
        lines.append(f"| {label} | " + " | ".join(_cell(m.get(k), s, d) for k, _, s, d in TABLE_COLUMNS) + " |")
    return "\n".join(lines)


def predictor_table(predictor: dict) -> str:
    """The generalization-label predictor's quality against the gold model's labels."""
    keys = ("twin_easy_rate", "true_easy_rate", "predicted_easy_rate", "accuracy", "balanced_accuracy", "auc",
            "twin_cv_accuracy")
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines.append("| " + " | ".join(_cell(predictor.get(k), 1, 3) for k in keys) + " |")
    return "\n".join(lines)


def population_table(population: dict) -> str:
    """The population evaluation as markdown: per method, KLoM p95 per set, U-LiRA on D_f, and the
    per-run alignment (mean ± 95 % CI over the N replicas), with the floor (retrain B vs A) first."""
    n = population["n_models"]
    lines = [f"# Population evaluation: {n} originals, {n} + {n} retrains", "",
             "KLoM: p95 over samples [bootstrap 95 % CI], lower is better. U-LiRA on D_f: balanced accuracy "
             "and TPR at 1 % FPR, 50 % and 1 % mean indistinguishable from retraining. Δ forget and ToW: "
             "each unlearned model against retrain A's model of the same index, mean ± 95 % CI over replicas.",
             "", "| method | forget % | KLoM p95 forget | KLoM p95 retain | KLoM p95 test | U-LiRA bal. acc % "
             "| TPR@1%FPR % | Δ forget pp | ToW |", "|---|---|---|---|---|---|---|---|---|"]
    rows = {"floor (retrain B vs A)": population["floor"], **population["methods"]}
    for name, row in rows.items():
        klom = [f"{row['klom'][s]['p95']:.3f} [{row['klom'][s]['p95_ci95'][0]:.3f}, {row['klom'][s]['p95_ci95'][1]:.3f}]"
                for s in ("forget", "retain", "test")]
        attack = row["ulira"]

        def pm(key: str, scale: float, digits: int) -> str:
            mean, ci = row[key]["mean"], row[key]["ci95"]
            return f"{mean * scale:.{digits}f} ± {ci * scale:.{digits}f}"

        lines.append(f"| {name} | {pm('forget_acc', 100, 2)} | " + " | ".join(klom) +
                     f" | {100 * attack['balanced_accuracy']:.1f} | {100 * attack['tpr_at_1fpr']:.1f} | "
                     f"{pm('delta_forget', 100, 2)} | {pm('tow', 1, 4)} |")
    evaluation = population["evaluation"]
    lines += ["", f"Samples compared: {evaluation['sets']}; KLoM with {evaluation['klom_bins']} bins, "
              f"{evaluation['klom_smoothing']}, margins clipped to ±{evaluation['margin_clip']:g}. "
              f"Wall time of this command: {population['timing']['total_s']:.0f} s on {population['env']['device']}.", ""]
    return "\n".join(lines)
