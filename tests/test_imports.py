"""No import circles in the package: every import counted, those inside functions too (a newcomer who moves a
lazy import to the top of its file should not meet one); `if TYPE_CHECKING:` imports are not run, so not counted."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Every module of the package by its import name (builders/ imports as known_speech.builders, ...)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {"known_speech": "known_speech", **{package: folder for package, folder in setuptools["package-dir"].items()}}
    modules = {}
    for package, folder in folders.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            modules[".".join((package, *parts[: -1 if parts[-1] == "__init__" else None]))] = path
    return modules


def _imported(module: str, path: Path) -> set[str]:
    """Names `module` imports (`from a import b` counts as a and a.b), skipping `if TYPE_CHECKING:` blocks."""
    names: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                else node.module
            names.update({base, *(f"{base}.{alias.name}" for alias in node.names)})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def connect(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for target in graph[node]:
            if target not in order:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in order:
            connect(node)
    return circles


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    assert {"known_speech.evaluation.adapter", "known_speech.tracing.result"} <= modules.keys()
    graph = {name: (_imported(name, path) & modules.keys()) - {name} for name, path in modules.items()}
    assert _circles(graph) == []


def test_imports_flow_one_way():
    """DESIGN.md: core <- builders, tracing <- evaluation. The builders import neither evaluation nor tracing, the
    evaluation no builder (the CLI's commands, in the core, call both), the tracer neither of them; every import
    counted, lazy ones too."""
    modules = _modules()
    rules = {"known_speech.builders": ("known_speech.evaluation", "known_speech.tracing"),
             "known_speech.evaluation": ("known_speech.builders",),
             "known_speech.tracing": ("known_speech.builders", "known_speech.evaluation")}
    crossing = sorted(f"{name} imports {target}" for name, path in modules.items()
                      for layer, forbidden in rules.items() if name == layer or name.startswith(layer + ".")
                      for target in _imported(name, path) & modules.keys()
                      if any(target == f or target.startswith(f + ".") for f in forbidden))
    assert crossing == []
