"""Named exit codes and the single top-level error handler."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hokensha_loader.status_codes import ExitCode

from .helpers import Result, csv_text, row

Load = Callable[..., Result]


def test_exit_codes_are_stable() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "ROWS_REJECTED": 1, "FILE_REFUSED": 2, "SERVER_ERROR": 3, "USAGE_ERROR": 4,
        "INTERNAL_ERROR": 5, "LINES_UNREAD": 6,
    }


def test_help_exits_0(load: Load) -> None:
    result = load("--help")
    assert result.code == 0
    assert "eligibility" in result.out
    assert "exit codes" in result.out


@pytest.mark.parametrize(
    "args",
    [
        ("eligibility",),  # no FILE
        ("eligibility", "/nonexistent/e.csv", "--dry-run"),
        ("claims", "x.csv"),
        ("eligibility", "{file}", "--dry-run", "--format", "xml"),
        ("eligibility", "{file}", "--no-such-option"),
    ],
)
def test_usage_errors_exit_4(tmp_path: Path, load: Load, args: tuple[str, ...]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")
    result = load(*(a.replace("{file}", str(path)) for a in args))
    assert result.code == ExitCode.USAGE_ERROR
    assert "Traceback" not in result.err


def test_unknown_extension_needs_format(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.dat"
    path.write_text(csv_text(row()), encoding="utf-8")
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.USAGE_ERROR
    assert "--format" in result.err
    assert load("eligibility", path, "--dry-run", "--format", "csv").code == ExitCode.OK


def test_upload_without_token_is_a_usage_error(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")
    result = load("eligibility", path)
    assert result.code == ExitCode.USAGE_ERROR
    assert "SHIKAKU_INSURER_TOKEN" in result.err


def test_unreachable_server_exits_3_with_one_clear_line(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")
    result = load("eligibility", path, "--token", "t", "--server", "http://127.0.0.1:9")
    assert result.code == ExitCode.SERVER_ERROR
    assert result.err.startswith("hokensha-load: error: cannot reach the server at http://127.0.0.1:9")
    assert "Traceback" not in result.err


def test_unexpected_error_shows_traceback_only_with_verbose(
    tmp_path: Path, load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("hokensha_loader.commands.load.validate_file", boom)
    quiet = load("eligibility", path, "--dry-run")
    assert quiet.code == ExitCode.INTERNAL_ERROR
    assert "Traceback" not in quiet.err
    assert "RuntimeError: bug" in quiet.err

    verbose = load("eligibility", path, "--dry-run", "--verbose")
    assert verbose.code == ExitCode.INTERNAL_ERROR
    assert "Traceback" in verbose.err


def test_known_error_traceback_only_with_verbose(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"")
    assert "Traceback" not in load("eligibility", path, "--dry-run").err
    assert "Traceback" in load("eligibility", path, "--dry-run", "-v").err


def test_unreadable_file_is_reported_not_crashed(
    tmp_path: Path, load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")

    def denied(*_: object, **__: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)  # the loader reads the file through Path.open
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.USAGE_ERROR
    assert "Permission denied" in result.err
