"""What the card check reads and writes in the database, behind ``CardStore``:

- ``SQLCardStore``: any SQLAlchemy database (SQLite, the embedded default), each call through
  the ``Transactions`` port (``database.ThreadedTransactions``: a worker thread);
- ``PostgresCardStore``: on the event loop (``pgasync``), the card's facts in one prepared
  statement, the visit and its access-log entry in another (autocommit: committed when it
  returns), the visits of concurrent checks together in one statement (``VisitGroups``).

``make_card_store`` picks one once, in the app's lifespan.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg2  # type: ignore[import-untyped]  # no stubs installed (psycopg2-binary)
from sqlalchemy import and_, bindparam, exists, insert, literal_column, select, true
from sqlalchemy.orm import Session

from shikaku_server.access_log import service as access_log
from shikaku_server.auth.models import Terminal
from shikaku_server.card.models import CardLink, RevokedCertificate
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.consent.service import consent_in_force, latest_consent_query, live_consent
from shikaku_server.database import Transactions, utcnow
from shikaku_server.eligibility.models import Insured as InsuredRow
from shikaku_server.errors import UnavailableError
from shikaku_server.me.suspension import is_suspended, suspended
from shikaku_server.pgasync import AsyncPG, Prepared


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What a card check reads from the database about a certificate: is it revoked, whom is it
    linked to (and that person's bundle key), and the person's consent in force at this facility
    (for the access-log entry only). A card check answers before the consent of its own visit is
    taken, so it never carries the consent-gated parts (限度額, 特定疾病) under an earlier visit's
    consent: the patient may refuse them at this visit (docs/consent.md)."""

    revoked: bool
    suspended: bool  # the card is suspended (shikaku_server.me.suspension)
    insured_id: int | None
    insurer_number: str | None
    symbol_norm: str | None
    number_norm: str | None
    consent_id: int | None


@dataclass(frozen=True, slots=True)
class TerminalKey:
    """A registered terminal's attestation key."""

    facility_code: str
    public_key_pem: str
    revoked: bool


class CardStore(Protocol):
    async def card_facts(self, issuer: str, serial_hex: str, facility_code: str | None) -> CardFacts:
        """The facts of one certificate (``facility_code`` None: no consent is looked up)."""
        ...

    async def terminal(self, terminal_id: str) -> TerminalKey | None: ...

    async def record_visit(self, visit: dict[str, Any], entry: dict[str, Any]) -> None:
        """The visit and its access-log entry, committed together before the answer leaves."""
        ...


def _facts(session: Session, issuer: str, serial_hex: str, facility_code: str | None) -> CardFacts:
    """``CardStore.card_facts`` through SQLAlchemy, on ``session``."""
    revoked = session.execute(
        select(RevokedCertificate.id).where(
            RevokedCertificate.issuer == issuer, RevokedCertificate.serial == serial_hex
        )
    ).first()
    row = session.execute(
        select(CardLink.insured_id, InsuredRow.insurer_number, InsuredRow.symbol_norm, InsuredRow.number_norm)
        .join(InsuredRow, InsuredRow.id == CardLink.insured_id)
        .where(CardLink.issuer == issuer, CardLink.serial == serial_hex)
    ).first()
    consent = None
    if row is not None and facility_code is not None:
        consent = live_consent(session, insured_id=row[0], facility_code=facility_code)
    card_suspended = is_suspended(session, issuer, serial_hex)
    return CardFacts(
        revoked=revoked is not None,
        suspended=card_suspended,
        insured_id=row[0] if row is not None else None,
        insurer_number=row[1] if row is not None else None,
        symbol_norm=row[2] if row is not None else None,
        number_norm=row[3] if row is not None else None,
        consent_id=consent.id if consent is not None else None,
    )


def _terminal(session: Session, terminal_id: str) -> TerminalKey | None:
    terminal = session.get(Terminal, terminal_id)
    if terminal is None:
        return None
    return TerminalKey(terminal.facility_code, terminal.public_key_pem, terminal.revoked_at is not None)


def _record(session: Session, visit: dict[str, Any], entry: dict[str, Any]) -> None:
    session.execute(insert(Visit).values(**visit))
    access_log.record_many(session, [{**entry, "visit_id": visit["id"]}])


