"""情報提供等記録: write an entry for every read of a person's data; read a person's own log."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.auth.models import Facility
from shikaku_server.consent.models import Visit
from shikaku_server.database import execute_raw, on_psycopg2, utcnow


def record(
    session: Session,
    *,
    insured_id: int,
    facility_code: str | None,
    role: str,
    what: str,
    query_kind: str | None = None,
    consent_id: int | None = None,
    visit_id: str | None = None,
    at: dt.datetime | None = None,
    emergency: bool = False,
) -> None:
    session.add(
        AccessLogEntry(
            insured_id=insured_id,
            facility_code=facility_code,
            role=role,
            what=what,
            query_kind=query_kind,
            consent_id=consent_id,
            visit_id=visit_id,
            at=at or utcnow(),
            emergency=emergency,
        )
    )


def record_many(session: Session, entries: list[dict[str, Any]]) -> None:
    if entries:
        now = utcnow()
        session.execute(insert(AccessLogEntry), [{"at": now, **e} for e in entries])


def entries_for(session: Session, insured_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AccessLogEntry, Facility.name, Visit.auth_method)
        .outerjoin(Facility, Facility.code == AccessLogEntry.facility_code)
        .outerjoin(Visit, Visit.id == AccessLogEntry.visit_id)
        .where(AccessLogEntry.insured_id == insured_id)
        .order_by(AccessLogEntry.at.desc(), AccessLogEntry.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": e.at.isoformat(),
            "facility_code": e.facility_code,
            "facility_name": name,
            "role": e.role,
            "what": e.what,
            "query_kind": e.query_kind,
            "consent_id": e.consent_id,
            "emergency": e.emergency,
            "confirmation": method,  # the visit's: pin / face / visual (目視確認); None without a visit
        }
        for e, name, method in rows
    ]


class EntryInserter(Protocol):
    """Where ``AccessLogWriter`` puts a group of entries: one statement and its commit. Called in
    the writer's own thread (blocking)."""

    def insert(self, batch: list[dict[str, Any]]) -> None: ...


class SQLEntryInserter:
    """Any SQLAlchemy database (SQLite, the embedded default): one ``executemany`` in a session."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def insert(self, batch: list[dict[str, Any]]) -> None:
        with self.factory.begin() as session:
            session.execute(insert(AccessLogEntry), batch)


_PG_COLUMNS = ("at", "insured_id", "facility_code", "role", "what", "query_kind", "consent_id", "visit_id")
_PG_INSERT = (
    "INSERT INTO access_log (at, insured_id, facility_code, role, what, query_kind, consent_id, visit_id) "
    "SELECT * FROM unnest(%s::timestamptz[], %s::integer[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::integer[], %s::text[])"
)


class PostgresEntryInserter:
    """PostgreSQL (psycopg2): the rows as one array per column (``unnest``) in one raw statement:
    a third of the CPU of SQLAlchemy's executemany, time during which the writer's thread holds
    the GIL the event loop needs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, batch: list[dict[str, Any]]) -> None:
        execute_raw(self.engine, _PG_INSERT, [[entry.get(c) for entry in batch] for c in _PG_COLUMNS])


def make_entry_inserter(factory: sessionmaker[Session]) -> EntryInserter:
    """PostgreSQL's inserter on psycopg2, else SQLAlchemy's: chosen once, in the app's lifespan."""
    engine = factory.kw["bind"]
    return PostgresEntryInserter(engine) if on_psycopg2(engine) else SQLEntryInserter(factory)


class AccessLogWriter:
    """Group-commits the access-log entries of by-number lookups (the hot path).

    A lookup hands its entry to this writer and returns; a background thread inserts the queued
    entries in one statement every ``interval`` seconds (or at ``max_batch``). The app flushes on
    shutdown and before the patient reads their log, so a graceful restart loses nothing; a crash
    of the process can lose at most the entries of the last interval (documented in
    docs/operations.md). Card checks and drug/checkup reads write their entries in the request's
    own transaction instead (atomic with the visit they create).
    """

    def __init__(self, inserter: EntryInserter, *, interval: float = 0.05, max_batch: int = 2000) -> None:
        import queue
        import threading

        self._inserter = inserter
        self._interval = interval
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log-writer", daemon=True)
        self._thread.start()

    def submit(self, entry: dict[str, Any]) -> None:
        self._queue.put({"at": utcnow(), "consent_id": None, "visit_id": None, **entry})

    def flush(self) -> None:
        import logging
        import queue

        with self._lock:
            while True:
                batch: list[dict[str, Any]] = []
                try:
                    while len(batch) < self._max_batch:
                        batch.append(self._queue.get_nowait())
                except queue.Empty:
                    pass
                if not batch:
                    return
                try:
                    self._inserter.insert(batch)
                except Exception:
                    logging.getLogger(__name__).exception("access log write failed; retrying")
                    for entry in batch:  # keep them: nothing is dropped on a transient error
                        self._queue.put(entry)
                    return

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
