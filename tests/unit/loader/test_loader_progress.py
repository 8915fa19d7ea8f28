"""The progress bar: drawn only on a terminal, wraps iterables without changing them."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from hokensha_loader.progress import BarProgress, NullProgress, make_progress

from .helpers import Result, csv_text, row


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def visible(text: str) -> str:
    """What the terminal shows: without the cursor hide/show sequences around the bar."""
    return text.replace("\x1b[?25l", "").replace("\x1b[?25h", "")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_bar_when_not_a_tty() -> None:
    assert isinstance(make_progress(io.StringIO(), 10, "eligibility"), NullProgress)
    assert isinstance(make_progress(FakeTTY(), 10, "eligibility"), BarProgress)
    assert isinstance(make_progress(FakeTTY(), 10, "eligibility", enabled=False), NullProgress)


def test_null_progress_passes_items_through() -> None:
    progress = NullProgress()
    assert list(progress.chunks([b"a\n", b"b"], count_lines=True)) == [b"a\n", b"b"]
    assert list(progress.rows(range(3))) == [0, 1, 2]
    progress.close()


def test_bar_shows_bytes_rows_and_rate() -> None:
    stream, clock = FakeTTY(), Clock()
    bar = BarProgress(stream, total_bytes=2048, label="eligibility", clock=clock)
    clock.now += 2.0
    chunks = list(bar.chunks([b"x,y\n" * 256], count_lines=True))  # 1 KiB, 256 lines

    assert chunks == [b"x,y\n" * 256]
    line = visible(stream.getvalue())
    assert line.startswith("\religibility  50% |")
    assert "1.0 KiB/2.0 KiB" in line
    assert "256 rows 128 rows/s" in line
    bar.close()
    assert stream.getvalue().endswith("\n")


def test_bar_redraws_at_most_every_interval() -> None:
    stream, clock = FakeTTY(), Clock()
    bar = BarProgress(stream, total_bytes=10, label="k", clock=clock, interval_s=0.5)
    clock.now += 1
    list(bar.chunks([b"1", b"2", b"3"]))  # same instant: one draw
    assert stream.getvalue().count("\r") == 1
    clock.now += 1
    list(bar.chunks([b"4"]))
    assert stream.getvalue().count("\r") == 2


def test_rows_counted_through_the_wrapper() -> None:
    bar = BarProgress(FakeTTY(), total_bytes=0, label="k", clock=Clock())
    assert sum(1 for _ in bar.rows(range(5000))) == 5000
    assert bar.done_rows == 5000


def test_cli_draws_nothing_on_a_pipe(tmp_path: Path, load: Callable[..., Result]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")
    result = load("eligibility", path, "--dry-run")
    assert "\r" not in result.err + result.out
    assert result.err == ""
    assert "accepted 1" in result.out  # the summary line is printed all the same


def test_cli_draws_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 load: Callable[..., Result]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(*(row(number=str(i)) for i in range(10))), encoding="utf-8")
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    assert load("eligibility", path, "--dry-run").code == 0
    assert "\religibility 100% |" in visible(tty.getvalue())
    assert "10 rows" in tty.getvalue()

    quiet = FakeTTY()
    monkeypatch.setattr("sys.stderr", quiet)
    assert load("eligibility", path, "--dry-run", "--quiet").code == 0
    assert quiet.getvalue() == ""
