"""No import cycle between the project's modules (issue 11: ``state`` ↔ ``card.service`` was one).

Read from the source (``ast``), nothing imported. ``from package import module`` is an edge to
that module; a package's ``__init__`` re-exporting its modules is not a cycle with them. Imports
under ``if TYPE_CHECKING:`` are for annotations only and are not counted. An import inside a
function is how a cycle hides, so those count too, except the few known ones listed below (each
must still exist: remove its entry when the cycle is gone).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("shikaku_server", "clinic_terminal", "hokensha_loader", "schemas", "testbed")

# importer -> imported, each inside a function, each closing a cycle (none left: a new one is a
# cycle to remove, not to list)
KNOWN_LAZY_CYCLES: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The project module ``name`` lands in (``a.b.c`` of a function ``c`` in ``a.b``: ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(module: str, path: Path) -> Iterator[tuple[str, bool]]:
    """(imported module, whether at module level) of each runtime import in ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def names(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            return
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in names(child):
                    target = _target(name)
                    if target is not None and target != module:
                        yield target, top
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(ast.Module(body=child.orelse, type_ignores=[]), top)
            else:
                yield from walk(child, top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    yield from walk(ast.parse(path.read_text(encoding="utf-8")), True)


def _graph(*, lazy: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, top in _imports(module, path):
            if top or lazy:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_modules_are_read() -> None:
    graph = _graph(lazy=False)
    assert "shikaku_server.card.store" in graph["shikaku_server.app"]
    assert "shikaku_server.state" not in graph["shikaku_server.me.service"]  # under TYPE_CHECKING only


def test_no_import_cycle_at_module_level() -> None:
    assert _cycles(_graph(lazy=False)) == []


def test_no_import_cycle_hidden_in_a_function() -> None:
    graph = _graph(lazy=True)
    for importer, imported in KNOWN_LAZY_CYCLES:
        assert imported in graph[importer], f"{importer} no longer imports {imported}: drop it from the list"
        graph[importer].discard(imported)
    assert _cycles(graph) == []


def _third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_services_import_no_web_framework() -> None:
    """Services are plain functions (docs/style.md): the request, the thread hop and the answer's
    shape belong to the views and the adapters (``Transactions``, the readers and stores)."""
    services = sorted((REPO / "shikaku_server").glob("*/service.py"))
    assert len(services) > 10
    offending = {str(p.relative_to(REPO)): _third_party(p) & {"fastapi", "starlette"} for p in services}
    assert {p: names for p, names in offending.items() if names} == {}
