"""The access log's schema (migration 0008): append-only, and its entries take no lock on the
person's row — every by-number lookup writes one, and a foreign key made each of them write a row
lock into the person's ``insured`` tuple (its page dirtied, WAL written, on a read path)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.migrate import upgrade
from tests.conftest import auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.test_eligibility_api import upload

INSERT = "INSERT INTO access_log (insured_id, at, role, what, emergency) VALUES ({id}, {at}, 'r', 'e', {no})"
QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}


def test_access_log_has_no_foreign_key_and_stays_append_only(client: TestClient) -> None:
    engine = sa.create_engine(client.app.state.shikaku.settings.database_url)  # type: ignore[attr-defined]
    try:
        assert sa.inspect(engine).get_foreign_keys("access_log") == []
        with engine.begin() as conn:
            conn.execute(
                sa.text(INSERT.format(id=1, at=":at", no="false")),
                {"at": "2026-12-03 00:00:00+00"},
            )
        for statement in ("UPDATE access_log SET role = 'x'", "DELETE FROM access_log"):
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_a_lookups_access_log_entry_does_not_lock_the_persons_row(
    client: TestClient, tokens: dict[str, str], backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL's row locks (xmax)")
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    engine = sa.create_engine(client.app.state.shikaku.settings.database_url)  # type: ignore[attr-defined]
    try:
        with engine.connect() as conn:
            xmax_before = conn.execute(sa.text("SELECT xmax::text FROM insured")).scalar_one()
        for _ in range(3):
            r = client.post("/v1/eligibility/by-number", json=QUERY, headers=auth(tokens["reception"]))
            assert r.status_code == 200 and r.json()["validity"] == 1, r.text
        client.app.state.shikaku.access_log.flush()  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM access_log WHERE what = 'eligibility'")).scalar_one() == 3
            assert conn.execute(sa.text("SELECT xmax::text FROM insured")).scalar_one() == xmax_before
    finally:
        engine.dispose()


def test_sqlite_migration_keeps_the_entries_and_the_append_only_triggers(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url, "0007")
    with sqlite3.connect(path) as db:
        db.execute(INSERT.format(id=7, at="'2026-01-01'", no=0))
    upgrade(url)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT insured_id, role, what FROM access_log").fetchall() == [(7, "r", "e")]
        assert db.execute("PRAGMA foreign_key_list(access_log)").fetchall() == []
        for statement in ("UPDATE access_log SET role = 'x'", "DELETE FROM access_log"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
