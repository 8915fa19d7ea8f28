"""The extras of pyproject.toml match what each deployable imports, and no product imports testbed.

Every import of third-party code in ``shikaku_server`` must be installed by ``.[server]``, in
``hokensha_loader`` by ``.[loader]``, in ``clinic_terminal`` by ``.[terminal]``, in ``schemas`` by
the base dependencies, so that the README's ``pip install '.[server]'`` (…) gives working commands
and the server installs no face, camera or card-reader library. ``testbed`` (and ``faker``) is
no product's dependency: the terminal loads it only for ``kiosk --demo-card``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"shikaku_server", "hokensha_loader", "clinic_terminal", "schemas", "testbed", "tests", "bench"}

# import name -> the distribution that provides it (a name provided by a dependency of a listed
# distribution maps to that listed distribution)
PROVIDED_BY = {
    "alembic": "alembic",
    "anyio": "anyio",
    "cachetools": "cachetools",
    "click": "click",
    "cryptography": "cryptography",
    "cv2": "opencv-python-headless",
    "dlib": "dlib-bin",
    "face_recognition_models": "face_recognition_models",
    "fastapi": "fastapi",
    "faker": "faker",
    "fhir": "fhir.resources",
    "hiredis": "hiredis",
    "httpx": "httpx",
    "inotify_simple": "inotify-simple",
    "jaconv": "jaconv",
    "jwt": "pyjwt",
    "lxml": "lxml",
    "numpy": "numpy",
    "openpyxl": "openpyxl",
    "orjson": "orjson",
    "PIL": "pillow",
    "psycopg2": "psycopg2-binary",
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
    "pytesseract": "pytesseract",
    "redis": "redis",
    "smartcard": "pyscard",
    "sqlalchemy": "sqlalchemy",
    "starlette": "fastapi",
    "swagger_ui_bundle": "swagger-ui-bundle",
    "uvicorn": "uvicorn",
}

DEPLOYABLES = {"schemas": None, "shikaku_server": "server", "hokensha_loader": "loader", "clinic_terminal": "terminal"}
# what each deployable may import of the project (schemas is in every install)
MAY_IMPORT = {
    "schemas": {"schemas"},
    "shikaku_server": {"shikaku_server", "schemas"},
    "hokensha_loader": {"hokensha_loader", "schemas"},
    "clinic_terminal": {"clinic_terminal", "schemas"},
}
# the one place a product reaches into testbed: demo mode of the kiosk
DEMO_ENTRY = ("clinic_terminal/kiosk/wiring.py", "_load_demo_card")


def _project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _installed_by(extra: str | None) -> set[str]:
    project = _project()
    deps = _names(project["dependencies"])  # type: ignore[arg-type]
    if extra is not None:
        deps |= _names(project["optional-dependencies"][extra])  # type: ignore[index]
    return deps


def _imports(package: str) -> list[tuple[str, int, str, tuple[str, ...]]]:
    """(file, line, top-level module, enclosing function/if-TYPE_CHECKING names) of every import."""
    found: list[tuple[str, int, str, tuple[str, ...]]] = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node: ast.AST, scope: tuple[str, ...], rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                inner = scope
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    inner = (*scope, child.name)
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    inner = (*scope, "TYPE_CHECKING")
                if isinstance(child, ast.Import):
                    found.extend((rel, child.lineno, a.name.split(".")[0], inner) for a in child.names)
                elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    found.append((rel, child.lineno, child.module.split(".")[0], inner))
                visit(child, inner)

        visit(tree, ())
    return found


@pytest.mark.parametrize("package", list(DEPLOYABLES))
def test_every_third_party_import_is_installed_by_the_deployables_extra(package: str) -> None:
    installed = _installed_by(DEPLOYABLES[package])
    missing = []
    for rel, line, module, _ in _imports(package):
        if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
            continue
        dist = PROVIDED_BY.get(module)
        if dist is None or dist.lower().replace("_", "-") not in installed:
            missing.append(f"{rel}:{line} imports {module} ({dist or 'unknown distribution'})")
    assert missing == []


@pytest.mark.parametrize("package", list(DEPLOYABLES))
def test_products_import_no_other_deployable_and_no_testbed(package: str) -> None:
    wrong = [
        f"{rel}:{line} imports {module}"
        for rel, line, module, scope in _imports(package)
        if module in FIRST_PARTY and module not in MAY_IMPORT[package]
        and not (module == "testbed" and rel == DEMO_ENTRY[0] and (DEMO_ENTRY[1] in scope or "TYPE_CHECKING" in scope))
    ]
    assert wrong == []


def test_the_server_installs_no_face_camera_card_or_test_data_library() -> None:
    server = _installed_by("server")
    assert server.isdisjoint({"dlib-bin", "dlib", "opencv-python-headless", "pyscard", "face-recognition-models",
                              "face-recognition", "pillow", "numpy", "pytesseract", "faker"})


def test_the_terminal_installs_no_database_server_library() -> None:
    # the outage journal and the XML state are sqlite3 (stdlib)
    terminal = _installed_by("terminal")
    assert terminal.isdisjoint({"sqlalchemy", "alembic", "psycopg2-binary", "redis", "faker", "face-recognition"})


def test_faker_is_no_runtime_dependency() -> None:
    project = _project()
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    assert [name for name, reqs in extras.items() if "faker" in _names(reqs)] == ["demo"]
    assert "faker" not in _names(project["dependencies"])  # type: ignore[arg-type]
