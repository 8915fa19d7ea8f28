"""A trial, not product code: the server's event-loop PostgreSQL reads (``pgasync.AsyncPG``)
replaced by asyncpg, to measure the lookup path against the current psycopg2 connections.

    pip install --no-deps --target /tmp/asyncpg-site asyncpg
    PYTHONPATH=$PWD:$PWD/bench/asyncpg_trial:/tmp/asyncpg-site \\
        .venv/bin/python -m bench.server_bench --reuse-db --skip-card ...

Python imports ``sitecustomize`` at start-up in every process (the bench, the server and its
workers), before the app: ``make_async_pg`` then hands out ``AsyncpgPG``, with the same
``fetch(Prepared, params)`` the bundle reader and the card store call. asyncpg prepares each
statement once per connection (its statement cache) and takes a timeout per query; the pool
waits for a free connection at most the pool timeout. Results in bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg  # type: ignore[import-not-found]
from sqlalchemy import Engine

from shikaku_server import pgasync
from shikaku_server.database import DBTimeouts, on_psycopg2


class AsyncpgPG:
    def __init__(self, engine: Engine, size: int, timeouts: DBTimeouts | None = None) -> None:
        url = engine.url
        self._connect = {
            "host": url.host,
            "port": url.port or 5432,
            "user": url.username,
            "password": url.password,
            "database": url.database,
        }
        self._size = size
        self._timeouts = timeouts or DBTimeouts()
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    settings = {}
                    if self._timeouts.statement is not None:
                        settings["statement_timeout"] = str(int(self._timeouts.statement * 1000))

                    async def codecs(conn: Any) -> None:
                        for name in ("json", "jsonb"):  # decoded as psycopg2 does
                            await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

                    self._pool = await asyncpg.create_pool(
                        **self._connect,
                        min_size=0,
                        max_size=self._size,
                        timeout=self._timeouts.connect,
                        server_settings=settings,
                        init=codecs,
                    )
        return self._pool

    async def fetch(self, statement: pgasync.Prepared, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        pool = await self._ready()
        sql = statement.prepare_sql.removeprefix(f"PREPARE {statement.name} AS ")
        values = [params[p] for p in statement.params]
        async with pool.acquire(timeout=self._timeouts.pool) as conn:
            rows = await conn.fetch(sql, *values, timeout=self._timeouts.deadline)
        return [tuple(r) for r in rows]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()


def _make(engine: Engine, size: int, timeouts: DBTimeouts | None = None) -> Any:
    return AsyncpgPG(engine, size, timeouts) if on_psycopg2(engine) else None


pgasync.make_async_pg = _make
