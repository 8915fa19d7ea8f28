"""PC/SC through pyscard: the only place (with ``pyscard_monitor``) that imports ``smartcard``.

Uses pyscard's thin ``smartcard.scard`` layer so every PC/SC result code can be translated
precisely into our :mod:`~clinic_terminal.card.errors` (no pyscard exception escapes).
"""

from __future__ import annotations

from typing import Any

from smartcard import scard

from clinic_terminal.card.errors import (
    CardError,
    CardProtocolError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
)
from clinic_terminal.closing import Closing

DEFAULT_READER_HINT = "Virtual PCD"


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def _u(constant: int) -> int:
    return constant & 0xFFFFFFFF


_NO_SERVICE = {_u(scard.SCARD_E_NO_SERVICE), _u(scard.SCARD_E_SERVICE_STOPPED)}
_NO_READER = {
    _u(scard.SCARD_E_NO_READERS_AVAILABLE),
    _u(scard.SCARD_E_UNKNOWN_READER),
    _u(scard.SCARD_E_READER_UNAVAILABLE),
}
_NO_CARD = {
    _u(scard.SCARD_E_NO_SMARTCARD),
    _u(scard.SCARD_W_REMOVED_CARD),
    _u(scard.SCARD_W_UNPOWERED_CARD),
    _u(scard.SCARD_W_UNRESPONSIVE_CARD),
}
_GONE = _NO_CARD | {_u(scard.SCARD_W_RESET_CARD), _u(scard.SCARD_E_NOT_TRANSACTED)}


def _message(hresult: int) -> str:
    text: str = scard.SCardGetErrorMessage(hresult)
    return f"{text} (0x{_code(hresult):08X})"


def establish_context() -> Any:
    """A PC/SC context; ``NoReaderError`` when pcscd is not reachable."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise NoReaderError(f"PC/SC service unavailable: {_message(hresult)}")
    return context


def release_context(context: Any) -> None:
    scard.SCardReleaseContext(context)


def list_readers(context: Any | None = None) -> list[str]:
    """Reader names known to pcscd ([] when none); ``NoReaderError`` when pcscd is unreachable."""
    own = context is None
    ctx = establish_context() if context is None else context
    try:
        hresult, names = scard.SCardListReaders(ctx, [])
    finally:
        if own:
            release_context(ctx)
    if _code(hresult) in _NO_READER:
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise NoReaderError(f"cannot list readers: {_message(hresult)}")
    return list(names)


def choose_reader(names: list[str], reader: str | None, hint: str = DEFAULT_READER_HINT) -> str:
    """The configured reader if present, else the first whose name contains ``hint``."""
    if reader is not None:
        if reader in names:
            return reader
        raise NoReaderError(f"reader {reader!r} not found among {names}")
    for name in names:
        if hint in name:
            return name
    raise NoReaderError(f"no reader containing {hint!r} among {names}")


class PyscardTransport(Closing):
    """A :class:`~clinic_terminal.card.transport.CardTransport` to the card in a PC/SC reader.

    Connecting raises ``NoReaderError`` (no pcscd / no such reader) or ``NoCardError``; a card
    pulled out during ``transmit`` raises ``CardRemovedError``. ``close()`` resets the card so
    nothing verified in this session outlives it.
    """

    def __init__(self, reader: str | None = None, *, reader_hint: str = DEFAULT_READER_HINT) -> None:
        self._context = establish_context()
        self._card: Any | None = None
        try:
            self.reader = choose_reader(list_readers(self._context), reader, reader_hint)
            hresult, card, protocol = scard.SCardConnect(
                self._context,
                self.reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hresult != scard.SCARD_S_SUCCESS:
                raise self._connect_error(hresult)
            self._card = card
            self._pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
            self._atr = self._read_atr()
        except BaseException:
            self.close()
            raise

    def _connect_error(self, hresult: int) -> CardError:
        code = _code(hresult)
        if code in _NO_CARD:
            return NoCardError(f"{self.reader}: {_message(hresult)}")
        if code in _NO_READER or code in _NO_SERVICE:
            return NoReaderError(f"{self.reader}: {_message(hresult)}")
        return CardError(f"{self.reader}: {_message(hresult)}")

    def _read_atr(self) -> bytes:
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._transmit_error(hresult)
        return bytes(atr)

    def _transmit_error(self, hresult: int) -> CardError:
        code = _code(hresult)
        if code in _GONE:
            return CardRemovedError(f"{self.reader}: {_message(hresult)}")
        if code in _NO_READER or code in _NO_SERVICE:
            return NoReaderError(f"{self.reader}: {_message(hresult)}")
        return CardProtocolError(f"{self.reader}: {_message(hresult)}")

    @property
    def atr(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if self._card is None:
            raise CardRemovedError("the connection is closed")
        hresult, response = scard.SCardTransmit(self._card, self._pci, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._transmit_error(hresult)
        if len(response) < 2:
            # Readers report a card that stopped answering as an empty response (vpcd does when
            # its socket closes): for the patient, the card left the reader.
            raise CardRemovedError(f"{self.reader}: no status word from the card")
        raw = bytes(response)
        return raw[:-2], int.from_bytes(raw[-2:], "big")

    def close(self) -> None:
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_RESET_CARD)
            self._card = None
        if self._context is not None:
            release_context(self._context)
            self._context = None