class SQLCardStore:
    """Through ``transactions``: the reads on sessions that commit nothing (``read``), the visit
    and its access-log entry in one committed transaction (``run``)."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    async def card_facts(self, issuer: str, serial_hex: str, facility_code: str | None) -> CardFacts:
        return await self.transactions.read(lambda s: _facts(s, issuer, serial_hex, facility_code))

    async def terminal(self, terminal_id: str) -> TerminalKey | None:
        return await self.transactions.read(lambda s: _terminal(s, terminal_id))

    async def record_visit(self, visit: dict[str, Any], entry: dict[str, Any]) -> None:
        now = utcnow()
        visit, entry = {"created_at": now, **visit}, {"at": now, **entry}
        await self.transactions.run(lambda s: _record(s, visit, entry))


_LATEST_CONSENT = latest_consent_query(
    CardLink.insured_id,
    bindparam("facility"),
    Consent.id,
    Consent.revoked_at,
    Consent.expires_at,
    limit=bindparam("one"),  # a parameter: a prepared statement has no other LIMIT
).lateral("latest_consent")
_FACTS_QUERY = (
    select(
        exists().where(
            RevokedCertificate.issuer == bindparam("issuer"), RevokedCertificate.serial == bindparam("serial")
        ),
        suspended(bindparam("issuer"), bindparam("serial")),
        CardLink.insured_id,
        InsuredRow.insurer_number,
        InsuredRow.symbol_norm,
        InsuredRow.number_norm,
        *_LATEST_CONSENT.c,
    )
    .select_from(select(literal_column("1").label("one")).subquery("one"))
    .outerjoin(CardLink, and_(CardLink.issuer == bindparam("issuer"), CardLink.serial == bindparam("serial")))
    .outerjoin(InsuredRow, InsuredRow.id == CardLink.insured_id)
    .outerjoin(_LATEST_CONSENT, true())
)
_PG_FACTS = Prepared("shikaku_card_facts", _FACTS_QUERY)

_VISIT_COLUMNS = ("id", "facility_code", "insured_id", "auth_method", "card_classification", "as_of", "created_at")
_ENTRY_COLUMNS = ("at", "insured_id", "facility_code", "role", "what", "query_kind", "consent_id")
_GROUP_COLUMNS = tuple(f"visit_{c}" for c in _VISIT_COLUMNS) + tuple(f"entry_{c}" for c in _ENTRY_COLUMNS)
# one visit and its access-log entry (a group of one: scalar parameters cost psycopg2 and
# PostgreSQL less than one-element arrays), idempotent under the visit's random id
_PG_VISIT_INSERT = Prepared(
    "shikaku_card_visit",
    "WITH visit_row AS (INSERT INTO visit (id, facility_code, insured_id, auth_method, card_classification, as_of, "
    "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING id) "
    "INSERT INTO access_log (at, insured_id, facility_code, role, what, query_kind, consent_id, visit_id) "
    "SELECT $8, $9, $10, $11, $12, $13, $14, visit_row.id FROM visit_row",
    _GROUP_COLUMNS,
)
# the visits of concurrent card checks and their access-log entries in one statement, one array
# per column (``unnest``, in the order of ``_GROUP_COLUMNS``), prepared per connection;
# idempotent under each visit's random id (``AsyncPG.execute`` may retry it on a fresh
# connection): a visit already there inserts neither itself nor its entry again. The entries
# keep the order of the group (``WITH ORDINALITY``).
_PG_VISITS_INSERT = Prepared(
    "shikaku_card_visits",
    "WITH given AS (SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], "
    "$6::date[], $7::timestamptz[], $8::timestamptz[], $9::integer[], $10::text[], $11::text[], $12::text[], "
    "$13::text[], $14::integer[]) WITH ORDINALITY AS g(visit_id, visit_facility_code, visit_insured_id, "
    "visit_auth_method, visit_card_classification, visit_as_of, visit_created_at, entry_at, entry_insured_id, "
    "entry_facility_code, entry_role, entry_what, entry_query_kind, entry_consent_id, ord)), "
    "visit_row AS (INSERT INTO visit (id, facility_code, insured_id, auth_method, card_classification, as_of, "
    "created_at) SELECT visit_id, visit_facility_code, visit_insured_id, visit_auth_method, "
    "visit_card_classification, visit_as_of, visit_created_at FROM given ON CONFLICT (id) DO NOTHING RETURNING id) "
    "INSERT INTO access_log (at, insured_id, facility_code, role, what, query_kind, consent_id, visit_id) "
    "SELECT entry_at, entry_insured_id, entry_facility_code, entry_role, entry_what, entry_query_kind, "
    "entry_consent_id, visit_id FROM given JOIN visit_row ON visit_row.id = given.visit_id ORDER BY given.ord",
    _GROUP_COLUMNS,
)
MAX_GROUP = 256  # visits in one statement at most


class VisitGroups:
    """Group commit of the card checks' visits on PostgreSQL: the visits that arrive while a
    statement is in flight go together in the next one, so a busy server commits once per group
    rather than once per check (a commit and its WAL flush cost PostgreSQL about 0.3 ms of CPU;
    a group of eight costs about as much as two single ones: bench/README.md). A check alone
    waits for nothing: its statement starts at once. Every check still returns only once its own
    visit is committed, and the statements run in their own task, so a check that is cancelled
    (its client went away) takes nobody's write with it. When a group's statement fails on data
    (not on the connection), its visits are written one by one, so one bad row fails only its
    own check."""

    def __init__(self, pg: AsyncPG, max_group: int = MAX_GROUP) -> None:
        self.pg = pg
        self.max_group = max_group
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, row: dict[str, Any]) -> None:
        """``row``: the values of ``_GROUP_COLUMNS``; returns once it is committed."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not done.get_loop():
            # (a writer of another event loop: one that was closed under it, as between tests)
            self._writer = asyncio.create_task(self._run())
        await done

    async def _run(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[: self.max_group], self._pending[self.max_group :]
                await self._commit(group)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
            left, self._pending = self._pending, []
            for _, done in left:  # only when the task itself was cancelled (the app shutting down)
                if not done.done():
                    done.set_exception(UnavailableError("the server is shutting down"))

    async def _commit(self, group: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        try:
            if len(group) == 1:
                await self.pg.execute(_PG_VISIT_INSERT, group[0][0])
            else:
                await self.pg.execute(_PG_VISITS_INSERT, _columns([row for row, _ in group]))
        except psycopg2.DatabaseError as exc:
            if len(group) == 1 or isinstance(exc, psycopg2.OperationalError):
                _settle(group, exc)  # the connection or the server: every check of the group fails
                return
            for one in group:  # one row's data failed the group: each alone, its own outcome
                await self._commit([one])
            return
        except asyncio.CancelledError:  # the writer cancelled (the app shutting down) mid-statement
            _settle(group, UnavailableError("the server is shutting down"))
            raise
        except Exception as exc:  # no connection to be had (a closed pool), or a fault of ours
            _settle(group, exc)
            return
        _settle(group, None)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c: [row[c] for row in rows] for c in _GROUP_COLUMNS}


def _settle(group: list[tuple[dict[str, Any], asyncio.Future[None]]], exc: BaseException | None) -> None:
    for _, done in group:
        if done.done():  # its check was cancelled meanwhile
            continue
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)


