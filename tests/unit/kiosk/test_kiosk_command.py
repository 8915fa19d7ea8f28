"""`clinic-terminal kiosk`: options become a wired kiosk app (uvicorn itself is not started)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from clinic_terminal.cli import _register, cli
from clinic_terminal.config import get_settings
from clinic_terminal.outage import OutageJournal
from testbed.kiosk_demo import make_demo


def test_demo_kiosk_starts_with_the_virtual_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile, anchor = make_demo(tmp_path / "demo")
    assert anchor.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    started: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        started.update(options, app=app)
        with TestClient(app) as client:
            started["read"] = client.post("/api/kiosk/read").json()
            client.post("/api/kiosk/method", json={"method": "pin"})
            started["pin"] = client.post("/api/kiosk/pin", json={"pin": "1234"}).json()  # nothing on port 9

    monkeypatch.setattr(uvicorn, "run", fake_run)
    _register()
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SHIKAKU_TERMINAL_JOURNAL_KEY", key)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["kiosk", "--demo-card", str(profile), "--port", "18080",
                                          "--server", "http://127.0.0.1:9", "--token", "t",
                                          "--data-dir", str(tmp_path / "data")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    # the check is journalled in the data folder, owner-only, sealed with the configured key
    assert started["pin"]["screen"] == "outage"
    journal_file = tmp_path / "data" / "outage.sqlite3"
    assert journal_file.stat().st_mode & 0o777 == 0o600
    with OutageJournal(tmp_path / "data") as keyless:
        (sealed,) = keyless.board(since=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        assert not sealed.readable
    with OutageJournal(tmp_path / "data", key=key) as journal:
        (entry,) = journal.board(since=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        assert entry.readable and entry.card is not None and entry.verified_by == "pin"
    assert (started["host"], started["port"]) == ("127.0.0.1", 18080)
    assert started["read"]["screen"] == "choose_method"
    assert started["read"]["demo"] is True
    assert "顔認証 off" in result.output


def test_reader_and_demo_card_exclude_each_other(tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(cli, ["kiosk", "--demo-card", str(tmp_path), "--reader", "X"])
    assert result.exit_code == 2
    assert "exclude each other" in result.output
