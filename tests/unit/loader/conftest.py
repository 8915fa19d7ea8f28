"""Fixtures for the loader's tests: a small generated population and an in-process CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hokensha_loader.cli import run
from hokensha_loader.config import get_settings
from testbed.population import Population, generate_population

from .helpers import TODAY, Result


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SHIKAKU_SERVER_URL", "SHIKAKU_INSURER_TOKEN", "SHIKAKU_UPLOAD_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    # the tests written before the Japanese messages read the English ones; the tests of the
    # Japanese default (test_loader_messages.py) unset this
    monkeypatch.setenv("SHIKAKU_LANG", "en")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def load(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``hokensha-load ARGS`` in-process; returns exit code, stdout, stderr."""

    def _load(*args: str | Path) -> Result:
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _load


@pytest.fixture(scope="session")
def population() -> Population:
    return generate_population(120, seed=7, today=TODAY)
