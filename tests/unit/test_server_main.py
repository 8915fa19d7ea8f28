"""``shikaku-server`` start-up: a loud warning when /metrics would be open on the network."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from click.testing import CliRunner

from shikaku_server import main as server_main
from shikaku_server.config import get_settings

ANY = "0.0.0.0"  # noqa: S104  # what is being tested: a server bound to every interface


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [(ANY, None, True), ("192.0.2.10", None, True), ("127.0.0.1", None, False), (ANY, "s3cret", False)],
)
def test_open_metrics_on_a_public_address_is_warned_about(
    host: str, token: str | None, warned: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: runs.append(kw))
    monkeypatch.setattr(server_main, "configure", lambda level: None)  # keep caplog's handler
    if token:
        monkeypatch.setenv("SHIKAKU_METRICS_TOKEN", token)
    else:
        monkeypatch.delenv("SHIKAKU_METRICS_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            result = CliRunner().invoke(server_main.main, ["--host", host, "--no-migrate"], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert runs and runs[0]["log_config"]["version"] == 1
    assert any("/metrics is open" in r.getMessage() for r in caplog.records) is warned
