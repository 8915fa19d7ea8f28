"""Plug an emulated card into pcscd through vsmartcard's ``vpcd`` reader driver.

The vpcd driver, loaded by pcscd from ``/etc/reader.conf.d/vpcd``, *listens* on TCP
127.0.0.1:35963 (``CHANNELID 0x8C7B``) for reader "Virtual PCD 00 00" (35964 for "… 00 01").
A virtual card is a client of that socket:

* every message, both ways, is a 2-byte big-endian length followed by the payload;
* a 1-byte payload from vpcd is a control code: ``00`` power off, ``01`` power on, ``02`` reset,
  ``04`` get ATR (answered with the ATR as a message); the others get no answer;
* any longer payload is a C-APDU, answered with the R-APDU.

Inserting a card is connecting; removing it is closing the socket. :class:`VpcdBridge` does both
from a background thread. A file lock per port keeps two processes (pytest-xdist workers, a demo
and a test run) from fighting over the same virtual slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol, Self, runtime_checkable

from clinic_terminal.card.inprocess import EmulatedCard  # the same card object the in-process transport drives
from clinic_terminal.closing import Closing

__all__ = ["DEFAULT_PORT", "DEFAULT_READER", "EmulatedCard", "VpcdBridge", "VpcdBridgeError"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963
DEFAULT_READER = "Virtual PCD 00 00"
#: pcscd polls vpcd for presence every 400 ms. A card put back before the poll that notices the
#: removal looks to pcscd like the old card still there (and mute), so keep the card out longer.
REINSERT_GAP = 0.5

_POWER_OFF = 0x00
_POWER_ON = 0x01
_RESET = 0x02
_GET_ATR = 0x04


@runtime_checkable
class _PoweredCard(Protocol):
    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...


class VpcdBridgeError(RuntimeError):
    """The bridge could not reach vpcd (is pcscd running with the vpcd driver?)."""


def reader_name_for_port(port: int) -> str:
    """vpcd names its slots by offset from the base port: 35963 → "Virtual PCD 00 00"."""
    return f"Virtual PCD 00 {port - DEFAULT_PORT:02d}"


class VpcdBridge(Closing):
    """One virtual card slot. ``insert(card)`` connects, ``remove()`` disconnects.

    Usable as a context manager; ``close()`` removes the card and releases the slot lock.
    """

    def __init__(
        self,
        card: EmulatedCard | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        lock_dir: Path | None = None,
        slot_timeout: float = 180.0,
    ) -> None:
        self.card = card
        self.slot_timeout = slot_timeout
        self.host = host
        self.port = port
        self.reader_name = reader_name_for_port(port)
        self._lock_path = (lock_dir or Path("/tmp")) / f"shikaku-vpcd-{port}.lock"  # noqa: S108
        self._lock_file: IO[bytes] | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._powered = threading.Event()
        self._state_lock = threading.Lock()
        self.errors: list[BaseException] = []
        #: ``time.perf_counter()`` when the card last connected to vpcd (was "inserted").
        self.inserted_at: float | None = None
        #: Called with each C-APDU before the card answers (tests use it to pull the card out).
        self.before_apdu: list[Callable[[bytes], None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def _acquire_slot(self, timeout: float) -> None:
        if self._lock_file is not None:
            return
        fresh = not self._lock_path.exists()
        handle = self._lock_path.open("ab")
        if fresh:  # its mtime marks the last removal: none yet
            with contextlib.suppress(OSError):
                os.utime(self._lock_path, (0, 0))
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise VpcdBridgeError(f"slot {self.reader_name} is held by another process") from None
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.chmod(self._lock_path, 0o666)  # noqa: S103 - shared by every user running tests
        self._lock_file = handle

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def insert(
        self,
        card: EmulatedCard | None = None,
        *,
        wait_powered: bool = True,
        timeout: float = 10.0,
    ) -> None:
        """Connect to vpcd (the card is placed on the reader).

        With ``wait_powered`` return only once pcscd has noticed the card and powered it, so an
        ``SCardConnect`` right after succeeds.
        """
        if card is not None:
            self.card = card
        if self.card is None:
            raise ValueError("no card to insert")
        if self._sock is not None:
            raise VpcdBridgeError("a card is already inserted")
        self._acquire_slot(timeout)
        # The lock file's mtime is the last removal from this slot, by any process.
        gap = self._lock_path.stat().st_mtime + REINSERT_GAP - time.time()
        if gap > 0:
            time.sleep(min(gap, REINSERT_GAP))
        deadline = time.monotonic() + timeout
        sock: socket.socket | None = None
        last_error: OSError | None = None
        while sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError as exc:
                last_error = exc
                if time.monotonic() > deadline:
                    raise VpcdBridgeError(f"cannot connect to vpcd at {self.host}:{self.port}: {exc}") from last_error
                time.sleep(0.05)
        self.inserted_at = time.perf_counter()
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._powered.clear()
        with self._state_lock:
            self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, args=(sock, self.card), name=f"vpcd-{self.port}", daemon=True
        )
        self._thread.start()
        if wait_powered and not self._powered.wait(max(0.0, deadline - time.monotonic())):
            self.remove()
            raise VpcdBridgeError("pcscd did not power the card (is the vpcd reader configured?)")

    def remove(self) -> None:
        """Close the socket (the card leaves the reader) and wait for the thread to end."""
        with self._state_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with contextlib.suppress(OSError):
                os.utime(self._lock_path)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def close(self) -> None:
        self.remove()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Self:
        """Take the slot (waiting up to ``slot_timeout`` for another process to release it)."""
        self._acquire_slot(self.slot_timeout)
        return self

    # -- the wire ----------------------------------------------------------------------------
    @staticmethod
    def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
        buffer = bytearray()
        while len(buffer) < size:
            # vpcd writes the length and the payload separately; without a quick ACK, Nagle on
            # its side and delayed ACK on ours cost ~40 ms per message.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(size - len(buffer))
            if not chunk:
                return None
            buffer += chunk
        return bytes(buffer)

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _serve(self, sock: socket.socket, card: EmulatedCard) -> None:
        try:
            while True:
                header = self._recv_exact(sock, 2)
                if header is None:
                    return
                payload = self._recv_exact(sock, int.from_bytes(header, "big"))
                if payload is None:
                    return
                if len(payload) == 1:
                    self._control(sock, card, payload[0])
                    continue
                for hook in list(self.before_apdu):
                    hook(payload)
                if self._sock is not sock:
                    return  # removed by a hook: answer nothing, like a card that left
                self._send(sock, card.process_apdu(payload))
        except OSError:
            return  # the socket was closed under us: the card was removed
        except BaseException as exc:  # keep the failure for the test to see
            self.errors.append(exc)
            raise

    def _control(self, sock: socket.socket, card: EmulatedCard, code: int) -> None:
        if code == _GET_ATR:
            self._send(sock, card.atr)
            return
        if code == _POWER_ON:
            self._powered.set()
        if not isinstance(card, _PoweredCard):
            return
        if code == _POWER_ON:
            card.power_on()
        elif code == _RESET:
            card.reset()
        elif code == _POWER_OFF:
            card.power_off()
