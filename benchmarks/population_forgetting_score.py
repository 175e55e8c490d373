"""The challenge's forgetting score for a population written before it was computed, from the
per-model margins on D_f that population_samples.npz keeps: no model is trained or run again.

Run: python benchmarks/population_forgetting_score.py benchmarks/results/population [more folders]
Adds `forgetting` (F, ε median and p95, the most ε the population size can show) to the floor and
every method of population.json and rewrites population.md. The challenge score, which also needs
each population's retain accuracy, stays None there: those populations did not keep it
(`python -m tmu_utils population` keeps it now). A population that already has `forgetting` is
left as it is.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tmu_utils.evaluation.forgetting_score import forgetting_quality
from tmu_utils.experiments.population import FORGETTING_EVALUATION, add_challenge_scores
from tmu_utils.reporting.tables import population_table


def rescore(folder: Path) -> dict:
    """Add the forgetting score to the population in `folder` and rewrite its json and table."""
    path = folder / "population.json"
    population = json.loads(path.read_text())
    if "forgetting" in population["floor"]:
        return population
    samples = np.load(folder / "population_samples.npz")
    reference = samples["margins/retrain_a"].astype(np.float64)
    rows = {"retrain_b": population["floor"], **population["methods"]}
    for model, row in rows.items():
        row["forgetting"] = forgetting_quality(samples[f"margins/{model}"].astype(np.float64), reference)
    add_challenge_scores(population)
    population["evaluation"]["forgetting"] = FORGETTING_EVALUATION
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(population, indent=1, allow_nan=True))
    tmp.replace(path)
    (folder / "population.md").write_text(population_table(population))
    return population


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    for folder in parser.parse_args(argv).folders:
        population = rescore(Path(folder))
        rows = {"floor": population["floor"], **population["methods"]}
        print(f"{folder}: " + ", ".join(f"{m} F {r['forgetting']['F']:.3f}" for m, r in rows.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
