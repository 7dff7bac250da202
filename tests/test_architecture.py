"""The module structure: no import circle among rag's modules, no module importing another's
private name. Read from the source with `ast`, so imports inside functions and under
TYPE_CHECKING count too."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag", "ui")


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement of one module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            names = [a.name for a in node.names]
            # `from . import x` / `from .pkg import mod` import submodules, not names.
            subs = [n for n in names if f"{target}.{n}" in modules]
            found += [(f"{target}.{n}", []) for n in subs]
            found.append((target, [n for n in names if n not in subs]))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {target for target, _ in _imports(name, path, modules) if target in modules and target != name}
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_modules_import_each_other_without_a_circle():
    graph = _graph()
    assert "rag.store" in graph and "rag.answering.pipeline" in graph  # the scan found the modules
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_index_does_not_import_the_stages_that_use_it():
    graph = _graph()
    assert not graph["rag.store"] & {"rag.retrieval", "rag.answering.pipeline", "rag.service", "rag.api"}


def test_no_module_imports_a_private_name_of_another():
    modules = _modules()
    offences = [
        f"{name}: from {target} import {n}"
        for name, path in modules.items()
        for target, names in _imports(name, path, modules)
        for n in names
        if n.startswith("_") and not n.startswith("__") and target != name
    ]
    assert offences == []
