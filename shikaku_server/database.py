"""Engine, sessions and the declarative base (tables live in each domain's models.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from anyio import to_thread
from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DBTimeouts:
    """How long the server waits for PostgreSQL before it answers ``503 unavailable``
    (docs/operations.md, "When PostgreSQL or Redis fails")."""

    connect: float = 2.0  # libpq connect_timeout (whole connection set-up)
    statement: float | None = 3.0  # server-side statement_timeout; None: none, and no client deadline
    pool: float = 2.0  # wait for a free pooled connection
    grace: float = 1.0  # client deadline = statement + grace: a frozen server cannot time itself out

    @property
    def deadline(self) -> float | None:
        return None if self.statement is None else self.statement + self.grace


class StatementWatchdog:
    """A client-side deadline for blocking psycopg2 calls.

    ``statement_timeout`` is enforced by the server, so a server that is frozen (SIGSTOP, a
    paused VM) never enforces it, and the kernel still acknowledges TCP, so keepalives do not
    notice either. While a statement, commit or rollback runs, its connection is registered
    here; a thread shuts the socket down once the deadline has passed, libpq sees the connection
    end and psycopg2 raises ``OperationalError`` (a disconnect: SQLAlchemy never pools that
    connection again)."""

    def __init__(self, tick: float = 0.1) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, tuple[float, Any]] = {}
        self._tick = tick
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_conn: Any, seconds: float) -> None:
        with self._lock:
            self._active[id(dbapi_conn)] = (time.monotonic() + seconds, dbapi_conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-statement-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, dbapi_conn: Any) -> None:
        with self._lock:
            self._active.pop(id(dbapi_conn), None)

    def _run(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            with self._lock:  # held while cutting: a disarmed (maybe closed) connection is never cut
                for key, (deadline, conn) in list(self._active.items()):
                    if deadline <= now:
                        del self._active[key]
                        _cut(conn)


def _cut(dbapi_conn: Any) -> None:
    with contextlib.suppress(Exception):
        if dbapi_conn.closed:
            return
        fd = dbapi_conn.fileno()
        log.warning("PostgreSQL did not answer within the statement deadline; dropping the connection")
        dup = socket.socket(fileno=socket.dup(fd))  # shutdown acts on the socket, not the descriptor
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()


WATCHDOG = StatementWatchdog()
DEADLINES: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def _postgres_guard(engine: Engine, timeouts: DBTimeouts) -> None:
    """Arm the watchdog around every statement, commit and rollback SQLAlchemy runs."""

    deadline = timeouts.deadline
    if deadline is None:
        return

    def dbapi(conn: Any) -> Any:
        if conn.closed or conn.invalidated:  # ``conn.connection`` would try to reconnect
            return None
        return conn.connection.dbapi_connection

    def arm(conn: Any, *_: Any) -> None:
        raw = dbapi(conn)
        if raw is not None:
            WATCHDOG.arm(raw, deadline)

    def disarm(conn: Any, *_: Any) -> None:
        raw = dbapi(conn)
        if raw is not None:
            WATCHDOG.disarm(raw)

    def disarm_context(context: Any) -> None:
        # the failed connection, without ``.connection`` (which would try to reconnect)
        fairy = getattr(context.connection, "_dbapi_connection", None)
        raw = getattr(fairy, "dbapi_connection", None)
        if raw is not None:
            WATCHDOG.disarm(raw)

    event.listen(engine, "before_cursor_execute", arm)
    event.listen(engine, "after_cursor_execute", disarm)
    event.listen(engine, "handle_error", disarm_context)
    event.listen(engine, "commit", arm)
    event.listen(engine, "rollback", arm)
    event.listen(engine, "begin", disarm)  # the previous commit or rollback returned
    # the pool's reset-on-return is a rollback too; every connection is disarmed when it is
    # returned (after the reset) or closed
    event.listen(engine.pool, "reset", lambda dbapi_conn, *_: WATCHDOG.arm(dbapi_conn, deadline))
    event.listen(engine.pool, "checkin", lambda dbapi_conn, *_: WATCHDOG.disarm(dbapi_conn))
    event.listen(engine.pool, "close", lambda dbapi_conn, *_: WATCHDOG.disarm(dbapi_conn))
    event.listen(engine.pool, "invalidate", lambda dbapi_conn, *_: WATCHDOG.disarm(dbapi_conn))


def make_engine(url: str, *, pool_size: int = 10, timeouts: DBTimeouts | None = None) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    timeouts = timeouts or DBTimeouts()
    # hide_parameters: SQL errors never carry personal data into logs
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_timeout=timeouts.pool,
        hide_parameters=True,
        connect_args=postgres_connect_args(timeouts),
    )
    _postgres_guard(engine, timeouts)
    if timeouts.deadline is not None:
        DEADLINES[engine] = timeouts.deadline
    return engine


def postgres_connect_args(timeouts: DBTimeouts) -> dict[str, Any]:
    """libpq parameters: a connect timeout, the server-side statement timeout, TCP keepalives
    (a peer that vanished from the network is noticed in ~10 s)."""
    args: dict[str, Any] = {
        "connect_timeout": max(1, round(timeouts.connect)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    if timeouts.statement is not None:
        args["options"] = f"-c statement_timeout={int(timeouts.statement * 1000)}"
    return args


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


T = TypeVar("T")


class Transactions(Protocol):
    """Units of work for async code (services, routes) on the blocking SQLAlchemy session:
    ``work`` runs off the event loop, and the caller awaits its result."""

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work`` in one transaction, committed before this returns (its writes, access-log
        entries included, are in the database before the answer is sent); rolled back if it raises."""
        ...

    async def read(self, work: Callable[[Session], T]) -> T:
        """``work`` on a session that commits nothing (reads)."""
        ...


class ThreadedTransactions:
    """Each unit of work on a session of ``factory`` in a worker thread (anyio's, the one
    Starlette's sync routes use): the one place async code hands the database to a thread."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def _run(self, work: Callable[[Session], T]) -> T:
        with transaction(self.factory) as session:
            return work(session)

    def _read(self, work: Callable[[Session], T]) -> T:
        with self.factory() as session:
            return work(session)

    async def run(self, work: Callable[[Session], T]) -> T:
        return await to_thread.run_sync(self._run, work)

    async def read(self, work: Callable[[Session], T]) -> T:
        return await to_thread.run_sync(self._read, work)


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a database error, wrapped by SQLAlchemy or not (None for any
    other error, and on SQLite)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def on_psycopg2(engine: Engine) -> bool:
    """Whether the PostgreSQL-only implementations apply (raw psycopg2 statements, ``COPY``, the
    event-loop connections of ``pgasync``). Asked only where an implementation is chosen, once,
    in the app's lifespan (``make_*``): no service or call site asks which database it talks to."""
    return engine.dialect.driver == "psycopg2"


def execute_raw(engine: Engine, sql: str, params: Sequence[Any]) -> None:
    """One statement and its commit on a pooled DBAPI connection, without a SQLAlchemy session
    (a fraction of its CPU on the hot write paths). A failed connection is never pooled again."""
    conn = engine.raw_connection()
    deadline = DEADLINES.get(engine)
    try:
        if deadline is not None:
            WATCHDOG.arm(conn.dbapi_connection, deadline)
        cursor = conn.cursor()
        cursor.execute(sql, params)
        cursor.close()
        conn.commit()
    except Exception:
        WATCHDOG.disarm(conn.dbapi_connection)
        conn.invalidate()  # its state is unknown: never back into the pool
        raise
    finally:
        if conn.dbapi_connection is not None:
            WATCHDOG.disarm(conn.dbapi_connection)
        conn.close()
