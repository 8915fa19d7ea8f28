"""In-process transport: the terminal talks to an emulated card object without PC/SC.

Any object with an ``atr`` and ``process_apdu(bytes) -> bytes`` will do (the testbed's emulator
is one); ``clinic_terminal`` imports ``testbed`` only for the kiosk's ``--demo-card``
(``kiosk/wiring.py``). :class:`InProcessReader` models the reader
slot so tests can insert and remove cards, including in the middle of a read.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from clinic_terminal.card.errors import CardProtocolError, CardRemovedError, NoCardError
from clinic_terminal.closing import Closing


class EmulatedCard(Protocol):
    @property
    def atr(self) -> bytes: ...

    def process_apdu(self, apdu: bytes) -> bytes: ...


@runtime_checkable
class PowerCycledCard(Protocol):
    """Optional: a card that wants to hear when a session starts (to clear its security state)."""

    def power_on(self) -> None: ...


class InProcessReader:
    """One reader slot holding at most one card. Thread-safe."""

    def __init__(self, name: str = "In-process reader 00 00") -> None:
        self.name = name
        self._card: EmulatedCard | None = None
        self._generation = 0
        self._remove_after: int | None = None
        self.changed = threading.Condition()

    @property
    def card(self) -> EmulatedCard | None:
        return self._card

    @property
    def generation(self) -> int:
        """Increases at every insertion and removal (the monitor watches it)."""
        return self._generation

    def insert(self, card: EmulatedCard) -> None:
        with self.changed:
            self._card = card
            self._remove_after = None
            self._generation += 1
            self.changed.notify_all()

    def remove(self) -> None:
        with self.changed:
            if self._card is not None:
                self._card = None
                self._generation += 1
                self.changed.notify_all()

    def remove_after(self, commands: int) -> None:
        """Pull the card out once it has answered ``commands`` more APDUs."""
        self._remove_after = commands

    def connect(self) -> InProcessTransport:
        with self.changed:
            if self._card is None:
                raise NoCardError(self.name)
            return InProcessTransport(self._card, reader=self)

    def _exchange(self, card: EmulatedCard, apdu: bytes) -> bytes:
        with self.changed:
            if self._card is not card:
                raise CardRemovedError(self.name)
            if self._remove_after is not None:
                if self._remove_after <= 0:
                    self._card = None
                    self._remove_after = None
                    self._generation += 1
                    self.changed.notify_all()
                    raise CardRemovedError(self.name)
                self._remove_after -= 1
        return card.process_apdu(apdu)


class InProcessTransport(Closing):
    """A :class:`~clinic_terminal.card.transport.CardTransport` over an emulated card."""

    def __init__(self, card: EmulatedCard, *, reader: InProcessReader | None = None) -> None:
        self._card = card
        self._reader = reader
        self._closed = False
        if isinstance(card, PowerCycledCard):
            card.power_on()

    @property
    def atr(self) -> bytes:
        return self._card.atr

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if self._closed:
            raise CardRemovedError("the connection is closed")
        if self._reader is not None:
            response = self._reader._exchange(self._card, apdu)
        else:
            response = self._card.process_apdu(apdu)
        if len(response) < 2:
            raise CardProtocolError("the card answered fewer than 2 bytes")
        return response[:-2], int.from_bytes(response[-2:], "big")

    def close(self) -> None:
        self._closed = True
