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
