"""The notebooks' research checks: claims about the numbers (the original is farther from the gold
model than two retrains are, the predictor ranks better than chance, ...), as opposed to checks of the
code. At the run notebooks' own parameters (params/demo.yaml, where nbval runs them) a failed check
raises, so the committed numbers stay guarded. On any other data or parameters it is a finding, not
a crash: it is printed, kept in the run folder's warnings.json, and `run` copies it into results.json
and shows it under the table (docs/design.md).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.params import Params
from .notebooks import computes_as
from .runs import run_dir

WARNINGS_FILE = "warnings.json"
GUARDED_PARAMS = "params/demo.yaml"  # the run notebooks' own params file: there a failed check raises


def research_check(params: Params, notebook: str, check: str, passed: bool, detail: str) -> None:
    """Nothing when `passed`; else raise AssertionError at the notebooks' own parameters, and elsewhere
    record and print a warning naming `notebook`, the `check` and by how much it failed (`detail`)."""
    if passed:
        return
    if computes_as(params, GUARDED_PARAMS):
        raise AssertionError(f"{check}: {detail}")
    path = run_dir(params) / WARNINGS_FILE
    found = read_warnings(path.parent)
    record = {"notebook": notebook, "check": check, "detail": detail}
    if record not in found:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(found + [record], indent=1))
        tmp.replace(path)
    print(f"warning: research check failed ({notebook}): {check}: {detail}")


def read_warnings(folder: str | Path) -> list[dict]:
    """The failed research checks recorded in a run folder (none when it has no warnings.json)."""
    path = Path(folder) / WARNINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def clear_warnings(folder: str | Path) -> None:
    """Forget the warnings of an earlier run in this folder, before the notebooks run again."""
    (Path(folder) / WARNINGS_FILE).unlink(missing_ok=True)


def merge_warnings(folder: str | Path) -> list[dict]:
    """Copy the run folder's warnings into its results.json (`warnings`, a list, empty when every check
    held) and return them."""
    from .runs import write_results

    folder = Path(folder)
    warnings = read_warnings(folder)
    results = json.loads((folder / "results.json").read_text())
    results["warnings"] = warnings
    write_results(folder, results)
    return warnings
