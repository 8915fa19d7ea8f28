"""``hokensha-load``: names outside JIS X 0208 are warnings in the summary and the report, on
``--dry-run`` and through the real app (both backends); the rows are still accepted."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hokensha_loader.client import UploadClient
from hokensha_loader.commands import load as load_command
from hokensha_loader.core import default_report_path
from hokensha_loader.status_codes import ExitCode
from tests.factories import INSURER_A

from .helpers import Result, csv_text, row


def odd_file(tmp_path: Path) -> Path:
    path = tmp_path / "odd.csv"
    path.write_text(csv_text(
        row(insurer_number=INSURER_A, number="1", name="髙橋　一郎"),
        row(insurer_number=INSURER_A, number="2", name="𠮷田　次郎", address="東京都\ue000町1-1"),
        row(insurer_number=INSURER_A, number="3", name="山田　三郎"),
    ), encoding="utf-8")
    return path


def report_rows(path: Path) -> list[tuple[str, str, str]]:
    text = default_report_path(path).read_bytes().decode("utf-8-sig")
    return [(r["line"], r["field"], r["code"]) for r in csv.DictReader(io.StringIO(text))]


EXPECTED = [("2", "name", "outside_jis_x0208"), ("3", "name", "outside_jis_x0208"),
            ("3", "address", "outside_jis_x0208")]


def test_dry_run_counts_the_warnings_and_reports_them_per_line(tmp_path: Path, load: Callable[..., Result]) -> None:
    path = odd_file(tmp_path)
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.OK, result.out + result.err  # a warning is no reject
    assert "accepted 3, rejected 0" in result.out
    assert "warnings 3 (characters outside JIS X 0208)" in result.out
    assert report_rows(path) == EXPECTED


@pytest.fixture
def via_app(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_command, "UploadClient", functools.partial(UploadClient, http=client))


def test_upload_shows_the_servers_warnings(
    tmp_path: Path, tokens: dict[str, str], via_app: None, load: Callable[..., Result]
) -> None:
    path = odd_file(tmp_path)
    result = load("eligibility", path, "--token", tokens["insurer"], "--server", "http://testserver")
    assert result.code == ExitCode.OK, result.out + result.err
    assert "warnings 3 (characters outside JIS X 0208)" in result.out
    assert report_rows(path) == EXPECTED
    text = default_report_path(path).read_bytes().decode("utf-8-sig")
    assert "U+9AD9 髙" in text and "U+20BB7 𠮷" in text
