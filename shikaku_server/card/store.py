"""What the card check reads and writes in the database, behind ``CardStore``:

- ``SQLCardStore``: any SQLAlchemy database (SQLite, the embedded default), each call through
  the ``Transactions`` port (``database.ThreadedTransactions``: a worker thread);
- ``PostgresCardStore``: on the event loop (``pgasync``), the card's facts in one prepared
  statement, the visit and its access-log entry in another (autocommit: committed when it
  returns).

``make_card_store`` picks one once, in the app's lifespan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, exists, insert, literal_column, select, true
from sqlalchemy.orm import Session

from shikaku_server.access_log import service as access_log
from shikaku_server.auth.models import Terminal
from shikaku_server.card.models import CardLink, RevokedCertificate
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.consent.service import consent_in_force, latest_consent_query, live_consent
from shikaku_server.database import Transactions, utcnow
from shikaku_server.eligibility.models import Insured as InsuredRow
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
# the visit and its access-log entry in one statement, prepared per connection; idempotent under
# the visit's random id (``AsyncPG.execute`` may retry it on a fresh connection)
_PG_VISIT_INSERT = Prepared(
    "shikaku_card_visit",
    "WITH visit_row AS (INSERT INTO visit (id, facility_code, insured_id, auth_method, card_classification, as_of, "
    "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING id) "
    "INSERT INTO access_log (at, insured_id, facility_code, role, what, query_kind, consent_id, visit_id) "
    "SELECT $8, $9, $10, $11, $12, $13, $14, visit_row.id FROM visit_row",
    [f"visit_{c}" for c in _VISIT_COLUMNS] + [f"entry_{c}" for c in _ENTRY_COLUMNS],
)


class PostgresCardStore(SQLCardStore):
    """Everything on the event loop (``pgasync``): the facts in one prepared statement, the
    visit and its access-log entry in another, committed (autocommit) before it returns — no
    thread hop, no session, no pool checkout."""

    def __init__(self, transactions: Transactions, pg: AsyncPG) -> None:
        super().__init__(transactions)
        self.pg = pg

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
        params = {f"visit_{c}": visit[c] for c in _VISIT_COLUMNS} | {f"entry_{c}": entry[c] for c in _ENTRY_COLUMNS}
        await self.pg.execute(_PG_VISIT_INSERT, params)


def make_card_store(transactions: Transactions, pg: AsyncPG | None) -> CardStore:
    """PostgreSQL's store when ``pg`` is given (``pgasync.make_async_pg``), else SQLAlchemy
    through ``transactions``."""
    return PostgresCardStore(transactions, pg) if pg is not None else SQLCardStore(transactions)
