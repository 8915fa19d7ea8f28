"""asyncpg behind the ``fetch(Prepared, params)`` of ``pgasync.AsyncPG`` (a trial; see
``sitecustomize`` and ``reader_cpu`` beside this file, results in bench/README.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg  # type: ignore[import-not-found]
from sqlalchemy import Engine

from shikaku_server import pgasync
from shikaku_server.database import DBTimeouts


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
        self.timeouts = True  # a deadline on the pool wait and on every query

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
        if not self.timeouts:  # the trial's variant: what the per-call deadlines cost
            async with pool.acquire() as conn:
                rows = await conn.fetch(sql, *values)
            return [tuple(r) for r in rows]
        async with pool.acquire(timeout=self._timeouts.pool) as conn:
            rows = await conn.fetch(sql, *values, timeout=self._timeouts.deadline)
        return [tuple(r) for r in rows]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
