"""Command line: `python -m tmu_utils run PARAMS.yaml [--set key=value ...] [--out DIR]`."""
from __future__ import annotations

import argparse
import sys

from .params import ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tmu_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run TMU, its variants and the baselines; print the results table")
    run_p.add_argument("params", help="a params YAML file, e.g. params/default.yaml")
    run_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one parameter (repeatable)")
    run_p.add_argument("--out", help="output folder (default runs/<name>/<seed>)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.overrides)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from .data import DatasetNotFoundError
    from .pipeline import run, run_dir
    from .report import predictor_table, results_table

    try:
        results = run(params, args.out)
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(f"\nResults of '{params.name}' (seed {params.seed}) on {results['env']['device']}; "
          f"written to {run_dir(params, args.out)}/results.json\n")
    print(results_table(results))
    if "predictor" in results:
        print("\nGeneralization-label predictor vs the gold model's labels:\n")
        print(predictor_table(results["predictor"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
