"""PostgreSQL statements on the event loop: psycopg2 connections in asynchronous mode.

The by-number cache-miss path reads one bundle; through SQLAlchemy in the thread pool that
cost a thread hop, a session, a pool checkout and the statement's parse and plan on the server
every time. Here a few psycopg2 connections are driven by the event loop itself (``poll()``
with ``add_reader``/``add_writer``, as psycopg2 documents for asynchronous use), each holding
the hot statements server-side prepared (``PREPARE`` once per connection, then ``EXECUTE``).

Autocommit only: asynchronous connections have no transactions of their own, so each statement
is its own transaction, committed when its answer arrives. That is what a single-statement read
wants, and what the card check's one write wants (the visit and its access-log entry in one
``WITH … INSERT … INSERT`` statement: ``execute``). Anything else stays on SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import psycopg2  # type: ignore[import-untyped]  # no stubs installed (psycopg2-binary)
import psycopg2.extensions  # type: ignore[import-untyped]
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Select

from shikaku_server.database import DBTimeouts, on_psycopg2, postgres_connect_args

log = logging.getLogger(__name__)


class Prepared:
    """A statement prepared on every connection under ``name`` (positional ``$n`` parameters):
    a SQLAlchemy ``Select``, or SQL text whose ``$1 … $n`` are named by ``params``."""

    def __init__(self, name: str, statement: Select[Any] | str, params: Sequence[str] = ()) -> None:
        if isinstance(statement, str):
            sql, self.params = statement, tuple(params)
        else:
            dialect = postgresql.psycopg2.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
            compiled = statement.compile(dialect=dialect)
            sql, self.params = compiled.string, tuple(compiled.positiontup or ())
        self.name = name
        self.prepare_sql = f"PREPARE {name} AS {sql}"
        self.execute_sql = (
            f"EXECUTE {name} ({', '.join(['%s'] * len(self.params))})" if self.params else f"EXECUTE {name}"
        )


class _Connection:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.prepared: set[str] = set()


class DeadlineExceeded(psycopg2.OperationalError):  # type: ignore[misc]  # untyped base
    """PostgreSQL did not answer in time (a frozen or overloaded server): never retried."""


class AsyncPG:
    """At most ``size`` asynchronous connections, opened on demand, reused in LIFO order.

    Every wait on the server has a deadline (``timeouts``: the connect timeout for a new
    connection, the statement deadline for a statement); past it the connection is dropped and
    ``DeadlineExceeded`` raised (503 at the app's boundary). A free connection is waited for at
    most the pool timeout."""

    def __init__(self, engine: Engine, size: int, timeouts: DBTimeouts | None = None) -> None:
        _, kwargs = engine.dialect.create_connect_args(engine.url)
        self._timeouts = timeouts or DBTimeouts()
        self._connect_kwargs = {**kwargs, **postgres_connect_args(self._timeouts)}
        self._size = size
        self._idle: deque[_Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def fetch(self, statement: Prepared, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """All rows of ``statement``; a connection that fails is dropped (one retry when it was
        a reused connection: the server may have closed it while idle)."""
        return await self._statement(statement, params, rows=True)

    async def execute(self, statement: Prepared, params: dict[str, Any]) -> None:
        """A statement without rows (a write), committed when this returns. Retried like
        ``fetch``: a write must therefore be idempotent (the card check's visit is inserted
        ``ON CONFLICT (id) DO NOTHING`` under its random id, so a retry after a commit whose
        answer was lost writes nothing twice)."""
        await self._statement(statement, params, rows=False)

    async def _statement(self, statement: Prepared, params: dict[str, Any], *, rows: bool) -> list[tuple[Any, ...]]:
        values = [params[p] for p in statement.params]
        for attempt in (1, 2):
            conn, reused = await self._acquire()
            try:
                result = await self._run(conn, statement, values, rows)
            except DeadlineExceeded:
                self._discard(conn)
                raise
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self._discard(conn)
                if attempt == 1 and reused:
                    log.warning("database connection lost; retrying the read on a new one")
                    continue
                raise
            except BaseException:
                self._discard(conn)  # cancelled or failed mid-statement: its state is unknown
                raise
            self._release(conn)
            return result
        raise AssertionError("unreachable")

    async def _run(
        self, conn: _Connection, statement: Prepared, values: Sequence[Any], rows: bool
    ) -> list[tuple[Any, ...]]:
        cursor = conn.raw.cursor()
        deadline = self._timeouts.deadline
        try:
            if statement.name not in conn.prepared:
                cursor.execute(statement.prepare_sql)
                await self._wait(conn.raw, deadline)
                conn.prepared.add(statement.name)
            cursor.execute(statement.execute_sql, values)
            await self._wait(conn.raw, deadline)
            result: list[tuple[Any, ...]] = cursor.fetchall() if rows else []
            return result
        finally:
            cursor.close()

    async def _acquire(self) -> tuple[_Connection, bool]:
        while True:
            if self._closed:
                raise psycopg2.InterfaceError("the pool is closed")
            if self._idle:
                return self._idle.pop(), True
            if self._open < self._size:
                self._open += 1
                try:
                    raw = psycopg2.connect(**self._connect_kwargs, async_=1)
                    try:
                        await self._wait(raw, self._timeouts.connect)
                    except BaseException:
                        raw.close()
                        raise
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
                return _Connection(raw), False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self._timeouts.pool)
            except TimeoutError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise DeadlineExceeded("no PostgreSQL connection became free in time") from None
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            self._discard(conn)
            return
        self._idle.append(conn)
        self._wake()

    def _discard(self, conn: _Connection) -> None:
        self._open -= 1
        with contextlib.suppress(psycopg2.Error):
            conn.raw.close()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @staticmethod
    async def _wait(raw: Any, seconds: float | None) -> None:
        """Drive ``raw.poll()`` until the pending operation is done, sleeping on the socket, for at
        most ``seconds`` in all (None: no limit)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                await AsyncPG._poll(loop, raw)
        except TimeoutError:
            raise DeadlineExceeded("PostgreSQL did not answer in time") from None

    @staticmethod
    async def _poll(loop: asyncio.AbstractEventLoop, raw: Any) -> None:
        while True:
            state = raw.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            fd = raw.fileno()
            ready = loop.create_future()
            if state == psycopg2.extensions.POLL_READ:
                loop.add_reader(fd, _set_ready, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
            elif state == psycopg2.extensions.POLL_WRITE:
                loop.add_writer(fd, _set_ready, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
            else:
                raise psycopg2.OperationalError(f"unexpected poll state {state}")

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())


def _set_ready(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def make_async_pg(engine: Engine, size: int, timeouts: DBTimeouts | None = None) -> AsyncPG | None:
    """Event-loop connections for an engine on psycopg2; None for any other database."""
    return AsyncPG(engine, size, timeouts) if on_psycopg2(engine) else None
