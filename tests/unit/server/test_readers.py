"""The database ports without HTTP, on both backends: ``BundleReader`` (eligibility.reader) and
``CardStore`` (card.store). On PostgreSQL the event-loop implementation must answer exactly what
the SQLAlchemy one does; on SQLite the SQLAlchemy one is what the app uses."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.card.models import CardLink, RevokedCertificate
from shikaku_server.card.store import CardFacts, CardStore, PostgresCardStore, SQLCardStore
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.database import ThreadedTransactions, transaction, utcnow
from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.eligibility.reader import PostgresBundleReader, SQLBundleReader
from shikaku_server.eligibility.service import BundleReader, Evaluation, evaluate
from shikaku_server.pgasync import AsyncPG
from tests.conftest import FACILITY_CODE

INSURER = "01130012"
ISSUER = "CN=test JPKI"


def _period(insured_id: int, start: str, end: str | None, **over: Any) -> EligibilityPeriod:
    values: dict[str, Any] = {
        "insured_id": insured_id,
        "upload_id": "u1",
        "line": 1,
        "superseded_by": None,
        "valid_from": dt.date.fromisoformat(start),
        "valid_to": dt.date.fromisoformat(end) if end else None,
        "reason_of_loss": None,
        "name": "試験 太郎",
        "name_kana": "シケン タロウ",
        "name_norm": "試験太郎",
        "sex": "1",
        "birth_date": dt.date(1980, 4, 1),
        "address": "東京都千代田区1-1",
        "address_norm": "東京都千代田区1-1",
        "post_number": "100-0001",
        "personal_family": "1",
        "card_classification": "01",
        "copay_ratio": 30,
        "elderly_ratio": None,
        "elderly_valid_from": None,
        "elderly_valid_to": None,
        "limit_kind": None,
        "limit_class": None,
        "limit_valid_from": None,
        "limit_valid_to": None,
        "diseases": None,
    }
    return EligibilityPeriod(**{**values, **over})


@pytest.fixture
def people(session_factory: Any, tokens: dict[str, str]) -> dict[str, int]:
    """Two branches of one number (one lost, one current), a card linked to the current one."""
    with transaction(session_factory) as s:
        ids = {}
        for branch in ("00", "01"):
            row = Insured(insurer_number=INSURER, symbol="１２３", number="4567", branch=branch)
            row.symbol_norm, row.number_norm = "123", "4567"
            s.add(row)
            s.flush()
            ids[branch] = row.id
        s.add(_period(ids["00"], "2020-04-01", "2024-03-31", reason_of_loss="01"))
        s.add(_period(ids["01"], "2024-04-01", None, diseases=[{"category": "1", "valid_from": "2024-04-01"}]))
        s.add(_period(ids["01"], "2019-01-01", None, superseded_by="u0"))  # replaced: never read
        s.add(CardLink(issuer=ISSUER, serial="0a", fingerprint="f" * 64, insured_id=ids["01"], not_after=utcnow()))
        s.add(RevokedCertificate(issuer=ISSUER, serial="0b"))
    return ids


@pytest.fixture
def pg(backend: str, session_factory: Any) -> Iterator[AsyncPG | None]:
    if backend != "postgres":
        yield None
        return
    pool = AsyncPG(session_factory.kw["bind"], 2)
    yield pool
    pool.close()


def _readers(session_factory: Any, pg: AsyncPG | None) -> list[BundleReader]:
    readers: list[BundleReader] = [SQLBundleReader(ThreadedTransactions(session_factory))]
    if pg is not None:
        readers.append(PostgresBundleReader(ThreadedTransactions(session_factory), pg))
    return readers


def _stores(session_factory: Any, pg: AsyncPG | None) -> list[CardStore]:
    stores: list[CardStore] = [SQLCardStore(ThreadedTransactions(session_factory))]
    if pg is not None:
        stores.append(PostgresCardStore(ThreadedTransactions(session_factory), pg))
    return stores


def test_bundle_readers_read_every_branch_with_its_current_periods(
    session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    async def run() -> list[dict[str, Any]]:
        return [await r.bundle(INSURER, "123", "4567") for r in _readers(session_factory, pg)]

    bundles = asyncio.run(run())
    assert all(b == bundles[0] for b in bundles[1:])  # PostgreSQL on the loop = SQLAlchemy
    bundle = bundles[0]
    assert [(i["branch"], i["symbol"]) for i in bundle["insureds"]] == [("00", "１２３"), ("01", "１２３")]
    assert [[p["valid_from"] for p in i["periods"]] for i in bundle["insureds"]] == [["2020-04-01"], ["2024-04-01"]]
    assert bundle["insureds"][1]["periods"][0]["diseases"] == [{"category": "1", "valid_from": "2024-04-01"}]
    assert asyncio.run(_readers(session_factory, pg)[-1].bundle(INSURER, "123", "9999"))["insureds"] == []


def test_newer_eligibility_of_a_lost_record(session_factory: Any, pg: AsyncPG | None, people: dict[str, int]) -> None:
    """The lost branch 00 and the current 01 carry the same four facts: the person moved on."""

    async def run() -> list[tuple[bool, bool]]:
        out = []
        for reader in _readers(session_factory, pg):
            bundle = await reader.bundle(INSURER, "123", "4567")
            lost = evaluate(bundle, branch="00", birth_date=dt.date(1980, 4, 1), as_of=dt.date(2025, 1, 1))
            period = {**(lost.period or {}), "address_norm": None}
            no_address = Evaluation(lost.validity, lost.insured_id, lost.insured, period)
            out.append(
                (
                    await reader.newer_eligibility_exists(lost, dt.date(2025, 1, 1)),
                    await reader.newer_eligibility_exists(no_address, dt.date(2025, 1, 1)),
                )
            )
        return out

    assert set(asyncio.run(run())) == {(True, False)}


def _consent(session_factory: Any, insured_id: int, **over: Any) -> None:
    with transaction(session_factory) as s:
        visit = Visit(
            id=f"v{utcnow().timestamp()}",
            facility_code=FACILITY_CODE,
            insured_id=insured_id,
            auth_method="pin",
            card_classification="01",
            as_of=dt.date(2025, 1, 1),
        )
        s.add(visit)
        s.flush()
        values = {"drug": True, "checkup": True, "clinical": False, "limit_certificate": True, "setting": "outpatient"}
        s.add(Consent(visit_id=visit.id, insured_id=insured_id, facility_code=FACILITY_CODE, **{**values, **over}))


def test_card_stores_agree_on_the_facts(session_factory: Any, pg: AsyncPG | None, people: dict[str, int]) -> None:
    async def facts(issuer: str, serial: str, facility: str | None) -> list[CardFacts]:
        return [await s.card_facts(issuer, serial, facility) for s in _stores(session_factory, pg)]

    def one(issuer: str, serial: str, facility: str | None) -> CardFacts:
        found = asyncio.run(facts(issuer, serial, facility))
        assert all(f == found[0] for f in found[1:]), found
        return found[0]

    linked = one(ISSUER, "0a", FACILITY_CODE)
    assert linked == CardFacts(False, False, people["01"], INSURER, "123", "4567", None)  # no consent yet
    assert one(ISSUER, "0b", FACILITY_CODE) == CardFacts(True, False, None, None, None, None, None)  # revoked, unlinked
    assert one("CN=other", "0a", FACILITY_CODE).insured_id is None

    _consent(session_factory, people["01"], expires_at=utcnow() - dt.timedelta(minutes=1))
    assert one(ISSUER, "0a", FACILITY_CODE).consent_id is None  # the latest consent has expired
    _consent(session_factory, people["01"], expires_at=None)
    live = one(ISSUER, "0a", FACILITY_CODE).consent_id
    assert live is not None
    assert one(ISSUER, "0a", None).consent_id is None  # the patient's own reads: no facility
    with transaction(session_factory) as s:
        s.execute(sa.update(Consent).where(Consent.id == live).values(revoked_at=utcnow()))
    assert one(ISSUER, "0a", FACILITY_CODE).consent_id is None


def test_card_stores_commit_the_visit_with_its_log_entry(
    session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    async def run() -> None:
        for n, store in enumerate(_stores(session_factory, pg)):
            await store.record_visit(
                {
                    "id": f"visit-{n}",
                    "facility_code": FACILITY_CODE,
                    "insured_id": people["01"],
                    "auth_method": "face",
                    "card_classification": "01",
                    "as_of": dt.date(2025, 1, 1),
                },
                {
                    "insured_id": people["01"],
                    "facility_code": FACILITY_CODE,
                    "role": "reception",
                    "what": "eligibility",
                    "query_kind": "card",
                    "consent_id": None,
                },
            )

    asyncio.run(run())
    with session_factory() as s:
        rows = s.execute(
            sa.select(Visit.id, Visit.auth_method, AccessLogEntry.what)
            .join(AccessLogEntry, AccessLogEntry.visit_id == Visit.id)
            .order_by(Visit.id)
        ).all()
    assert [tuple(r) for r in rows] == [(f"visit-{n}", "face", "eligibility") for n in range(len(rows))]
    assert len(rows) == len(_stores(session_factory, pg))


def _visit_and_entry(visit_id: str, insured_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A PIN visit at the test facility and its access-log entry, as `record_visit` takes them."""
    visit = {
        "id": visit_id,
        "facility_code": FACILITY_CODE,
        "insured_id": insured_id,
        "auth_method": "pin",
        "card_classification": "01",
        "as_of": dt.date(2025, 1, 1),
    }
    entry = {
        "insured_id": insured_id,
        "facility_code": FACILITY_CODE,
        "role": "reception",
        "what": "eligibility",
        "query_kind": "card",
        "consent_id": None,
    }
    return visit, entry


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # the event-loop write is PostgreSQL's
def test_the_visit_write_survives_a_lost_connection_and_is_never_doubled(
    backend: str, session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    """``AsyncPG.execute`` retries once on a fresh connection when a reused one was lost; a retry
    of a write whose commit went through (same visit id) writes nothing twice."""
    assert pg is not None
    store = PostgresCardStore(ThreadedTransactions(session_factory), pg)
    visit, entry = _visit_and_entry("visit-x", people["01"])

    def counts() -> tuple[int, int]:
        with session_factory() as s:
            visits = s.execute(sa.select(sa.func.count()).select_from(Visit)).scalar_one()
            entries = s.execute(
                sa.select(sa.func.count()).select_from(AccessLogEntry).where(AccessLogEntry.visit_id.is_not(None))
            ).scalar_one()
        return visits, entries

    async def run() -> None:
        await store.record_visit(visit, entry)
        assert counts() == (1, 1)
        engine = sa.create_engine(session_factory.kw["bind"].url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:  # the pool's idle connection is closed under it
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        engine.dispose()
        session_factory.kw["bind"].dispose()  # the test's own pooled connections went too
        await store.record_visit(visit, entry)  # as a retry after a lost answer: the same id
        assert counts() == (1, 1)
        await store.record_visit({**visit, "id": "visit-y"}, entry)
        assert counts() == (2, 2)

    asyncio.run(run())


def _visits_with_entries(session_factory: Any) -> list[str]:
    """The visit ids of the access-log entries, in the log's own order (its ids)."""
    with session_factory() as s:
        rows = s.execute(
            sa.select(Visit.id).join(AccessLogEntry, AccessLogEntry.visit_id == Visit.id).order_by(AccessLogEntry.id)
        ).all()
    return [r[0] for r in rows]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # group commit is PostgreSQL's
def test_concurrent_visits_commit_in_groups_each_answered_after_its_own_commit(
    backend: str, session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    """Thirty checks at once: fewer statements than checks, every visit and entry written once,
    the entries in the order the checks came, and no check back before its row is readable."""
    assert pg is not None
    store = PostgresCardStore(ThreadedTransactions(session_factory), pg)
    statements = 0
    real_execute = pg.execute

    async def counting_execute(statement: Any, params: dict[str, Any]) -> None:
        nonlocal statements
        statements += 1
        await real_execute(statement, params)

    pg.execute = counting_execute  # type: ignore[method-assign]
    ids = [f"visit-{n:02d}" for n in range(30)]

    async def one(visit_id: str) -> None:
        await store.record_visit(*_visit_and_entry(visit_id, people["01"]))
        assert visit_id in _visits_with_entries(session_factory)  # committed before it returned

    async def run() -> None:
        await store.record_visit(*_visit_and_entry("visit-alone", people["01"]))  # alone: one statement
        assert statements == 1
        await asyncio.gather(*(one(v) for v in ids))

    asyncio.run(run())
    assert _visits_with_entries(session_factory) == ["visit-alone", *ids]
    assert 2 <= statements <= 1 + 15  # the first of the thirty alone, the rest in groups


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_bad_visit_in_a_group_fails_only_its_own_check(
    backend: str, session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    """A row the database refuses (here a person who does not exist: the foreign key) fails its
    own check; the checks grouped with it are written and answered."""
    assert pg is not None
    import psycopg2  # type: ignore[import-untyped]

    store = PostgresCardStore(ThreadedTransactions(session_factory), pg)

    async def run() -> list[BaseException | None]:
        calls = [store.record_visit(*_visit_and_entry(f"visit-{n}", people["01"])) for n in range(6)]
        calls.insert(3, store.record_visit(*_visit_and_entry("visit-bad", 987_654_321)))
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(run())
    assert [type(o) for o in outcomes].count(psycopg2.errors.ForeignKeyViolation) == 1
    assert isinstance(outcomes[3], psycopg2.errors.ForeignKeyViolation)
    assert [o for n, o in enumerate(outcomes) if n != 3] == [None] * 6
    assert _visits_with_entries(session_factory) == [f"visit-{n}" for n in range(6)]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_cancelled_check_takes_no_other_check_s_visit_with_it(
    backend: str, session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    """The client of one check goes away (its task is cancelled) while its group is in flight:
    the others of the group are committed and answered all the same."""
    assert pg is not None
    store = PostgresCardStore(ThreadedTransactions(session_factory), pg)

    async def run() -> list[BaseException | None]:
        rows = [_visit_and_entry(f"visit-{n}", people["01"]) for n in range(5)]
        tasks = [asyncio.create_task(store.record_visit(*row)) for row in rows]
        await asyncio.sleep(0)  # all five queued, the first statement sent
        tasks[0].cancel()
        tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(run())
    assert isinstance(outcomes[0], asyncio.CancelledError) and isinstance(outcomes[3], asyncio.CancelledError)
    assert [outcomes[n] for n in (1, 2, 4)] == [None] * 3
    written = _visits_with_entries(session_factory)
    assert {"visit-1", "visit-2", "visit-4"} <= set(written)
    assert len(written) == len(set(written))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_every_check_of_a_group_fails_when_the_database_does(
    backend: str, session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    """No connection to be had: each check of the group gets the database's error (503 at the
    app's boundary), none hangs."""
    assert pg is not None
    import psycopg2

    store = PostgresCardStore(ThreadedTransactions(session_factory), pg)
    pg.close()

    async def run() -> list[BaseException | None]:
        calls = [store.record_visit(*_visit_and_entry(f"visit-{n}", people["01"])) for n in range(4)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)

    outcomes = asyncio.run(run())
    assert all(isinstance(o, psycopg2.InterfaceError) for o in outcomes), outcomes
    assert _visits_with_entries(session_factory) == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_checks_waiting_on_a_group_get_503_when_the_server_shuts_down(
    backend: str, session_factory: Any, pg: AsyncPG | None, people: dict[str, int]
) -> None:
    """The group's task cancelled mid-statement (the app's loop ending): its checks and the ones
    queued behind it are answered "unavailable" rather than left waiting."""
    assert pg is not None
    from shikaku_server.errors import UnavailableError

    store = PostgresCardStore(ThreadedTransactions(session_factory), pg)

    async def run() -> list[BaseException | None]:
        rows = [_visit_and_entry(f"visit-{n}", people["01"]) for n in range(4)]
        tasks = [asyncio.create_task(store.record_visit(*row)) for row in rows]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        writer = store.visits._writer
        assert writer is not None
        writer.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await store.record_visit(*_visit_and_entry("visit-after", people["01"]))  # a new writer for the next one
        return outcomes

    outcomes = asyncio.run(run())
    assert all(isinstance(o, UnavailableError) for o in outcomes), outcomes
    assert "visit-after" in _visits_with_entries(session_factory)
