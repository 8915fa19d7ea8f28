"""Progress as a renderer wrapping an iterable (pip-style): off when the stream is not a TTY.

``Progress.chunks`` wraps the byte chunks read from the file (bytes done / total, and lines as a
cheap row count while uploading); ``Progress.rows`` wraps validated rows (dry run). Rendering is
throttled, so wrapping costs next to nothing per item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TextIO, TypeVar

T = TypeVar("T")
_BAR_WIDTH = 24


class Progress(Protocol):
    def chunks(self, chunks: Iterable[bytes], *, count_lines: bool = False) -> Iterator[bytes]: ...

    def rows(self, rows: Iterable[T]) -> Iterator[T]: ...

    def close(self) -> None: ...


class NullProgress:
    """Draws nothing; passes items through untouched."""

    def chunks(self, chunks: Iterable[bytes], *, count_lines: bool = False) -> Iterator[bytes]:
        return iter(chunks)

    def rows(self, rows: Iterable[T]) -> Iterator[T]:
        return iter(rows)

    def close(self) -> None:
        return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class BarProgress:
    """One line redrawn in place with ``\\r``: bar, bytes, rows, rows/s."""

    def __init__(self, stream: TextIO, total_bytes: int, label: str, *,
                 interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.total_bytes = total_bytes
        self.label = label
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.done_bytes = 0
        self.done_rows = 0
        self._last_draw = 0.0
        self._drawn = False

    def chunks(self, chunks: Iterable[bytes], *, count_lines: bool = False) -> Iterator[bytes]:
        for chunk in chunks:
            self.done_bytes += len(chunk)
            if count_lines:
                self.done_rows += chunk.count(b"\n")
            self._maybe_draw()
            yield chunk

    def rows(self, rows: Iterable[T]) -> Iterator[T]:
        for row in rows:
            self.done_rows += 1
            if not self.done_rows & 0x3FF:  # every 1024 rows: keep the per-row cost tiny
                self._maybe_draw()
            yield row

    def _maybe_draw(self) -> None:
        now = self.clock()
        if now - self._last_draw >= self.interval_s:
            self._last_draw = now
            self.draw(now)

    def render(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        fraction = min(self.done_bytes / self.total_bytes, 1.0) if self.total_bytes else 1.0
        filled = round(fraction * _BAR_WIDTH)
        bar = "█" * filled + " " * (_BAR_WIDTH - filled)
        return (f"{self.label} {fraction:4.0%} |{bar}| {_size(self.done_bytes)}/{_size(self.total_bytes)} "
                f"{self.done_rows:,} rows {self.done_rows / elapsed:,.0f} rows/s")

    def draw(self, now: float) -> None:
        self.stream.write("\r" + self.render(now) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()


def make_progress(stream: TextIO, total_bytes: int, label: str, *, enabled: bool | None = None) -> Progress:
    """A bar on ``stream`` when it is a terminal (or when ``enabled`` forces it), else nothing."""
    if enabled is None:
        isatty = getattr(stream, "isatty", None)
        enabled = bool(isatty and isatty())
    return BarProgress(stream, total_bytes, label) if enabled else NullProgress()
