"""Run the six notebooks with papermill: one run of the pipeline, executed and explained.

Each notebook receives only the parameters its `parameters` cell declares, with the values of the
run's Params (YAML file plus overrides), and `out_dir` set to the run folder so that results.json,
the figures and the executed notebooks land together.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .params import FIELD_TYPES, Params, ParamsError
from .training import progress_enabled

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK_NAMES = ("01_original_and_gold", "02_twin_problem", "03_generalization_features", "04_unlearning",
                  "05_evaluation", "06_sweep_report")
# Notebooks that read a finished experiment's folder rather than take part in a run.
REPORT_NOTEBOOK_NAMES = ("07_population_alignment",)


class NotebookError(RuntimeError):
    """A notebook cell raised: the message names the notebook, the cell and the error."""


def notebook_paths() -> list[Path]:
    """The notebooks in execution order."""
    return [NOTEBOOK_DIR / f"{name}.ipynb" for name in NOTEBOOK_NAMES]


def declared_parameters(path: Path) -> list[str]:
    """The names a notebook's `parameters` cell declares."""
    import papermill

    return list(papermill.inspect_notebook(str(path)))


def run_notebooks(params: Params, out_dir: Path, overrides_given: set[str]) -> Path:
    """Execute 01..06 in order into `out_dir` (created); return it.

    `overrides_given` are the names set on the command line: one that no notebook declares would be
    silently ignored, so it is an error, raised before anything runs. So are a missing data set
    (DatasetNotFoundError) and impossible splits (SplitError).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    paths = notebook_paths()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {', '.join(missing)}")
    declared = {path: declared_parameters(path) for path in paths}
    for path, names in declared.items():
        unknown = sorted(set(names) - set(FIELD_TYPES))
        if unknown:
            raise ParamsError(f"{path.name} declares {unknown}, which are not parameters (Params fields)")
    unknown = sorted(set(overrides_given) - set(FIELD_TYPES))
    if unknown:
        raise ParamsError(f"unknown parameter(s) {unknown}")
    ignored = sorted(set(overrides_given) - {name for names in declared.values() for name in names})
    if ignored:
        raise ParamsError(f"no notebook declares {ignored}: the override(s) would have no effect")

    from .pipeline import prepare

    prepare(params)  # a missing data set or an impossible split fails here, before any kernel starts
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)  # papermill does not create it
    values = dict(params.to_dict(), out_dir=str(out_dir))
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
