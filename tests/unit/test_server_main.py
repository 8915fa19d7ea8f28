"""``shikaku-server`` start-up: a loud warning when /metrics would be open on the network; the
metrics directory of several workers (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
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


def test_several_workers_get_a_fresh_metrics_directory_removed_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(server_main.METRICS_DIR_ENV, raising=False)
    with server_main.metrics_directory(workers=2) as path:
        assert path is not None and os.environ[server_main.METRICS_DIR_ENV] == path
        assert os.listdir(path) == []
        Path(path, "counter_123.db").write_bytes(b"x")  # what a worker writes
    assert not Path(path).exists()
    assert server_main.METRICS_DIR_ENV not in os.environ


def test_a_given_metrics_directory_is_emptied_of_an_earlier_runs_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_99.db").write_bytes(b"stale")
    (given / "histogram_99.db").write_bytes(b"stale")
    (given / "README").write_text("not ours")
    monkeypatch.setenv(server_main.METRICS_DIR_ENV, str(given))
    with server_main.metrics_directory(workers=2) as path:
        assert path == str(given)
        assert sorted(p.name for p in given.iterdir()) == ["README"]
    assert sorted(p.name for p in given.iterdir()) == ["README"]  # the operator's directory stays


def test_one_worker_needs_no_metrics_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(server_main.METRICS_DIR_ENV, raising=False)
    with server_main.metrics_directory(workers=1) as path:
        assert path is None and server_main.METRICS_DIR_ENV not in os.environ
