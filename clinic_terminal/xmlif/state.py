"""The terminal's own state under ``<root>/state/``: one SQLite file.

- ``journal``: answered request names with their content hash (exactly-once across restarts);
- ``reference_numbers``: 照会番号 registered by the clinic, keyed by the normalised 4-part number;
- ``receptions``: 一括照会 reception numbers → server batch id and the search infos to echo;
- ``limits``: the last limit certificate seen per person (LimitApplicationCertificateChanged);
- ``results``: the JSON rendering of every result written (served by ``json_routes``);
- ``visits``: the latest card-check visit per person and facility (its ``visit_id`` opens drug and
  checkup reads for the 薬剤情報 / 特定健診情報 requests, ``xmlif/clinical.py``).

The folder holds personal data and sits beside folders other programs write to: it must be a real
directory (not a link) and is kept owner-only (0700); the database and its ``-wal`` / ``-shm`` /
``-journal`` files must be regular files (not links) and are created 0600. Anything else is refused
(``StateError``) before SQLite opens a file.
"""

from __future__ import annotations

import json
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clinic_terminal.sqlite_store import SQLiteStore

STATE_DIR = "state"
DB_NAME = "terminal.sqlite3"

JournalState = Literal["rendered", "done", "error"]
DB_FILES = ("", "-wal", "-shm", "-journal")  # SQLite's files beside the database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    output TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS reference_numbers (
    person_key TEXT PRIMARY KEY,
    reference_number TEXT NOT NULL,
    facility_code TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS receptions (
    reception_number TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    facility_code TEXT NOT NULL,
    search_infos TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS limits (
    person_key TEXT PRIMARY KEY,
    reception_number TEXT NOT NULL,
    current_json TEXT NOT NULL,
    previous_json TEXT
);
CREATE TABLE IF NOT EXISTS visits (
    person_key TEXT NOT NULL,
    facility_code TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (person_key, facility_code)
);
CREATE TABLE IF NOT EXISTS results (
    file_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    body TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class JournalEntry:
    name: str
    sha256: str
    state: JournalState
    output: str  # the result (or .err) file name


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


class StateError(Exception):
    """The state folder or one of its files is not what the terminal made (a link, not a file)."""


def _private_folder(directory: Path) -> None:
    """``directory`` exists, is a real directory (not a link) and only its owner can use it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise StateError(f"the terminal's state folder {directory} is a symbolic link; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"the terminal's state folder {directory} is not a directory")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def _private_database(path: Path) -> None:
    """SQLite's files are regular files (not links); the database exists, 0600 (SQLite gives
    its -wal / -shm files the database's mode)."""
    for suffix in DB_FILES:
        candidate = path.with_name(path.name + suffix)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise StateError(f"{candidate} is not a regular file (a link or other); refusing to open the state")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(candidate, 0o600)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class TerminalState(SQLiteStore):
    """SQLite-backed state; one connection, safe to share between the threads of one process."""

    def __init__(self, directory: Path) -> None:
        _private_folder(directory)
        _private_database(directory / DB_NAME)
        super().__init__(directory / DB_NAME, _SCHEMA, busy_timeout_ms=5_000)

    @classmethod
    def for_root(cls, root: Path) -> TerminalState:
        return cls(state_dir(root))

    def _one(self, sql: str, *args: object) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    # --- journal
    def journal_get(self, name: str) -> JournalEntry | None:
        row = self._one("SELECT name, sha256, state, output FROM journal WHERE name = ?", name)
        return None if row is None else JournalEntry(row[0], row[1], row[2], row[3])

    def journal_set(self, name: str, sha256: str, state: JournalState, output: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO journal (name, sha256, state, output) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET sha256 = excluded.sha256, state = excluded.state, "
                "output = excluded.output, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (name, sha256, state, output),
            )

    def journal_rendered(
        self, name: str, sha256: str, output: str, *, file_id: str, kind: str, body: dict[str, Any]
    ) -> None:
        """One transaction: the result's JSON is kept and the request is journalled ``rendered``."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (file_id, kind, body) VALUES (?, ?, ?)",
                (file_id, kind, json.dumps(body, ensure_ascii=False)),
            )
            db.execute(
                "INSERT OR REPLACE INTO journal (name, sha256, state, output) VALUES (?, ?, 'rendered', ?)",
                (name, sha256, output),
            )

    def journal_delete(self, name: str) -> None:
        """Forget a request (its result was never delivered): the next sight of it answers it."""
        with self._tx() as db:
            db.execute("DELETE FROM journal WHERE name = ?", (name,))

    def journal_pending(self) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, sha256, state, output FROM journal WHERE state = 'rendered'"
            ).fetchall()
        return [JournalEntry(*r) for r in rows]

    def journal_mark_done(self, names: list[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE journal SET state = 'done' WHERE name = ?", [(n,) for n in names])

    def answered_count(self) -> int:
        row = self._one("SELECT count(*) FROM journal WHERE state IN ('rendered', 'done')")
        return 0 if row is None else int(row[0])

    # --- reference numbers (照会番号)
    def set_reference_number(self, key: str, reference_number: str, facility_code: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO reference_numbers (person_key, reference_number, facility_code) "
                "VALUES (?, ?, ?) "
                "ON CONFLICT(person_key) DO UPDATE SET reference_number = excluded.reference_number, "
                "facility_code = excluded.facility_code, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (key, reference_number, facility_code),
            )

    def reference_number(self, key: str) -> str | None:
        """The 照会番号 for a person; a registration made without 枝番 matches any branch."""
        row = self._one("SELECT reference_number FROM reference_numbers WHERE person_key = ?", key)
        if row is None and not key.endswith("|"):
            branchless = key.rsplit("|", 1)[0] + "|"
            row = self._one("SELECT reference_number FROM reference_numbers WHERE person_key = ?", branchless)
        return None if row is None else str(row[0])

    # --- 一括照会 receptions
    def add_reception(self, prefix: str, batch_id: str, facility_code: str, search_infos: list[dict[str, Any]]) -> str:
        """Register a 一括照会 and return its new reception number: ``prefix`` + a 6-digit sequence."""
        with self._tx() as db:
            count = int(db.execute("SELECT count(*) FROM receptions").fetchone()[0])
            reception_number = f"{prefix}{count + 1:06d}"
            db.execute(
                "INSERT INTO receptions (reception_number, batch_id, facility_code, search_infos) VALUES (?, ?, ?, ?)",
                (reception_number, batch_id, facility_code, json.dumps(search_infos, ensure_ascii=False)),
            )
        return reception_number

    def reception(self, reception_number: str) -> tuple[str, str, list[dict[str, Any]]] | None:
        """(batch id, facility code, search infos) of a reception number."""
        row = self._one(
            "SELECT batch_id, facility_code, search_infos FROM receptions WHERE reception_number = ?",
            reception_number,
        )
        if row is None:
            return None
        infos: list[dict[str, Any]] = json.loads(row[2])
        return str(row[0]), str(row[1]), infos

    # --- limit certificate history
    def swap_limit(self, key: str, reception_number: str, limit_json: str) -> str | None:
        """Record the person's limit certificate as seen in ``reception_number``; return the one
        seen in the person's previous 一括照会 (None if none). Downloading the same reception again
        compares with the same previous value."""
        with self._tx() as db:
            row = db.execute(
                "SELECT reception_number, current_json, previous_json FROM limits WHERE person_key = ?",
                (key,),
            ).fetchone()
            if row is not None and row[0] == reception_number:
                return None if row[2] is None else str(row[2])
            previous = None if row is None else str(row[1])
            db.execute(
                "INSERT OR REPLACE INTO limits (person_key, reception_number, current_json, previous_json) "
                "VALUES (?, ?, ?, ?)",
                (key, reception_number, limit_json, previous),
            )
        return previous

    # --- visits (card checks at the reader)
    def set_visit(self, key: str, facility_code: str, visit_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO visits (person_key, facility_code, visit_id) VALUES (?, ?, ?)",
                (key, facility_code, visit_id),
            )

    def visit_for(self, key: str, facility_code: str) -> str | None:
        row = self._one("SELECT visit_id FROM visits WHERE person_key = ? AND facility_code = ?", key, facility_code)
        return None if row is None else str(row[0])

    # --- JSON results
    def save_result(self, file_id: str, kind: str, body: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (file_id, kind, body) VALUES (?, ?, ?)",
                (file_id, kind, json.dumps(body, ensure_ascii=False)),
            )

    def result(self, file_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT body FROM results WHERE file_id = ?", file_id)
        if row is None:
            return None
        body: dict[str, Any] = json.loads(row[0])
        return body

    def list_results(self, *, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT file_id, kind, created_at FROM results"
        args: tuple[object, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            args = (kind,)
        sql += " ORDER BY created_at DESC, file_id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [{"file_id": r[0], "kind": r[1], "created_at": r[2]} for r in rows]
