"""No service locator (issue 11): only the web layer knows ``AppState``.

``shikaku_server.state.AppState`` is what the running app holds. The routes take its parts off
it and hand the services exactly the ports they use (``Transactions``, ``BundleReader``,
``CardPorts``, a service's own small ports dataclass, ...); no service reads the state, so no
module outside the web layer imports ``shikaku_server.state`` — not even under
``TYPE_CHECKING``, nor inside a function — or reaches for ``request.app.state``.

The web layer, allowed both:

- ``state.py`` itself;
- ``app.py``: the lifespan builds the state (the composition root);
- ``deps.py``: the FastAPI dependencies that hand it (or its parts) to the routes;
- ``fastpath.py``: the ASGI layer that answers the hot routes with the routes' own functions,
  handing them the state as FastAPI would;
- every ``*/views.py``: the routes, which take the parts off the state for the services.

Read from the source (``ast``), nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "shikaku_server"
STATE = "shikaku_server.state"
WEB_LAYER = {"shikaku_server.state", "shikaku_server.app", "shikaku_server.deps", "shikaku_server.fastpath"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def may_know_the_state(module: str) -> bool:
    return module in WEB_LAYER or module.endswith(".views")


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The full names ``node`` may bring in (``from a import b``: ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _reaches_app_state(node: ast.Attribute) -> bool:
    """``<anything>.app.state``: the running app's state, looked up from a request or an app."""
    return node.attr == "state" and isinstance(node.value, ast.Attribute) and node.value.attr == "app"


def offences(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """Each import of ``shikaku_server.state`` and each ``.app.state`` lookup in ``source``,
    wherever it is (module level, ``if TYPE_CHECKING:``, a function), as ``line: what``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = _imported(node, package)
            if any(name == STATE or name.startswith(STATE + ".") for name in names):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and _reaches_app_state(node):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_catches_an_offending_module() -> None:
    service = "shikaku_server.homecare.service"
    assert offences(service, "from shikaku_server.state import AppState\n") == [
        "1: from shikaku_server.state import AppState"
    ]
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shikaku_server.state import AppState\n"
    assert offences(service, hidden) == ["3: from shikaku_server.state import AppState"]
    assert offences(service, "def f():\n    import shikaku_server.state\n") == ["2: import shikaku_server.state"]
    assert offences(service, "from shikaku_server import state\n") == ["1: from shikaku_server import state"]
    assert offences(service, "from ..state import AppState\n") == ["1: from ..state import AppState"]
    assert offences(service, "from .. import state\n") == ["1: from .. import state"]
    assert offences(service, "def f(request):\n    return request.app.state.shikaku\n") == [
        "2: request.app.state"
    ]
    # nothing else is taken for it
    innocent = (
        "from shikaku_server import cache\nfrom shikaku_server.statements import x\nfrom .service import state\n"
        "def f(state, app):\n    return state.cache, app.stores, request.state\n"
    )
    assert offences(service, innocent) == []


def test_the_web_layer_is_what_may_know_the_state() -> None:
    assert may_know_the_state("shikaku_server.me.views")
    assert may_know_the_state("shikaku_server.app")
    assert not may_know_the_state("shikaku_server.me.service")
    assert not may_know_the_state("shikaku_server.me.proof")
    assert not may_know_the_state("shikaku_server.fhir.service")
    assert not may_know_the_state("shikaku_server.views_helpers")


def test_no_module_outside_the_web_layer_reads_the_app_state() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 50
    checked = {_module(p): p for p in paths}
    assert {"shikaku_server.me.service", "shikaku_server.fhir.service", "shikaku_server.homecare.service"} <= set(
        checked
    )
    found = {
        module: hits
        for module, path in checked.items()
        if not may_know_the_state(module)
        and (hits := offences(module, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py"))
    }
    assert found == {}


def test_the_web_layer_still_names_the_state() -> None:
    """The allowance is not stale: each listed module outside the views does use the state."""
    for module in WEB_LAYER - {STATE}:
        path = PACKAGE / f"{module.rpartition('.')[2]}.py"
        assert offences(module, path.read_text(encoding="utf-8")), f"{module} no longer needs the state: drop it"
