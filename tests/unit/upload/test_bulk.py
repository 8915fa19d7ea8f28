"""The uploads' ``BulkWriter`` port without HTTP, on both backends: the lifespan's choice follows
the engine, and PostgreSQL's ``COPY`` and key probes find and write exactly what SQLAlchemy's
statements do."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.database import transaction, utcnow
from shikaku_server.upload.bulk import INSURED_COLUMNS, PostgresBulk, SQLBulk, make_bulk, render_rows
from shikaku_server.upload.service import _INSURED_KEY, _is_unique_violation

INSURER = "01130012"


def _person(number: str, symbol: str = "１２３") -> tuple[str, str, str, str, str, str]:
    return (INSURER, symbol, number, "00", symbol.replace("１２３", "123"), number)


def test_the_lifespan_picks_the_writer_of_its_database(session_factory: Any, backend: str) -> None:
    bulk = make_bulk(session_factory.kw["bind"])
    if backend == "postgres":
        assert isinstance(bulk, PostgresBulk) and bulk.copies and bulk.concurrent
    else:
        assert isinstance(bulk, SQLBulk) and not bulk.copies and not bulk.concurrent


def test_inserted_persons_are_found_by_their_key_with_their_ids(session_factory: Any) -> None:
    bulk = make_bulk(session_factory.kw["bind"])
    people = [_person("1"), _person("2"), _person("3", symbol="a\nb")]  # a line break: the arrays probe
    with transaction(session_factory) as s:
        ids = bulk.insert_insureds(s, people)
        assert len(set(ids)) == 3
        keys = {(p[0], p[4], p[5], p[3]): i for p, i in zip(people, ids, strict=True)}
        absent = (INSURER, "123", "9", "00")
        assert bulk.existing_insureds(s, {*keys, absent}) == keys
        assert bulk.existing_insureds(s, set()) == {}
        assert bulk.insert_insureds(s, []) == []
    with session_factory() as s:
        stored = s.execute(sa.text("SELECT id, insurer_number, symbol, number, branch, symbol_norm, number_norm "
                                   "FROM insured ORDER BY id")).all()
    assert [tuple(r) for r in stored] == [(i, *p) for i, p in zip(ids, people, strict=True)]


def _log_rows(insured_id: int, whats: list[str]) -> list[tuple[Any, ...]]:
    return [(utcnow(), insured_id, None, "reception", what) for what in whats]


_LOG_COLUMNS = ("at", "insured_id", "facility_code", "role", "what")


def test_rows_inserted_with_an_empty_text_and_a_null(session_factory: Any) -> None:
    bulk = make_bulk(session_factory.kw["bind"])
    table: Any = AccessLogEntry.__table__
    with transaction(session_factory) as s:
        (insured_id,) = bulk.insert_insureds(s, [_person("1")])
        bulk.insert_rows(s, table, _LOG_COLUMNS, _log_rows(insured_id, ["", "x,\"y\""]))
        bulk.insert_rows(s, table, _LOG_COLUMNS, [])
    with session_factory() as s:
        rows = s.execute(sa.select(AccessLogEntry.what, AccessLogEntry.facility_code).order_by(AccessLogEntry.id)).all()
    # the NOT NULL text stays '' (COPY's FORCE_NOT_NULL), the nullable one None; csv quoting survives
    assert [tuple(r) for r in rows] == [("", None), ("x,\"y\"", None)]


def test_rows_rendered_ahead_follow_the_given_ones(session_factory: Any, backend: str) -> None:
    bulk = make_bulk(session_factory.kw["bind"])
    if not bulk.copies:
        with transaction(session_factory) as s, pytest.raises(AssertionError, match="COPY"):
            bulk.insert_insureds(s, [], ["x"])
        return
    later = [_person("5"), _person("6")]
    lines = render_rows(later, INSURED_COLUMNS)
    assert lines is not None and render_rows([_person("7", symbol="a\nb")], INSURED_COLUMNS) is None
    with transaction(session_factory) as s:
        ids = bulk.insert_insureds(s, [_person("4")], lines)
        found = bulk.existing_insureds(s, {(INSURER, "123", n, "00") for n in ("4", "5", "6")})
    assert [found[(INSURER, "123", n, "00")] for n in ("4", "5", "6")] == ids


def test_a_savepoint_undoes_only_its_own_write_where_uploads_run_side_by_side(
    session_factory: Any, backend: str
) -> None:
    bulk = make_bulk(session_factory.kw["bind"])
    with transaction(session_factory) as s:
        bulk.insert_insureds(s, [_person("1")])
        if bulk.concurrent:
            # "1" again: a unique violation, the driver's own error from COPY (a raw cursor)
            with pytest.raises(Exception, match="uq_insured_") as raised, bulk.savepoint(s):
                bulk.insert_insureds(s, [_person("2"), _person("1")])
            assert _is_unique_violation(raised.value, _INSURED_KEY)  # what the applier recognises
        else:
            with bulk.savepoint(s):  # one writer at a time: nothing to undo, no savepoint
                assert not s.in_nested_transaction()
    with session_factory() as s:
        assert s.execute(sa.text("SELECT number FROM insured ORDER BY number")).scalars().all() == ["1"]
