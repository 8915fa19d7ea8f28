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

from typing import Any

from adapter import AsyncpgPG  # type: ignore[import-not-found]  # beside this file, on PYTHONPATH
from sqlalchemy import Engine

from shikaku_server import pgasync
from shikaku_server.database import DBTimeouts, on_psycopg2


def _make(engine: Engine, size: int, timeouts: DBTimeouts | None = None) -> Any:
    return AsyncpgPG(engine, size, timeouts) if on_psycopg2(engine) else None


pgasync.make_async_pg = _make
