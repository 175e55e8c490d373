"""Gold-free tuning (docs/tuning.md): each method's knobs chosen on the twin problem, an unlearning problem
whose answer is known without the gold model, or read from a fixed-knobs table tuned that way on seeds no
table reports. `problem` poses the twin problem, `grids` holds every method's candidate grid and the
fixed-knobs tables, `search` scores the grid points, `knobs` gives each row of a run its knobs.
"""
from .grids import KNOBS, fixed_table, grid_points, tuned_as, tuned_elsewhere, tuning_mode
from .knobs import fixed_context, method_context, ran_knobs, tuned_context
from .search import (alignment_score, criterion, margin_distance, point_score, shared_runs, tune_method, tune_methods,
                     tuning_key, twin_unlearn)

__all__ = ["KNOBS", "alignment_score", "criterion", "fixed_context", "fixed_table", "grid_points", "margin_distance",
           "method_context", "point_score", "ran_knobs", "shared_runs", "tune_method", "tune_methods", "tuned_as", "tuned_context",
           "tuned_elsewhere", "tuning_key", "tuning_mode", "twin_unlearn"]
