"""The local screens' pages share ``common.js`` (the call to the terminal's backend, the PIN pads):
every page loads it before its own script, the app serves it, every pad a page asks for is one
it draws."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clinic_terminal.kiosk.pages import _STATIC, page, serve_static

REPO = Path(__file__).resolve().parents[3]
PAGES = ("kiosk", "staff", "visit", "portal")


class _Refs(HTMLParser):
    """The page's scripts (in order), its stylesheets and its PIN pad slots."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.pads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            self.scripts.append(values.get("src") or "(inline)")
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.styles.append(values.get("href") or "")
        elif tag == "template" and "data-pinpad" in values:
            self.pads.append(values["data-pinpad"] or "")


def _refs(name: str) -> _Refs:
    refs = _Refs()
    refs.feed(page(f"{name}.html"))
    return refs


@pytest.mark.parametrize("name", PAGES)
def test_every_page_loads_common_js_before_its_own_script(name: str) -> None:
    assert _refs(name).scripts == ["/static/common.js", f"/static/{name}.js"]


@pytest.mark.parametrize("name", PAGES)
def test_every_file_a_page_loads_is_served(name: str) -> None:
    refs = _refs(name)
    client = TestClient(_app())
    for path in refs.scripts + refs.styles:
        assert path.removeprefix("/static/") in _STATIC, path
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.text == page(path.removeprefix("/static/"))


def test_common_js_is_served_as_javascript() -> None:
    response = TestClient(_app()).get("/static/common.js")
    assert response.headers["content-type"].startswith("text/javascript")
    assert "window.common" in response.text


def test_every_pad_a_page_asks_for_is_drawn_by_common_js() -> None:
    common = page("common.js")
    drawn = set(re.findall(r'^    "?([a-z-]+)"?: \{ dots:', common, re.MULTILINE))
    asked = {pad for name in PAGES for pad in _refs(name).pads}
    assert asked == {"pin", "pin-phone", "collation-b"}
    assert asked <= drawn


def test_the_package_ships_the_pages_scripts() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "*.js" in package_data["package-data"]["*"]


def _app() -> FastAPI:
    app = FastAPI()
    serve_static(app)
    return app
