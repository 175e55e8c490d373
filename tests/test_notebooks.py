"""Notebook hygiene (one literal `parameters` cell of Params fields, committed outputs of a clean
top-to-bottom run, .py pairs in sync, every params-file key declared somewhere) and `run_notebooks`."""
from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from tmu_utils import notebooks
from tmu_utils.params import FIELD_TYPES, Params, ParamsError, make_params

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [ROOT / "notebooks" / f"{name}.ipynb"
             for name in notebooks.NOTEBOOK_NAMES + notebooks.REPORT_NOTEBOOK_NAMES]
# The demo's deliberate departures from the Params defaults (everything else is a default): half of
# Fashion-MNIST and 15 epochs keep the six notebooks within 10 minutes on a 2-core CPU.
# 06 summarises the committed five-seed sweep of the default, so its tables have real intervals.
DEMO_CHOICES = {"name": "demo", "train_limit": 30000, "epochs": 15, "sweep_dir": "benchmarks/results/default_seeds"}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def parameters_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def declared(nb: nbformat.NotebookNode) -> dict:
    """name -> value of the `parameters` cell, which must hold only `name = literal` statements."""
    (cell,) = parameters_cells(nb)
    values = {}
    for stmt in ast.parse(cell.source).body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), \
            f"not a plain assignment: {ast.unparse(stmt)}"
        values[stmt.targets[0].id] = ast.literal_eval(stmt.value)  # raises unless a literal
    return values


def test_every_notebook_and_its_py_pair_exist():
    for path in NOTEBOOKS:
        assert path.is_file() and path.with_suffix(".py").is_file(), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_literals_naming_params_fields(path):
    nb = read(path)
    assert len(parameters_cells(nb)) == 1
    values = declared(nb)
    assert values, "the parameters cell declares nothing"
    assert set(values) <= set(FIELD_TYPES), f"not Params fields: {sorted(set(values) - set(FIELD_TYPES))}"
    make_params(values)  # the declared values are valid parameters


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_come_from_a_clean_top_to_bottom_run(path):
    nb = read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        assert "injected-parameters" not in meta.get("tags", [])
        assert "papermill" not in meta and "execution" not in meta, "timing metadata: strip it or re-execute"
        assert not any(o.output_type == "error" for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_py_pair_in_sync(path):
    ipynb, py = jupytext.read(path), jupytext.read(path.with_suffix(".py"))
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    assert [(c.cell_type, c.source) for c in ipynb.cells] == [(c.cell_type, c.source) for c in py.cells], \
        f"run `jupytext --sync {path.relative_to(ROOT)}`"


def test_every_params_file_key_is_declared_by_a_notebook():
    everything = set().union(*(declared(read(p)) for p in NOTEBOOKS))
    for path in sorted(p for p in (ROOT / "params").glob("**/*.yaml") if "cluster" not in p.parts):  # cluster/: SLURM options
        spec = yaml.safe_load(path.read_text()) or {}
        keys = set(spec.get("grid") or {}) | set(spec.get("set") or {}) if "base" in spec else set(spec)
        assert keys <= everything, f"{path.name}: no notebook declares {sorted(keys - everything)}"


def test_notebooks_share_values_which_are_defaults_or_demo_choices():
    defaults = {**Params().to_dict(), **DEMO_CHOICES}
    for path in NOTEBOOKS:
        for name, value in declared(read(path)).items():
            assert value == defaults[name], f"{path.stem}: {name} = {value!r}, expected {defaults[name]!r}"


def test_later_stages_declare_everything_their_cache_keys_depend_on():
    from tmu_utils.pipeline import PRESENTATION_FIELDS

    computed = set(FIELD_TYPES) - set(PRESENTATION_FIELDS)
    for name in ("04_unlearning", "05_evaluation", "06_sweep_report"):
        names = set(declared(read(ROOT / "notebooks" / f"{name}.ipynb")))
        assert computed <= names, f"{name} misses {sorted(computed - names)}"


# --- run_notebooks, on two tiny notebooks ---

@pytest.fixture
def tiny_notebooks(tmp_path, monkeypatch):
    """A notebook declaring `seed` and `name` that fails when seed is 0, and one declaring `out_dir`."""
    folder = tmp_path / "nbs"
    folder.mkdir()
    first = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('seed = 0\nname = "x"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('assert seed != 0, "seed is zero"\nprint(name, seed)')])
    second = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('out_dir = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from pathlib import Path\nassert Path(out_dir).is_dir()")])
    for nb, name in ((first, "a"), (second, "b")):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(notebooks, "NOTEBOOK_NAMES", ("a", "b"))
    return folder


def test_run_notebooks_passes_each_notebook_only_its_own_parameters(tiny_notebooks, tmp_path):
    out = notebooks.run_notebooks(make_params({"seed": 3, "name": "tiny"}), tmp_path / "run", {"seed"})
    assert out == (tmp_path / "run").resolve()
    executed = read(out / "a.ipynb")
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "seed = 3" in injected[0].source and 'name = "tiny"' in injected[0].source
    assert "epochs" not in injected[0].source
    assert (out / "b.ipynb").is_file()


def test_run_notebooks_names_the_failing_notebook_and_cell(tiny_notebooks, tmp_path):
    # cell [3] of the executed notebook: papermill inserts its injected-parameters cell as [2]
    with pytest.raises(notebooks.NotebookError, match=r"a\.ipynb, cell \[3\] .*AssertionError: seed is zero"):
        notebooks.run_notebooks(make_params({"seed": 0}), tmp_path / "run", set())
    assert not (tmp_path / "run" / "b.ipynb").exists()


def test_an_override_no_notebook_declares_fails_before_anything_runs(tiny_notebooks, tmp_path):
    with pytest.raises(ParamsError, match="epochs"):
        notebooks.run_notebooks(make_params({"epochs": 3}), tmp_path / "run", {"epochs"})
    assert not (tmp_path / "run").exists()
