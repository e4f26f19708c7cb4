"""The layers import one way: core <- models, store <- pipeline <- flows (docs/architecture.md). Every import of
every module, at its top or inside a function, is resolved and checked."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "elfdd"  # the package
# What each layer may import of elfdd (itself included).
ALLOWED = {
    "core": {"core"},
    "models": {"core", "models"},
    "store": {"core", "store"},
    "pipeline": {"core", "models", "store", "pipeline"},
    "flows": {"core", "models", "store", "pipeline", "flows"},
}


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def elfdd_imports(path: Path, runtime: bool = False) -> list[tuple[int, str]]:
    """(line, dotted name under elfdd) of every import in ``path``, relative ones resolved; ``runtime``: also the
    imported names themselves (``from . import augment`` imports the module ``augment``), and none of the imports
    under ``if TYPE_CHECKING:`` (they never run)."""
    package = ["elfdd", *path.relative_to(ROOT).parent.parts]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if runtime and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            names = [name] if node.module or not node.level else [f"{name}.{a.name}" for a in node.names]
            if runtime:
                names += [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "elfdd" or n.startswith("elfdd.")]
    return found


def layer_of(name: str) -> str | None:
    """The layer a dotted name lies in; ``elfdd.__version__`` (the root package holds only that) counts as core."""
    parts = name.split(".")
    if parts[1:] == ["__version__"]:
        return "core"
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    assert modules(layer), f"no modules found under {layer}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules(layer)
        for line, name in elfdd_imports(path)
        if layer_of(name) not in ALLOWED[layer]
    ]
    assert wrong == []


def exists(name: str) -> bool:
    """Whether an imported ``elfdd...`` name is a module, a package or a name defined in one."""
    path = ROOT.joinpath(*name.split(".")[1:])
    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
        return True
    return path.parent.with_suffix(".py").exists() or (path.parent / "__init__.py").exists()


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_every_import_of_elfdd_names_a_module_that_exists(layer):
    """A relative import with one dot too few points into the wrong layer and fails only when its function runs."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules(layer)
        for line, name in elfdd_imports(path)
        if not exists(name)
    ]
    assert wrong == []


def test_the_import_walk_sees_relative_and_nested_imports():
    """The checker itself: a relative import inside a function resolves to the layer it names."""
    module = ROOT / "store" / "reader.py"
    names = [n for _, n in elfdd_imports(module)]
    assert "elfdd.core.errors" in names and all(n.startswith("elfdd.") for n in names)
    flows_cli = [n for _, n in elfdd_imports(ROOT / "flows" / "cli.py")]
    assert "elfdd.pipeline.config" in flows_cli  # imported inside a function


def test_every_package_folder_is_found():
    """pyproject.toml finds the packages under src/ by their ``__init__.py``: a folder of modules without one works in
    the editable install and is left out of a wheel."""
    for layer in ALLOWED:
        for path in modules(layer):
            assert (path.parent / "__init__.py").exists(), (
                f"{path.parent.relative_to(ROOT)} has no __init__.py"
            )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(["elfdd", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def import_circles() -> list[list[str]]:
    """The strongly connected components (more than one module) of the graph of imports that run, at the top of a
    module or inside a function (Tarjan's algorithm)."""
    paths = {module_name(p): p for layer in ALLOWED for p in modules(layer)}
    graph = {
        name: {n for _, n in elfdd_imports(path, runtime=True) if n in paths and n != name}
        for name, path in paths.items()
    }
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for other in graph[node]:
            if other not in order:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], order[other])
        if low[node] == order[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in order:
            visit(node)
    return circles


def test_no_import_circle():
    """A plug-in registry imports config types only for annotations (``if TYPE_CHECKING``): the config may import
    the registries to check names against them without closing a circle."""
    assert import_circles() == []


def test_the_circle_check_finds_a_circle(monkeypatch):
    """The checker itself: the data module importing the config at run time closes the config <-> data circle."""
    real = elfdd_imports

    def with_a_circle(path: Path, runtime: bool = False):
        found = real(path, runtime)
        return found + [(1, "elfdd.pipeline.config")] if path == ROOT / "pipeline" / "data.py" else found

    monkeypatch.setattr(f"{__name__}.elfdd_imports", with_a_circle)
    assert any("elfdd.pipeline.data" in c and "elfdd.pipeline.config" in c for c in import_circles())
