"""The ``BundleReader`` implementations: where a by-number or by-card lookup reads on a cache miss.

- ``SQLBundleReader``: any SQLAlchemy database (SQLite, the embedded default): the reads in a
  worker thread, off the event loop.
- ``PostgresBundleReader``: the same statements prepared on the event loop's own PostgreSQL
  connections (``pgasync``): no thread hop, no per-query parse and plan.

``make_bundle_reader`` picks one from the engine, once, in the app's lifespan: no call site asks
which database it is talking to.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.eligibility.service import (
    _BUNDLE_QUERY,
    _INSURER_NAME_QUERY,
    _INSURER_NAMES,
    BundleReader,
    Evaluation,
    _known_insurer_name,
    bundle_from_rows,
    load_bundle,
    newer_eligibility_exists,
)
from shikaku_server.pgasync import AsyncPG, Prepared


class SQLBundleReader:
    """Reads through SQLAlchemy sessions of ``factory`` (autocommit reads), each in a thread."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def _bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        with self.factory() as session:
            return load_bundle(session, insurer_number, symbol_norm, number_norm)

    async def bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        return await to_thread.run_sync(self._bundle, insurer_number, symbol_norm, number_norm)

    def _newer(self, evaluation: Evaluation, as_of: dt.date) -> bool:
        with self.factory() as session:
            return newer_eligibility_exists(session, evaluation, as_of)

    async def newer_eligibility_exists(self, evaluation: Evaluation, as_of: dt.date) -> bool:
        if evaluation.period is None or not evaluation.period.get("address_norm"):
            return False  # nothing to compare: no thread hop
        return await to_thread.run_sync(self._newer, evaluation, as_of)


_PG_BUNDLE = Prepared("shikaku_bundle", _BUNDLE_QUERY)
_PG_INSURER_NAME = Prepared("shikaku_insurer_name", _INSURER_NAME_QUERY)


class PostgresBundleReader(SQLBundleReader):
    """The bundle on the event loop (``pgasync``); the rare "newer eligibility" count through
    SQLAlchemy in a thread (it is the one statement of ``newer_eligibility_exists``)."""

    def __init__(self, factory: sessionmaker[Session], pg: AsyncPG) -> None:
        super().__init__(factory)
        self.pg = pg

    async def bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        rows = await self.pg.fetch(
            _PG_BUNDLE, {"insurer_number": insurer_number, "symbol_norm": symbol_norm, "number_norm": number_norm}
        )
        known, name = _known_insurer_name(insurer_number)
        if not known:
            found = await self.pg.fetch(_PG_INSURER_NAME, {"number": insurer_number})
            name = found[0][0] if found else None
            _INSURER_NAMES[insurer_number] = (time.monotonic() + 60, name)
        return bundle_from_rows(rows, name)


def make_bundle_reader(factory: sessionmaker[Session], pg: AsyncPG | None) -> BundleReader:
    """PostgreSQL's event-loop reader when ``pg`` is given (see ``make_async_pg``), else threads."""
    return PostgresBundleReader(factory, pg) if pg is not None else SQLBundleReader(factory)
