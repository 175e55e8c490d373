"""Command line: `python -m tmu_utils run|sweep|population|requests|data ...`; `--help` lists each."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.params import FIELD_DOCS, Params, ParamsError, load_params
from .experiments.executors import SubmissionError, add_executor_arguments, slurm_options


def parameters_help() -> str:
    """Every parameter `--set` accepts, with its default and one-line doc (from param_fields.py's comments)."""
    defaults = Params().to_dict()
    width = max(map(len, FIELD_DOCS))
    lines = [f"  {name:<{width}}  {FIELD_DOCS[name]} (default {defaults[name]!r})" for name in FIELD_DOCS]
    return "parameters (a params file's keys, or --set KEY=VALUE):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: one sub-command per experiment, each with its own options."""
    parser = argparse.ArgumentParser(prog="python -m tmu_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run TMU, its variants and the baselines; print the results table",
                           epilog=parameters_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    run_p.add_argument("params", help="a params YAML file, e.g. params/default.yaml")
    run_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one parameter (repeatable)")
    run_p.add_argument("--out", help="output folder (default runs/<name>/<seed>)")
    run_p.add_argument("--quiet", action="store_true", help="do not print the results table")
    run_p.add_argument("--direct", action="store_true",
                       help="run the pipeline in this process instead of executing the notebooks")
    sweep_p = sub.add_parser("sweep", help="run a sweep file (base params × grid × seeds) and summarise it")
    sweep_p.add_argument("sweep", help="a sweep YAML file, e.g. params/sweeps/seeds.yaml")
    sweep_p.add_argument("--out", required=True, help="output folder: one sub-folder per run, plus summary.*")
    add_executor_arguments(sweep_p)
    sweep_p.add_argument("--direct", action="store_true", help="runs skip the notebooks (faster, no executed copies)")
    pop_p = sub.add_parser("population", help="KLoM and U-LiRA over N originals, 2N retrains and every method",
                           epilog=parameters_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    pop_p.add_argument("params", help="a params YAML file, e.g. params/demo.yaml")
    pop_p.add_argument("--models", type=int, required=True, metavar="N", help="originals (and retrains per half)")
    pop_p.add_argument("--out", required=True, help="output folder: population.json, population.md, figures/")
    pop_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one parameter (repeatable)")
    add_executor_arguments(pop_p)  # replicas are built as jobs: here, as a SLURM array, or in this process
    pop_p.add_argument("--only-replica", type=int, default=None, help=argparse.SUPPRESS)  # one --jobs worker
    req_p = sub.add_parser("requests", help="a stream of deletion requests, each applied to the model the last left",
                           epilog=parameters_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    req_p.add_argument("params", help="a params YAML file, e.g. params/default.yaml")
    req_p.add_argument("--requests", type=int, required=True, metavar="R", help="number of requests, in order")
    req_p.add_argument("--out", required=True, help="output folder: requests.json, requests.md, figures/")
    req_p.add_argument("--request-size", type=int, default=None, metavar="N",
                       help="samples per request (default: a forget_fraction / R share of the members)")
    req_p.add_argument("--gold-every", type=int, default=1, metavar="K",
                       help="retrain the gold model and score every K-th request only (default 1)")
    req_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one parameter (repeatable)")
    data_p = sub.add_parser("data", help="check that a data set can be found (or --download it)")
    data_p.add_argument("dataset", help="fashion_mnist, mnist, cifar10 (batches or a JPEG folder), cifar100, cifar20")
    data_p.add_argument("--data-dir", default=None, help="look here first")
    data_p.add_argument("--download", action="store_true", help="fetch it through torchvision if missing")
    data_p.add_argument("--quiet", action="store_true", help="print nothing when it is found")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command; return the exit status."""
    args = build_parser().parse_args(argv)
    commands = {"run": _run_command, "sweep": _sweep_command, "population": _population_command,
                "requests": _requests_command, "data": _data_command}
    return commands[args.command](args)


def _run_command(args: argparse.Namespace) -> int:
    overrides = args.overrides + ([f"out_dir={args.out}"] if args.out else [])
    try:
        params = load_params(args.params, overrides)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from .core.data import DatasetNotFoundError, load_dataset
    from .experiments.runs import run, run_dir

    try:
        if args.direct:
            results = run(params)
        else:
            # fail early, clearly; CIFAR-10's JPEGs are decoded (and cached) here, once, not in each notebook
            load_dataset(params.dataset, params.data_dir or None, image_size=params.image_size,
                         cache_dir=params.cache_dir, progress=params.progress)
            from .experiments.checks import clear_warnings, merge_warnings
            from .experiments.notebooks import NotebookError, run_notebooks

            clear_warnings(run_dir(params))
            try:
                run_notebooks(params, run_dir(params), {o.split("=", 1)[0] for o in overrides})
            except NotebookError as e:
                print(f"error: {e}", file=sys.stderr)
                return 4
            merge_warnings(run_dir(params))
            results = json.loads((run_dir(params) / "results.json").read_text())
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except ParamsError as e:  # e.g. an override that no notebook declares
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        _print_run(params, results)
    return 0


def _print_run(params: Params, results: dict) -> None:
    """A run's table, its predictor's quality and its warnings, as `run` prints them."""
    from .experiments.runs import run_dir
    from .reporting.tables import predictor_table, results_table

    print(f"\nResults of '{params.name}' (seed {params.seed}) on {results['env']['device']}; "
          f"written to {run_dir(params)}/results.json\n")
    print(results_table(results))
    if "predictor" in results:
        print("\nGeneralization-label predictor vs the gold model's labels:\n")
        print(predictor_table(results["predictor"]))
    if results.get("warnings"):
        print("\nWarnings: research checks that did not hold on these data or parameters (results.json: warnings)")
        for w in results["warnings"]:
            print(f"- {w['notebook']}: {w['check']}: {w['detail']}")


def _sweep_command(args: argparse.Namespace) -> int:
    from .experiments.sweep import execute, expand, summarize

    try:
        base, runs = expand(args.sweep, args.out)
        slurm = slurm_options(args)
    except (ValueError, OSError) as e:  # ParamsError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        failures = execute(base, runs, jobs=args.jobs, direct=args.direct, executor=args.executor, slurm=slurm)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarize(runs, args.out)
    print(f"\n{summary.read_text()}\nwritten to {summary} and {summary.with_suffix('.csv')}")
    if not args.direct and any(run.done for run in runs):  # the sweep's report, once, over its finished runs
        from .experiments.notebooks import run_sweep_report

        print(f"report: {run_sweep_report(Path(args.out))}")
    for label, messages in failures.items():
        for message in messages:
            print(f"failed: {label}: {message}", file=sys.stderr)
    return 1 if failures else 0


def _population_command(args: argparse.Namespace) -> int:
    from .core.data import DatasetNotFoundError

    try:
        params = load_params(args.params, args.overrides)
        if args.jobs < 1:
            raise ParamsError(f"--jobs must be at least 1; got {args.jobs}")
        slurm = slurm_options(args)
        from .experiments import population

        population.check(params, args.models)
        if args.only_replica is not None:  # a worker of --jobs: build one replica into the cache
            from .core.context import prepare

            ctx = prepare(params)
            population.build_replica(ctx.for_replica(args.only_replica), population.runnable_methods(ctx)[0],
                                     population.evaluation_subsets(ctx), out_dir=Path(args.out))
            return 0
        result = population.evaluate_population(params, args.models, args.out, executor=args.executor,
                                                 jobs=args.jobs, slurm=slurm, params_file=args.params,
                                                 overrides=args.overrides)
    except (ValueError, SubmissionError) as e:  # ParamsError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except RuntimeError as e:  # replicas built as jobs failed: their logs are named
        print(f"error: {e}", file=sys.stderr)
        return 1
    print((Path(args.out) / "population.md").read_text())
    print(f"written to {args.out}/population.json, population.md and figures/ "
          f"({result['timing']['total_s']:.0f} s)")
    return 0


def _requests_command(args: argparse.Namespace) -> int:
    from .core.data import DatasetNotFoundError

    try:
        params = load_params(args.params, args.overrides)
        from .experiments import requests

        requests.check(params, args.requests, args.request_size, args.gold_every)
        result = requests.evaluate_stream(params, args.requests, args.out, args.request_size, args.gold_every)
    except ValueError as e:  # ParamsError and SplitError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print((Path(args.out) / "requests.md").read_text())
    print(f"written to {args.out}/requests.json, requests.md and figures/ ({result['timing']['total_s']:.0f} s)")
    return 0


def _data_command(args: argparse.Namespace) -> int:
    from .core.data import DatasetNotFoundError, load_dataset

    try:
        d = load_dataset(args.dataset, args.data_dir, download=args.download)
    except (DatasetNotFoundError, ValueError) as e:
        if not args.quiet:
            print(f"error: {e}", file=sys.stderr)
        return 3
    if not args.quiet:
        print(f"{d.name}: {len(d.train_y)} train + {len(d.test_y)} test images of shape "
              f"{tuple(d.train_x.shape[1:])}, {d.num_classes} classes, from {d.describe_source()} "
              f"(checksum {d.checksum})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
