"""The package's shape: concerns as sub-packages, imports that flow one way, the modality decided in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from transferlab.config.schema import DatasetKind

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transferlab"
# Layers that run every modality alike: none of them may ask which input kind it holds.
GENERIC = ("training", "reporting", "features", "predict", "tracking", "sweeps", "commands")
MODALITY_QUESTIONS = re.compile(r"DatasetKind|\.vectorizer\b|TextPlan|DatasetPlan|TextSplit|\bis_text\b|dtype == .string.")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """The project's modules `path` imports, at the top or inside functions; imports for type checkers only
    (`if TYPE_CHECKING:`) are left out, as they never run."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transferlab"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("transferlab"))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules importing it runs, parents of the imported module included (importing a.b.c
    runs a/__init__ and a/b/__init__), except the importer's own parents, which are already running."""
    graph = {}
    for name, path in MODULES.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps = set()
        for target in imported_modules(path):
            parts = target.split(".")
            deps.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                        if p in MODULES and p != name and p not in own)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_no_module_imports_itself_back_through_others():
    assert find_cycle(import_graph()) == []


def test_the_cycle_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from transferlab.errors import fail\n\nif TYPE_CHECKING:\n    from transferlab.cli import x\n")
    assert imported_modules(module) == {"transferlab.errors"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_concerns_are_sub_packages_and_modules_stay_small():
    top_level = [p.name for p in PACKAGE.glob("*.py")]
    sub_packages = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    assert len(top_level) <= 8, top_level
    assert {"config", "data", "models", "modalities", "training", "features", "reporting", "tracking"} <= set(sub_packages)
    too_long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not too_long, f"split these modules: {too_long}"
    for package in sub_packages:
        assert ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())), f"{package} says what it owns"


@pytest.mark.parametrize("layer", GENERIC)
def test_generic_layers_never_ask_which_modality_they_hold(layer):
    askers = [f"{p.relative_to(PACKAGE)}:{i}" for p in (PACKAGE / layer).rglob("*.py")
              for i, line in enumerate(p.read_text().splitlines(), 1) if MODALITY_QUESTIONS.search(line)]
    assert not askers, f"ask the run's modality (transferlab.modalities) instead: {askers}"


def test_every_dataset_kind_has_a_modality_and_each_reads_its_own_models():
    from transferlab.modalities.registry import MODALITIES

    assert set(MODALITIES) == set(DatasetKind)
    assert all(modality.kind is kind for kind, modality in MODALITIES.items())
    assert len({m.item for m in MODALITIES.values()}) == len(MODALITIES)


def test_a_saved_model_is_read_by_the_modality_of_its_inputs():
    import keras

    from transferlab.errors import ModelError
    from transferlab.modalities.registry import MODALITIES, modality_of

    def model(inputs):
        return keras.Model(inputs, keras.layers.Lambda(lambda x: keras.ops.zeros((keras.ops.shape(x)[0], 2)))(inputs))

    assert modality_of(model(keras.Input((8, 8, 3)))) is MODALITIES[DatasetKind.images]
    assert modality_of(model(keras.Input((), dtype="string"))) is MODALITIES[DatasetKind.text]
    with pytest.raises(ModelError, match=r"neither images nor texts"):
        modality_of(model(keras.Input((5,))))
