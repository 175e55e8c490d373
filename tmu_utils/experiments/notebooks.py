"""Run the notebooks with papermill: one run of the pipeline, executed and explained.

The parameter contract: each notebook's `parameters` cell declares `params_file`, the params file it
starts from (params/demo.yaml), and only the knobs that notebook is about. `notebook_params`
builds the run's Params from that file, then every Params field the cell or papermill's `-p` set.
`run_notebooks` writes the run's whole Params to `<out_dir>/params.yaml` and hands each notebook that
file and its own knobs' values, so results.json, the figures and the executed notebooks land together.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from ..core.params import FIELD_TYPES, Params, ParamsError, load_params, make_params
from ..core.training import progress_enabled

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK_NAMES = ("01_original_and_gold", "02_twin_problem", "03_generalization_features", "04_unlearning",
                  "05_evaluation")
# Notebooks that read finished results (a sweep's, a population's) rather than take part in a run.
REPORT_NOTEBOOK_NAMES = ("06_sweep_report", "07_population_alignment", "08_deletion_requests")
# Notebooks on the public API alone (tmu_utils/library.py), with no run, params file or results folder.
LIBRARY_NOTEBOOK_NAMES = ("09_bring_your_own_model",)
PARAMS_FILE = "params_file"  # the one name a parameters cell declares besides Params fields


class NotebookError(RuntimeError):
    """A notebook cell raised: the message names the notebook, the cell and the error."""


def notebook_params(namespace: dict) -> Params:
    """A notebook's Params: its `params_file` (relative: to the repository), then every Params field
    set in `namespace` (the parameters cell's knobs and papermill's injected values)."""
    path = Path(namespace[PARAMS_FILE])
    base = load_params(path if path.is_absolute() else NOTEBOOK_DIR.parent / path).to_dict()
    return make_params({**base, **{k: v for k, v in namespace.items() if k in FIELD_TYPES}})


def computes_as(params: Params, params_file: str) -> bool:
    """Whether `params` compute what `params_file` (relative: to the repository) does, whatever they
    show or store: the configuration at which a notebook's measured margins apply."""
    from ..unlearning.runner import NAMED_FIELDS, RESOLVED_FIELDS, method_key_fields
    from .tuning import tuning_mode

    reference = load_params(NOTEBOOK_DIR.parent / params_file)
    fields = [*method_key_fields(params), *NAMED_FIELDS, *RESOLVED_FIELDS]
    return (all(getattr(params, f) == getattr(reference, f) for f in fields)
            and tuning_mode(params) == tuning_mode(reference))


def notebook_paths() -> list[Path]:
    """The notebooks in execution order."""
    return [NOTEBOOK_DIR / f"{name}.ipynb" for name in NOTEBOOK_NAMES]


def declared_parameters(path: Path) -> list[str]:
    """The names a notebook's `parameters` cell declares."""
    import papermill

    return list(papermill.inspect_notebook(str(path)))


def run_notebooks(params: Params, out_dir: Path, overrides_given: set[str]) -> Path:
    """Execute 01..05 in order into `out_dir` (created), each starting from `<out_dir>/params.yaml`
    (the whole of `params`); return it.

    `overrides_given` are the names set on the command line: an unknown one is an error, raised before
    anything runs. So are a missing data set (DatasetNotFoundError) and impossible splits (SplitError).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    paths = notebook_paths()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {', '.join(missing)}")
    declared = {path: declared_parameters(path) for path in paths}
    for path, names in declared.items():
        unknown = sorted(set(names) - set(FIELD_TYPES) - {PARAMS_FILE})
        if unknown:
            raise ParamsError(f"{path.name} declares {unknown}, which are not parameters (Params fields)")
    unknown = sorted(set(overrides_given) - set(FIELD_TYPES))
    if unknown:
        raise ParamsError(f"unknown parameter(s) {unknown}")

    from ..core.context import prepare

    prepare(params)  # a missing data set or an impossible split fails here, before any kernel starts
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)  # papermill does not create it
    values = dict(params.to_dict(), out_dir=str(out_dir))
    run_params = out_dir / "params.yaml"
    run_params.write_text(yaml.safe_dump(values, sort_keys=False))
    values[PARAMS_FILE] = str(run_params)
    show = progress_enabled(params.progress)
    for number, path in enumerate(paths, 1):
        target = out_dir / path.name
        if show:  # a bar over each notebook's cells: the long ones train models for minutes
            print(f"[{number}/{len(paths)}] {path.stem}", file=sys.stderr, flush=True)
        try:
            papermill.execute_notebook(str(path), str(target), parameters={k: values[k] for k in declared[path]},
                                       kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=show,
                                       log_output=False)
        except PapermillExecutionError as e:
            first_line = next((line for line in e.source.splitlines() if line.strip()), "")
            raise NotebookError(f"{path.name}, cell [{e.exec_count}] ({first_line.strip()!r}): {e.ename}: "
                                f"{e.evalue}; the executed notebook is {target}") from None
    return out_dir


def execute_in_place(path: Path, timeout: int = 1800) -> None:
    """Re-execute a committed notebook top to bottom at its own defaults, in its folder (as nbval
    runs it), and keep the outputs without timing metadata: what `make notebooks` commits."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, path)


def run_sweep_report(sweep_dir: Path) -> Path:
    """Execute 06_sweep_report once over a finished sweep: it reads `sweep_dir`'s results and writes
    its figures and the executed notebook there; return the notebook's path."""
    import papermill

    sweep_dir = Path(sweep_dir).resolve()
    target = sweep_dir / "06_sweep_report.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / "06_sweep_report.ipynb"), str(target),
                               parameters={"sweep_dir": str(sweep_dir), "out_dir": str(sweep_dir)},
                               kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False)
    return target
