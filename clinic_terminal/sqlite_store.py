"""The terminal's small SQLite files (the XML interface's state, the outage journal): one
connection shared by the threads of a process behind a lock, WAL with full sync (an entry is on
disk when the call returns), and transactions as ``BEGIN IMMEDIATE`` … ``COMMIT``."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clinic_terminal.closing import Closing


class SQLiteStore(Closing):
    def __init__(self, path: Path, schema: str, *, busy_timeout_ms: int) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
