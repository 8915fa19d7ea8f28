"""Make sure pcscd runs and shows the vpcd reader; wait for a reader to see a card come or go.

There is no systemd in the development containers: :func:`ensure_pcscd` starts the daemon itself
(``pcscd`` forks into the background and stays up) when no ``pcscd`` process exists, then waits
until pyscard lists the reader. It raises :class:`PcscdError` — it never skips — when that fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from clinic_terminal.card.errors import NoReaderError
from clinic_terminal.card.monitor import CardEventKind, wait_for
from clinic_terminal.card.pyscard_monitor import PyscardCardMonitor
from clinic_terminal.card.pyscard_transport import list_readers
from testbed.vpcd_bridge import DEFAULT_READER

__all__ = ["PcscdError", "ensure_pcscd", "pcscd_pids", "wait_for_card_state"]


#: Serialises "is pcscd running? else start it" across processes: two test runs starting pcscd at
#: the same moment race for the vpcd port, and the daemon that survives may have no vpcd reader.
_START_LOCK = Path("/tmp/shikaku-pcscd-start.lock")  # noqa: S108 - shared by every test run


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    with _START_LOCK.open("ab") as handle:
        with contextlib.suppress(OSError):
            _START_LOCK.chmod(0o666)  # shared by every user running tests
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class PcscdError(RuntimeError):
    """pcscd could not be started or does not show the expected reader."""


def pcscd_pids() -> list[int]:
    """Process ids of running ``pcscd`` daemons (from /proc, like ``pidof``)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "pcscd":
            pids.append(int(entry.name))
    return pids


def _start_pcscd() -> None:
    binary = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists() else None)
    if binary is None:
        raise PcscdError("pcscd is not installed (apt-get install pcscd vsmartcard-vpcd)")
    try:
        completed = subprocess.run([binary], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PcscdError(f"cannot start {binary}: {exc}") from exc
    if completed.returncode != 0:
        raise PcscdError(f"{binary} exited with {completed.returncode}: {completed.stderr.strip()}")


def ensure_pcscd(reader: str = DEFAULT_READER, *, timeout: float = 15.0) -> None:
    """Start pcscd if it is not running and wait until ``reader`` is listed."""
    with _start_lock():
        if not pcscd_pids():
            _start_pcscd()
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    while time.monotonic() < deadline:
        try:
            names = list_readers()
        except NoReaderError as exc:
            last = str(exc)
        else:
            if reader in names:
                return
            last = f"readers: {names}"
        time.sleep(0.1)
    running = pcscd_pids()
    hint = (
        f"pcscd runs (pid {', '.join(map(str, running))}) without it: a daemon that came up without the vpcd "
        "reader must be restarted by whoever started it"
        if running
        else "is vsmartcard-vpcd installed?"
    )
    raise PcscdError(f"pcscd does not list {reader!r} after {timeout} s ({last}); {hint}")


def wait_for_card_state(reader: str, *, present: bool, timeout: float = 5.0) -> None:
    """Block until pcscd reports ``reader`` with (``present=True``) or without a card."""
    monitor = PyscardCardMonitor(reader)
    try:
        wait_for(monitor, CardEventKind.INSERTED if present else CardEventKind.REMOVED, timeout)
    except TimeoutError as exc:
        state = "absent" if present else "present"
        raise PcscdError(f"{reader}: card still {state} after {timeout} s") from exc
    finally:
        monitor.close()
