"""Notebook hygiene (one short literal `parameters` cell: a params file and a few Params fields that
agree with it; committed outputs of a clean top-to-bottom run; .py pairs in sync), the parameter
contract (`notebook_params`) and `run_notebooks`."""
from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

from tmu_utils.core.params import FIELD_TYPES, ParamsError, load_params, make_params
from tmu_utils.experiments import notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [ROOT / "notebooks" / f"{name}.ipynb"
             for name in notebooks.NOTEBOOK_NAMES + notebooks.REPORT_NOTEBOOK_NAMES + notebooks.LIBRARY_NOTEBOOK_NAMES]
RUN_NOTEBOOKS = [ROOT / "notebooks" / f"{name}.ipynb" for name in notebooks.NOTEBOOK_NAMES]
MAX_PARAMETER_LINES = 15


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
    knobs = {k: v for k, v in values.items() if k != notebooks.PARAMS_FILE}
    assert set(knobs) <= set(FIELD_TYPES), f"not Params fields: {sorted(set(knobs) - set(FIELD_TYPES))}"
    make_params(knobs)  # the declared values are valid parameters
    (cell,) = parameters_cells(nb)
    assert len(cell.source.splitlines()) <= MAX_PARAMETER_LINES, "declare only the knobs this notebook is about"


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


@pytest.mark.parametrize("path", RUN_NOTEBOOKS, ids=lambda p: p.stem)
def test_a_run_notebook_starts_from_its_params_file_and_its_knobs_agree_with_it(path):
    values = declared(read(path))
    assert values.get(notebooks.PARAMS_FILE) == "params/demo.yaml"
    base = load_params(ROOT / values[notebooks.PARAMS_FILE])
    for name, value in values.items():
        if name != notebooks.PARAMS_FILE:  # the cell shows the file's value: one source for the demo
            assert getattr(base, name) == make_params({name: value}).to_dict()[name], f"{path.stem}: {name}"
    assert notebooks.notebook_params(values) == base


def test_notebook_params_take_the_file_then_any_field_set_in_the_namespace():
    namespace = {"params_file": "params/demo.yaml", "epochs": 3, "unlearn_lr": "0.01", "display": print}
    params = notebooks.notebook_params(namespace)  # papermill -p injects undeclared names just the same
    assert (params.epochs, params.unlearn_lr) == (3, 0.01)
    assert params.train_limit == load_params(ROOT / "params" / "demo.yaml").train_limit == 30000
    assert notebooks.computes_as(load_params(ROOT / "params" / "demo.yaml", ["progress=false", "name=x"]),
                                 "params/demo.yaml")
    assert not notebooks.computes_as(params, "params/demo.yaml")


def test_the_report_notebooks_read_only_a_folder():
    folders = {"sweep_dir", "population_dir", "requests_dir", "out_dir"}
    for name in notebooks.REPORT_NOTEBOOK_NAMES:
        assert set(declared(read(ROOT / "notebooks" / f"{name}.ipynb"))) <= folders


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


def test_an_undeclared_override_reaches_the_notebooks_through_the_run_params_file(tiny_notebooks, tmp_path,
                                                                                  monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('params_file = "params/demo.yaml"\nseed = 1', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from tmu_utils.experiments.notebooks import notebook_params\n"
                                  "params = notebook_params(globals())\n"
                                  "assert (params.seed, params.epochs, params.train_limit) == (5, 4, 600), params")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tiny_notebooks / "c.ipynb")
    monkeypatch.setattr(notebooks, "NOTEBOOK_NAMES", ("c",))
    run = make_params({"seed": 5, "epochs": 4, "train_limit": 600})
    out = notebooks.run_notebooks(run, tmp_path / "run", {"epochs"})
    assert load_params(out / "params.yaml").epochs == 4


def test_an_unknown_override_fails_before_anything_runs(tiny_notebooks, tmp_path):
    with pytest.raises(ParamsError, match="epoch"):
        notebooks.run_notebooks(make_params({"epochs": 3}), tmp_path / "run", {"epoch"})
    assert not (tmp_path / "run").exists()
