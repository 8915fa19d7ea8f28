"""The narrow seam between the card logic and the hardware (or an emulator)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class CardTransport(AbstractContextManager["CardTransport", None], Protocol):
    """A connection to one card. ``transmit`` returns ``(response data, SW1SW2 as an int)``.

    Implementations raise :class:`~clinic_terminal.card.errors.CardError` subclasses only
    (``NoCardError``, ``CardRemovedError``, ``NoReaderError``); never backend exceptions.
    Leaving ``with`` closes it.
    """

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...

    def close(self) -> None: ...
