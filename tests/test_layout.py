"""The import rules of the project's packages, read from the sources with ``ast`` alone.

Layering: a package imports only the packages below it (``config`` at the bottom, the CLI on
top), anywhere in a module, including ``if TYPE_CHECKING:`` blocks and function bodies. Cycles:
no module reaches itself through the imports that run when modules load (module level, outside
``if TYPE_CHECKING:``). No project module is imported here, so a broken import cannot hide a
broken rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: dict[str, frozenset[str]] = {
    "config": frozenset(),
    "broker": frozenset({"config"}),
    "ingest": frozenset({"config", "broker"}),
    "server": frozenset({"config", "broker"}),
    "vstudio_cli": frozenset({"config", "broker", "ingest", "server"}),
}
"""Each project package, and the other project packages it may import."""

SERVER_LAYERS: list[tuple[str, ...]] = [
    ("server.turns",),
    (
        "server.metrics",
        "server.presence",
        "server.ratelimit",
        "server.wire",
        "server.identity",
        "server.tokengate",
        "server.guard",
    ),
    ("server.interactions", "server.fanout"),
    ("server.attendance", "server.gcpolicy", "server.bridge"),
    ("server.context",),
    ("server.transport", "server.http"),
    ("server.front",),
    ("server.app",),
    ("server.serve",),
]
"""The server's parts from the bottom up: each may import the layers below it only, not its
own layer's other parts (the fan-out knows no interaction, a transport no REST route)."""


def _server_rules() -> dict[str, tuple[str, ...]]:
    rules = {}
    for level, parts in enumerate(SERVER_LAYERS):
        above = [part for layer in SERVER_LAYERS[level + 1 :] for part in layer]
        for part in parts:
            rules[part] = tuple(other for other in parts if other != part) + tuple(above)
    return rules


FORBIDDEN_INSIDE: dict[str, tuple[str, ...]] = _server_rules()
"""Sub-package rules: modules under a prefix, and the prefixes they may not import.

A prefix names a module and everything under it, so ``"server.fanout": ("server.interactions",)``
keeps the fan-out from importing any module of the interactions.
"""

ALLOWED_CYCLES: list[frozenset[str]] = []
"""Known import cycles, each as the set of modules it runs through; new ones fail the test."""


@dataclass(frozen=True, slots=True)
class Import:
    """One import of a project module by another."""

    source: str
    target: str
    line: int
    at_load: bool
    """Runs when ``source`` loads: at module level and outside ``if TYPE_CHECKING:``."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {
        module_name(path): path
        for package in LAYERS
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    nodes: Iterable[ast.AST], *, at_load: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``nodes``, and whether it runs when the module loads."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, at_load
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _import_nodes(ast.iter_child_nodes(node), at_load=False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.body, at_load=False)
            yield from _import_nodes(node.orelse, at_load=at_load)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node), at_load=at_load)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node, at_load in _import_nodes(tree.body, at_load=True):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            origin = _resolve(module, is_package, node)
            # `from server import app` imports the module server.app; `from broker import Bus`
            # imports the package broker.
            named = [".".join(filter(None, (origin, alias.name))) for alias in node.names]
            targets = [name if name in modules else origin for name in named]
        for target in dict.fromkeys(targets):
            if target.split(".")[0] in LAYERS:
                yield Import(module, target, node.lineno, at_load)


def project_imports() -> list[Import]:
    modules = project_modules()
    return [found for name, path in modules.items() for found in _imports_of(name, path, modules)]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layering_violations(imports: list[Import]) -> list[str]:
    """A line for each import that crosses the layers or a sub-package rule."""
    problems = []
    for found in imports:
        package, imported = found.source.split(".")[0], found.target.split(".")[0]
        where = f"{found.source} (line {found.line}) imports {found.target}"
        if imported != package and imported not in LAYERS[package]:
            allowed = ", ".join(sorted(LAYERS[package])) or "nothing"
            problems.append(
                f"{where}: of the other project packages, {package} may import {allowed}"
            )
        for prefix, forbidden in FORBIDDEN_INSIDE.items():
            if _under(found.source, prefix):
                for banned in forbidden:
                    if _under(found.target, banned):
                        problems.append(f"{where}: {prefix} may not import {banned}")
    return problems


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """One cycle path (first module repeated at the end) per group of modules in a cycle."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        if found.at_load:
            graph.setdefault(found.source, set()).add(found.target)
    cycles = []
    for group in _strongly_connected(graph):
        start = min(group)
        if len(group) > 1 or start in graph.get(start, set()):
            cycles.append(_path_back(graph, start, group))
    return sorted(cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit to reach on a long import chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _path_back(graph: dict[str, set[str]], start: str, group: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside ``group``."""
    came_from = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, set()) & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a cycle but no path leads back to it")


def test_every_package_has_a_layer() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages <= set(LAYERS) | {"tests", "bench"}, (
        f"new packages {sorted(packages - set(LAYERS) - {'tests', 'bench'})}: give them a layer"
    )


def test_every_server_module_has_a_layer() -> None:
    parts = [part for layer in SERVER_LAYERS for part in layer]
    homeless = [
        name
        for name in project_modules()
        if name.startswith("server.") and not any(_under(name, part) for part in parts)
    ]
    assert not homeless, f"server modules outside SERVER_LAYERS: {homeless}; give them a layer"


def test_packages_import_only_the_layers_below() -> None:
    problems = layering_violations(project_imports())
    assert not problems, "imports across the layers:\n  " + "\n  ".join(problems)


def test_modules_import_no_cycle_at_load() -> None:
    cycles = [
        cycle for cycle in import_cycles(project_imports()) if set(cycle) not in ALLOWED_CYCLES
    ]
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_allowed_cycles_are_still_there() -> None:
    present = [set(cycle) for cycle in import_cycles(project_imports())]
    gone = [sorted(allowed) for allowed in ALLOWED_CYCLES if allowed not in present]
    assert not gone, f"these cycles are gone; remove them from ALLOWED_CYCLES: {gone}"
