"""`clinic-terminal kiosk`: options become a wired kiosk app (uvicorn itself is not started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient

from clinic_terminal.cli import _register, cli
from clinic_terminal.kiosk.demo import make_demo


def test_demo_kiosk_starts_with_the_virtual_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile, anchor = make_demo(tmp_path / "demo")
    assert anchor.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    started: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        started.update(options, app=app)
        with TestClient(app) as client:
            started["read"] = client.post("/api/kiosk/read").json()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    _register()
    result = CliRunner().invoke(cli, ["kiosk", "--demo-card", str(profile), "--port", "18080",
                                      "--server", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 0, result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", 18080)
    assert started["read"]["screen"] == "choose_method"
    assert started["read"]["demo"] is True
    assert "顔認証 off" in result.output


def test_reader_and_demo_card_exclude_each_other(tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(cli, ["kiosk", "--demo-card", str(tmp_path), "--reader", "X"])
    assert result.exit_code == 2
    assert "exclude each other" in result.output
