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
    assert "shikaku_server.state" in graph["shikaku_server.deps"]


def test_imports_under_type_checking_are_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "example.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "from shikaku_server import cache\n"
        "if TYPE_CHECKING:\n"
        "    from shikaku_server import state\n",
        encoding="utf-8",
    )
    assert set(_imports("shikaku_server.example", path)) == {("shikaku_server.cache", True)}


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


# ---------------------------------------------------------------- the one way to a thread

THREAD_HOPS = {"to_thread", "run_in_threadpool", "run_in_executor"}  # anyio's, asyncio's, Starlette's, the loop's
THREAD_HOP_MODULES = {"anyio.to_thread", "starlette.concurrency", "fastapi.concurrency"}
# the modules that may hand work to a thread themselves, and why
THREAD_HOPS_ALLOWED = {
    "shikaku_server.database": "ThreadedTransactions: the Transactions port itself",
    "shikaku_server.upload.views": "the upload's bridge from the request body's queue to the loading thread",
}


def _thread_hops(source: str) -> list[str]:
    """Where ``source`` imports or calls a way to run work on a thread (``line: what``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}"
                for a in node.names
                if a.name in THREAD_HOP_MODULES or a.name.rpartition(".")[2] in THREAD_HOPS
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in THREAD_HOP_MODULES:
                found.append(f"{node.lineno}: from {node.module} import …")
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names if a.name in THREAD_HOPS]
        elif isinstance(node, ast.Attribute) and node.attr in THREAD_HOPS:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_thread_hop_checker_finds_each_way_to_a_thread() -> None:
    offending = {
        "from anyio import to_thread\n": 1,
        "import anyio\nasync def f(g): return await anyio.to_thread.run_sync(g)\n": 1,
        "import anyio.to_thread\n": 1,
        "from anyio.to_thread import run_sync\n": 1,
        "import asyncio\nasync def f(g): return await asyncio.to_thread(g)\n": 1,
        "from asyncio import to_thread\n": 1,
        "from starlette.concurrency import run_in_threadpool\n": 2,  # the module and the name
        "from fastapi.concurrency import run_in_threadpool\n": 2,
        "async def f(loop, g): return await loop.run_in_executor(None, g)\n": 1,
        "def f():\n    from anyio import to_thread\n": 1,  # inside a function too
    }
    for source, hops in offending.items():
        assert len(_thread_hops(source)) == hops, source
    allowed = "from anyio import from_thread\nfrom shikaku_server.database import ThreadedTransactions\n"
    assert _thread_hops(allowed) == []


def test_the_database_reaches_threads_only_through_the_transactions_port() -> None:
    """Async code hands the database to a thread only through ``database.Transactions`` (issue 11:
    one path per use case, behind ports): no reader, store or service hops to a thread itself."""
    hops = {
        module: found
        for module, path in MODULES.items()
        if module.split(".")[0] == "shikaku_server" and (found := _thread_hops(path.read_text(encoding="utf-8")))
    }
    for module in THREAD_HOPS_ALLOWED:
        assert module in hops, f"{module} no longer hops to a thread: drop it from THREAD_HOPS_ALLOWED"
    assert {m: found for m, found in hops.items() if m not in THREAD_HOPS_ALLOWED} == {}
