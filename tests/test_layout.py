"""The package's folders are its architecture (docs/design.md): core at the bottom; method,
unlearning, evaluation and reporting on it, beside each other; experiments on top; the command line
above all. Checked from the import statements themselves, function-level imports included."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tmu_utils"
LAYERS = {"core": 0, "method": 1, "unlearning": 1, "evaluation": 1, "reporting": 1, "experiments": 2}
TOP = 3  # tmu_utils/__init__.py and __main__.py


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str) -> set[str]:
    """Every tmu_utils module that module `name` imports, anywhere in its body."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tmu_utils")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("tmu_utils"):
                target = node.module
            else:
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported_modules(name) for name in MODULES}


def layer(name: str) -> tuple[str, int]:
    parts = name.split(".")
    sub = parts[1] if len(parts) > 1 else ""
    return (sub, LAYERS[sub]) if sub in LAYERS else ("", TOP)


def test_every_subpackage_is_a_known_layer_and_says_what_lives_there():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS)
    for sub in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 10, f"{sub}/__init__.py needs a docstring saying what lives there"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_layer_above_it_or_a_sibling_beside_it(name):
    sub, rank = layer(name)
    for target in GRAPH[name]:
        target_sub, target_rank = layer(target)
        assert target_rank < rank or target_sub == sub, f"{name} imports {target} (layer {target_sub or 'top'})"


def test_no_import_circle():
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])


def test_no_module_is_over_300_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"split these modules: {long}"
