"""Insertion and removal events from the in-process monitor."""

from __future__ import annotations

import threading

import pytest

from clinic_terminal.card.errors import NoReaderError
from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.card.monitor import CardEvent, CardEventKind, CardWatcher, InProcessCardMonitor, wait_for
from testbed.card_emulator import MyNumberCardEmulator


def test_insert_and_remove_are_reported(card: MyNumberCardEmulator) -> None:
    reader = InProcessReader()
    monitor = InProcessCardMonitor(reader)
    assert not monitor.present
    assert monitor.wait_for_change(0.01) is None
    reader.insert(card)
    event = monitor.wait_for_change(1.0)
    assert event == CardEvent(CardEventKind.INSERTED, reader.name, card.atr)
    assert monitor.present
    reader.remove()
    assert monitor.wait_for_change(1.0) == CardEvent(CardEventKind.REMOVED, reader.name)
    assert not monitor.present


def test_quick_swap_reports_removal_then_insertion(card: MyNumberCardEmulator) -> None:
    reader = InProcessReader()
    reader.insert(card)
    monitor = InProcessCardMonitor(reader)
    reader.remove()
    reader.insert(card)
    kinds = [event.kind for event in (monitor.wait_for_change(1.0), monitor.wait_for_change(1.0)) if event]
    assert kinds == [CardEventKind.REMOVED, CardEventKind.INSERTED]
    assert monitor.wait_for_change(0.01) is None


def test_wait_for_blocks_until_insertion(card: MyNumberCardEmulator) -> None:
    reader = InProcessReader()
    monitor = InProcessCardMonitor(reader)
    timer = threading.Timer(0.05, reader.insert, args=(card,))
    timer.start()
    try:
        assert wait_for(monitor, CardEventKind.INSERTED, 2.0).kind is CardEventKind.INSERTED
    finally:
        timer.join()
    with pytest.raises(TimeoutError):
        wait_for(monitor, CardEventKind.REMOVED, 0.05)


def test_watcher_calls_back_from_its_thread(card: MyNumberCardEmulator) -> None:
    reader = InProcessReader()
    events: list[CardEventKind] = []
    seen_two = threading.Event()

    def on_event(event: CardEvent) -> None:
        events.append(event.kind)
        if len(events) == 2:
            seen_two.set()

    with CardWatcher(InProcessCardMonitor(reader), on_event):
        reader.insert(card)
        reader.remove()
        assert seen_two.wait(2.0)
    assert events == [CardEventKind.INSERTED, CardEventKind.REMOVED]


class _FlakyMonitor:
    """Fails once, as pcscd does on an RPC transport error, then reports one insertion."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = threading.Event()

    @property
    def present(self) -> bool:
        return self.calls > 1

    def wait_for_change(self, timeout: float) -> CardEvent | None:
        self.calls += 1
        if self.calls == 1:
            raise NoReaderError("Virtual PCD 00 00: RPC transport error.")
        if self.calls == 2:
            return CardEvent(CardEventKind.INSERTED, "Virtual PCD 00 00")
        self.closed.wait(timeout)
        return None

    def close(self) -> None:
        self.closed.set()


def test_the_watcher_keeps_watching_after_the_reader_fails_to_answer(caplog: pytest.LogCaptureFixture) -> None:
    events: list[CardEvent] = []
    seen = threading.Event()

    def on_event(event: CardEvent) -> None:
        events.append(event)
        seen.set()

    monitor = _FlakyMonitor()
    with CardWatcher(monitor, on_event):
        assert seen.wait(5.0)
    assert [e.kind for e in events] == [CardEventKind.INSERTED]
    assert any(r.__dict__.get("code") == "card_watch_failed" for r in caplog.records)
