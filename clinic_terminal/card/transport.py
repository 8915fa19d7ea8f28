"""The narrow seam between the card logic and the hardware (or an emulator)."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self


class CardTransport(Protocol):
    """A connection to one card. ``transmit`` returns ``(response data, SW1SW2 as an int)``.

    Implementations raise :class:`~clinic_terminal.card.errors.CardError` subclasses only
    (``NoCardError``, ``CardRemovedError``, ``NoReaderError``); never backend exceptions.
    """

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
