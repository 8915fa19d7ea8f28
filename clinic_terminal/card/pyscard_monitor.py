"""A PC/SC :class:`~clinic_terminal.card.monitor.CardMonitor`: ``SCardGetStatusChange`` on one reader."""

from __future__ import annotations

import threading
from typing import Any

from smartcard import scard

from clinic_terminal.card.errors import NoReaderError
from clinic_terminal.card.monitor import CardEvent, CardEventKind
from clinic_terminal.card.pyscard_transport import (
    DEFAULT_READER_HINT,
    choose_reader,
    establish_context,
    list_readers,
    release_context,
)

_TIMEOUT = scard.SCARD_E_TIMEOUT & 0xFFFFFFFF
_CANCELLED = scard.SCARD_E_CANCELLED & 0xFFFFFFFF


class PyscardCardMonitor:
    """Blocks in pcscd (no busy polling) until the reader's state changes."""

    def __init__(self, reader: str | None = None, *, reader_hint: str = DEFAULT_READER_HINT) -> None:
        self._context: Any = establish_context()
        self._lock = threading.Lock()
        try:
            self.reader = choose_reader(list_readers(self._context), reader, reader_hint)
            self._state, self._atr = self._query(scard.SCARD_STATE_UNAWARE, 0)
        except BaseException:
            release_context(self._context)
            raise

    def _query(self, current: int, timeout_ms: int, context: Any = None) -> tuple[int, bytes]:
        ctx = self._context if context is None else context
        hresult, states = scard.SCardGetStatusChange(ctx, timeout_ms, [(self.reader, current)])
        code = hresult & 0xFFFFFFFF
        if code in (_TIMEOUT, _CANCELLED):
            return current, self._atr
        if hresult != scard.SCARD_S_SUCCESS:
            raise NoReaderError(f"{self.reader}: {scard.SCardGetErrorMessage(hresult)}")
        _name, event_state, atr = states[0]
        if event_state & scard.SCARD_STATE_UNKNOWN:
            raise NoReaderError(f"{self.reader} disappeared")
        return int(event_state) & ~scard.SCARD_STATE_CHANGED, bytes(atr)

    @property
    def present(self) -> bool:
        return bool(self._state & scard.SCARD_STATE_PRESENT)

    def wait_for_change(self, timeout: float) -> CardEvent | None:
        """The next insertion or removal within ``timeout`` seconds, else ``None``."""
        context = self._context
        if context is None:
            return None
        before = self.present
        try:
            state, atr = self._query(self._state, max(0, int(timeout * 1000)), context)
        except NoReaderError:
            if self._context is None:  # closed by another thread while we waited
                return None
            self._renew_context(context)  # after a transport error the old one may be dead
            raise
        self._state, self._atr = state, atr
        if self.present == before:
            return None
        if self.present:
            return CardEvent(CardEventKind.INSERTED, self.reader, atr)
        return CardEvent(CardEventKind.REMOVED, self.reader)

    def _renew_context(self, failed: Any) -> None:
        """A fresh PC/SC context in place of ``failed`` (unless closed meanwhile); the watcher
        asks again with it."""
        with self._lock:
            if self._context is not failed:
                return
            try:
                fresh = establish_context()
            except NoReaderError:
                return  # pcscd still away: the next failure tries again
            release_context(failed)
            self._context = fresh

    def close(self) -> None:
        with self._lock:
            if self._context is not None:
                scard.SCardCancel(self._context)
                release_context(self._context)
                self._context = None
