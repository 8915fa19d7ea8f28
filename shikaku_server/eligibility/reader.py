"""The ``BundleReader`` implementations: where a by-number or by-card lookup reads on a cache miss.

- ``SQLBundleReader``: any SQLAlchemy database (SQLite, the embedded default): the reads through
  the ``Transactions`` port (``database.ThreadedTransactions``: a worker thread, off the event loop).
- ``PostgresBundleReader``: the same statements prepared on the event loop's own PostgreSQL
  connections (``pgasync``): no thread hop, no per-query parse and plan.

``make_bundle_reader`` picks one from the engine, once, in the app's lifespan: no call site asks
which database it is talking to.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from shikaku_server.database import Transactions
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
from shikaku_server.public_expense import service as public_expense


class SQLBundleReader:
    """Reads through ``reads`` (``Transactions.read``: sessions that commit nothing; the app's
    are its autocommit read sessions)."""

    def __init__(self, reads: Transactions) -> None:
        self.reads = reads

    async def bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        return await self.reads.read(lambda s: load_bundle(s, insurer_number, symbol_norm, number_norm))

    async def newer_eligibility_exists(self, evaluation: Evaluation, as_of: dt.date) -> bool:
        if evaluation.period is None or not evaluation.period.get("address_norm"):
            return False  # nothing to compare: no thread hop
        return await self.reads.read(lambda s: newer_eligibility_exists(s, evaluation, as_of))


_PG_BUNDLE = Prepared("shikaku_bundle", _BUNDLE_QUERY)
_PG_INSURER_NAME = Prepared("shikaku_insurer_name", _INSURER_NAME_QUERY)


class PostgresBundleReader(SQLBundleReader):
    """The bundle on the event loop (``pgasync``); the rare "newer eligibility" count through
    SQLAlchemy through ``reads`` (it is the one statement of ``newer_eligibility_exists``)."""

    def __init__(self, reads: Transactions, pg: AsyncPG) -> None:
        super().__init__(reads)
        self.pg = pg

    async def bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        params = {"insurer_number": insurer_number, "symbol_norm": symbol_norm, "number_norm": number_norm}
        rows = await self.pg.fetch(_PG_BUNDLE, params)
        certificates = await self.pg.fetch(public_expense.PG_QUERY, params)  # 公費負担医療 (docs/assistance.md)
        known, name = _known_insurer_name(insurer_number)
        if not known:
            found = await self.pg.fetch(_PG_INSURER_NAME, {"number": insurer_number})
            name = found[0][0] if found else None
            _INSURER_NAMES[insurer_number] = (time.monotonic() + 60, name)
        return public_expense.attach(bundle_from_rows(rows, name), certificates)


def make_bundle_reader(reads: Transactions, pg: AsyncPG | None) -> BundleReader:
    """PostgreSQL's event-loop reader when ``pg`` is given (see ``make_async_pg``), else SQLAlchemy
    through ``reads``."""
    return PostgresBundleReader(reads, pg) if pg is not None else SQLBundleReader(reads)
