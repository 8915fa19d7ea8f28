"""Progress as a renderer wrapping an iterable (pip-style): off when the stream is not a TTY.

``Progress.chunks`` wraps the byte chunks read from the file (bytes done / total, and lines as a
cheap row count while uploading); ``Progress.rows`` wraps validated rows (dry run);
``Progress.server`` shows the server's phase once the file is sent (parsing, validating, applying,
committing: docs/loader.md), one line per phase, the current one redrawn with its counts. The line is
drawn by click's progress bar (redrawn in place, cursor hidden while it runs); what is counted,
and how often it is redrawn, is decided here: rendering is throttled by an injectable clock, so
wrapping costs next to nothing per item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, TextIO, TypeVar

import click

from hokensha_loader.messages import DEFAULT_LANG, Lang, text

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar  # what click.progressbar returns

    from hokensha_loader.client import ServerPhase

T = TypeVar("T")
_BAR_WIDTH = 24


class Progress(Protocol):
    def chunks(self, chunks: Iterable[bytes], *, count_lines: bool = False) -> Iterator[bytes]: ...

    def rows(self, rows: Iterable[T]) -> Iterator[T]: ...

    def server(self, phase: ServerPhase) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Draws nothing; passes items through untouched."""

    def chunks(self, chunks: Iterable[bytes], *, count_lines: bool = False) -> Iterator[bytes]:
        return iter(chunks)

    def rows(self, rows: Iterable[T]) -> Iterator[T]:
        return iter(rows)

    def server(self, phase: ServerPhase) -> None:
        return None

    def close(self) -> None:
        return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class BarProgress:
    """One line redrawn in place: label, percent, bar, bytes, rows, rows/s."""

    def __init__(self, stream: TextIO, total_bytes: int, label: str, *, interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, lang: Lang = DEFAULT_LANG) -> None:
        self.stream = stream
        self.lang = lang
        self._phase: str | None = None  # the server's phase shown last
        self.total_bytes = total_bytes
        self.label = label
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.done_bytes = 0
        self.done_rows = 0
        self._last_draw = 0.0
        self._drawn = False
        self._now = self.started
        # click draws; the percent and the counts are ours (the bar's own ETA uses the wall clock)
        self._bar: ProgressBar[int] = click.progressbar(
            length=max(total_bytes, 1), label=label, file=stream, width=_BAR_WIDTH, fill_char="█",
            empty_char=" ", bar_template="%(label)s %(info)s", show_eta=False, show_percent=False,
            item_show_func=lambda _: self._info(),
        )

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

    def _info(self) -> str:
        elapsed = max(self._now - self.started, 1e-9)
        return (f"{self._bar.format_pct()} |{self._bar.format_bar()}| "
                f"{_size(self.done_bytes)}/{_size(self.total_bytes)} "
                f"{self.done_rows:,} rows {self.done_rows / elapsed:,.0f} rows/s")

    def render(self, now: float) -> str:
        """The line as drawn at ``now`` (without the terminal's control characters)."""
        self._now = now
        self._bar.pos = min(self.done_bytes, self._bar.length or 0) if self.total_bytes else (self._bar.length or 0)
        return self._bar.format_progress_line()

    def draw(self, now: float) -> None:
        self.render(now)
        self._bar.render_progress()
        self._drawn = True

    def server_line(self, phase: ServerPhase, now: float) -> str:
        """The server's phase as shown: name, counts, and the time: the server's own since it
        started on the file when it says (its phases before the body was sent arrive only after),
        else the loader's since its start."""
        counts = {"read": phase.read, "done": phase.done, "rejected": phase.rejected, "total": phase.total or 0}
        key = f"phase_{phase.phase}"
        try:
            line = text(key, self.lang, **counts)
        except KeyError:  # a phase of a later server version
            line = text("phase_other", self.lang, phase=phase.phase, **counts)
        if phase.phase == "applying" and phase.total:
            filled = min(phase.done * _BAR_WIDTH // phase.total, _BAR_WIDTH)
            line += f" {phase.done * 100 // phase.total:3d}% |{'█' * filled}{' ' * (_BAR_WIDTH - filled)}|"
        elapsed = phase.elapsed_s if phase.elapsed_s is not None else now - self.started
        return f"{text('server', self.lang)}: {line} {text('elapsed', self.lang, s=elapsed)}"

    def server(self, phase: ServerPhase) -> None:
        """Show the server's phase: a new phase starts a new line (the last one keeps its final
        counts above it), the same phase is redrawn in place."""
        if self._phase is None:
            self.close()  # the file is sent: the byte bar stays as it ended
        elif phase.phase != self._phase:
            self.stream.write("\n")
        self._phase = phase.phase
        self.stream.write("\r" + self.server_line(phase, self.clock()) + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self._phase is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._phase = None
            self._drawn = False
        elif self._drawn:
            self.draw(self.clock())
            self._bar.render_finish()  # shows the cursor again and ends the line
            self._drawn = False


def make_progress(stream: TextIO, total_bytes: int, label: str, *, enabled: bool | None = None,
                  lang: Lang = DEFAULT_LANG) -> Progress:
    """A bar on ``stream`` when it is a terminal, else nothing; ``enabled=False`` turns it off."""
    if enabled is None:
        isatty = getattr(stream, "isatty", None)
        enabled = bool(isatty and isatty())
    return BarProgress(stream, total_bytes, label, lang=lang) if enabled else NullProgress()
