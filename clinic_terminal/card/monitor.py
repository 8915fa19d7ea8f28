"""Card insertion and removal: a small Protocol, an in-process monitor, and a watcher thread.

The PC/SC monitor lives in :mod:`clinic_terminal.card.pyscard_monitor` (it imports ``smartcard``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, Self

from clinic_terminal.card.errors import CardError
from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.closing import Closing

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.5
"""How long the watcher waits after the reader or pcscd failed to answer, before it asks again."""


class CardEventKind(StrEnum):
    INSERTED = "inserted"
    REMOVED = "removed"


@dataclass(frozen=True)
class CardEvent:
    kind: CardEventKind
    reader: str
    atr: bytes | None = None


class CardMonitor(Protocol):
    """Watches one reader. ``wait_for_change`` blocks up to ``timeout`` seconds."""

    @property
    def present(self) -> bool: ...

    def wait_for_change(self, timeout: float) -> CardEvent | None: ...

    def close(self) -> None: ...


def wait_for(monitor: CardMonitor, kind: CardEventKind, timeout: float) -> CardEvent:
    """Block until an event of ``kind`` (returns at once if the reader is already in that state)."""
    deadline = time.monotonic() + timeout
    if monitor.present == (kind is CardEventKind.INSERTED):
        return CardEvent(kind, "")
    while (left := deadline - time.monotonic()) > 0:
        event = monitor.wait_for_change(left)
        if event is not None and event.kind is kind:
            return event
    raise TimeoutError(f"no card {kind.value} within {timeout} s")


class InProcessCardMonitor:
    """A :class:`CardMonitor` over an :class:`InProcessReader`."""

    def __init__(self, reader: InProcessReader) -> None:
        self._reader = reader
        self._seen = reader.generation
        self._present = reader.card is not None
        self._closed = False

    @property
    def present(self) -> bool:
        return self._present

    def wait_for_change(self, timeout: float) -> CardEvent | None:
        with self._reader.changed:
            self._reader.changed.wait_for(lambda: self._closed or self._reader.generation != self._seen, timeout)
            if self._closed or self._reader.generation == self._seen:
                return None
            # One transition per call. Changes that cancel out (insert+remove, swap) are still
            # reported, as two events in turn.
            card = self._reader.card
            now_present = card is not None
            if now_present != self._present:
                self._seen = self._reader.generation
            else:
                self._seen = self._reader.generation - 1  # the return to "now" is still to come
                now_present = not now_present
                card = None
            self._present = now_present
            if not now_present:
                return CardEvent(CardEventKind.REMOVED, self._reader.name)
            return CardEvent(CardEventKind.INSERTED, self._reader.name, card.atr if card else None)

    def close(self) -> None:
        with self._reader.changed:
            self._closed = True
            self._reader.changed.notify_all()


class CardWatcher(Closing):
    """Runs a monitor in a daemon thread and calls ``on_event`` for every change."""

    def __init__(self, monitor: CardMonitor, on_event: Callable[[CardEvent], None]) -> None:
        self._monitor = monitor
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="card-watcher", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._monitor.wait_for_change(0.5)
            except CardError as exc:
                # the reader unplugged for a moment, or pcscd not answering: the kiosk keeps
                # watching (a watcher that died would never see the next card)
                log.warning("card watcher: %s; asking again", exc, extra={"code": "card_watch_failed"})
                self._stop.wait(RETRY_SECONDS)
                continue
            if event is not None and not self._stop.is_set():
                self._on_event(event)

    def stop(self) -> None:
        self._stop.set()
        self._monitor.close()
        self._thread.join(timeout=5.0)

    def close(self) -> None:
        """Leaving ``with``: :meth:`stop`."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()