class PostgresCardStore(SQLCardStore):
    """Everything on the event loop (``pgasync``): the facts in one prepared statement, the
    visit and its access-log entry in another, committed (autocommit) before it returns — no
    thread hop, no session, no pool checkout."""

    def __init__(self, transactions: Transactions, pg: AsyncPG) -> None:
        super().__init__(transactions)
        self.pg = pg
        self.visits = VisitGroups(pg)

    async def card_facts(self, issuer: str, serial_hex: str, facility_code: str | None) -> CardFacts:
        rows = await self.pg.fetch(
            _PG_FACTS, {"issuer": issuer, "serial": serial_hex, "facility": facility_code, "one": 1}
        )
        revoked, suspended_, insured_id, insurer_number, symbol_norm, number_norm, *consent = rows[0]
        consent_id, revoked_at, expires_at = consent
        live = consent_id is not None and consent_in_force(revoked_at, expires_at)
        return CardFacts(
            revoked=bool(revoked),
            suspended=bool(suspended_),
            insured_id=insured_id,
            insurer_number=insurer_number,
            symbol_norm=symbol_norm,
            number_norm=number_norm,
            consent_id=consent_id if live else None,
        )

    async def record_visit(self, visit: dict[str, Any], entry: dict[str, Any]) -> None:
        now = utcnow()
        visit, entry = {"created_at": now, **visit}, {"at": now, **entry}
        row = {f"visit_{c}": visit[c] for c in _VISIT_COLUMNS} | {f"entry_{c}": entry[c] for c in _ENTRY_COLUMNS}
        await self.visits.write(row)


def make_card_store(transactions: Transactions, pg: AsyncPG | None) -> CardStore:
    """PostgreSQL's store when ``pg`` is given (``pgasync.make_async_pg``), else SQLAlchemy
    through ``transactions``."""
    return PostgresCardStore(transactions, pg) if pg is not None else SQLCardStore(transactions)
