"""The access log's group-commit writer and its ``EntryInserter`` port, without HTTP: the
PostgreSQL inserter (one ``unnest`` statement) writes exactly the rows the SQLAlchemy one does,
the lifespan's choice follows the engine, and a failed insert keeps its entries for the next
flush."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.access_log.service import (
    AccessLogWriter,
    EntryInserter,
    PostgresEntryInserter,
    SQLEntryInserter,
    make_entry_inserter,
)
from shikaku_server.database import transaction
from shikaku_server.eligibility.models import Insured
from tests.conftest import FACILITY_CODE

AT = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture
def insured_id(session_factory: Any) -> int:
    with transaction(session_factory) as s:
        row = Insured(insurer_number="01130012", symbol="1", number="2", branch="00", symbol_norm="1", number_norm="2")
        s.add(row)
        s.flush()
        return row.id


def _entries(insured_id: int, what: str) -> list[dict[str, Any]]:
    return [
        {
            "at": AT,
            "insured_id": insured_id,
            "facility_code": FACILITY_CODE,
            "role": "reception",
            "what": what,
            "query_kind": "number",
            "consent_id": 7,
            "visit_id": "v-1",
        },
        {  # the optional columns empty
            "at": AT + dt.timedelta(seconds=1),
            "insured_id": insured_id,
            "facility_code": None,
            "role": "patient",
            "what": what,
            "query_kind": None,
            "consent_id": None,
            "visit_id": None,
        },
    ]


def _stored(session_factory: Any, what: str) -> list[tuple[Any, ...]]:
    e = AccessLogEntry
    with session_factory() as s:
        rows = s.execute(
            sa.select(e.at, e.insured_id, e.facility_code, e.role, e.what, e.query_kind, e.consent_id, e.visit_id)
            .where(e.what == what)
            .order_by(e.at)
        ).all()
    return [tuple(r) for r in rows]


def test_the_lifespan_picks_the_inserter_of_its_database(session_factory: Any, backend: str) -> None:
    inserter = make_entry_inserter(session_factory)
    assert type(inserter) is (PostgresEntryInserter if backend == "postgres" else SQLEntryInserter)


def test_entry_inserters_write_the_same_rows(session_factory: Any, backend: str, insured_id: int) -> None:
    inserters: dict[str, EntryInserter] = {"sql": SQLEntryInserter(session_factory)}
    if backend == "postgres":
        inserters["postgres"] = PostgresEntryInserter(session_factory.kw["bind"])
    for name, inserter in inserters.items():
        inserter.insert(_entries(insured_id, name))
    for name in inserters:  # PostgreSQL's arrays = SQLAlchemy's executemany, column by column
        assert _stored(session_factory, name) == [tuple(e.values()) for e in _entries(insured_id, name)]


class _Flaky:
    """An inserter whose first ``failures`` calls fail (the database away), then records."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[str]] = []

    def insert(self, batch: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database went away")
        self.batches.append([e["what"] for e in batch])


def test_a_failed_insert_keeps_its_entries_for_the_next_flush(caplog: pytest.LogCaptureFixture) -> None:
    inserter = _Flaky(failures=1)
    writer = AccessLogWriter(inserter, interval=3600, max_batch=2)  # flushed by hand below
    try:
        for what in ("a", "b", "c"):
            writer.submit({"insured_id": 1, "facility_code": None, "role": "reception", "what": what})
        with caplog.at_level(logging.ERROR):
            writer.flush()
        assert inserter.batches == []
        assert "access log write failed" in caplog.text
        writer.flush()
        # nothing lost, at most max_batch entries a statement (the failed batch went back to the end)
        assert inserter.batches == [["c", "a"], ["b"]]
    finally:
        writer.close()


def test_close_writes_what_is_queued() -> None:
    inserter = _Flaky(failures=0)
    writer = AccessLogWriter(inserter, interval=3600)
    writer.submit({"insured_id": 1, "facility_code": None, "role": "reception", "what": "last"})
    writer.close()
    assert inserter.batches == [["last"]]
