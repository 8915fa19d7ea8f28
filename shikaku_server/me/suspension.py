"""一時利用停止: suspending a card and resuming it (the patient, or the call centre's operator).

A card is suspended while a ``card_suspension`` row of its certificate (issuer, serial) has no
``resumed_at``. Every card check reads that in the statement that reads the card's link (no
cache anywhere), so a suspension committed by one server process is refused by every process
at its next request: ``card_suspended`` on by-card, registration, ``/v1/me/*``, emergency reads
and the FHIR doors that take a card. See docs/patient.md."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from schemas.identifiers import normalize_key_text, normalize_person_text
from shikaku_server.access_log import service as access_log
from shikaku_server.card.models import CardLink, CardSuspension
from shikaku_server.database import utcnow
from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.errors import NotFoundError, RegistrationAmbiguousError


def suspended(issuer: Any, serial: Any) -> ColumnElement[bool]:
    """EXISTS a live suspension of the card (issuer, serial): columns or bind parameters."""
    return exists().where(
        CardSuspension.issuer == issuer, CardSuspension.serial == serial, CardSuspension.resumed_at.is_(None)
    )


def is_suspended(session: Session, issuer: str, serial_hex: str) -> bool:
    return bool(session.execute(select(suspended(issuer, serial_hex))).scalar())


def suspend_card(session: Session, *, issuer: str, serial_hex: str, insured_id: int, by: str) -> bool:
    """Suspend one card; False when it already was (nothing written)."""
    if is_suspended(session, issuer, serial_hex):
        return False
    session.add(CardSuspension(issuer=issuer, serial=serial_hex, insured_id=insured_id, suspended_by=by))
    access_log.record(
        session, insured_id=insured_id, facility_code=None, role=_role(by), what="card_suspended", query_kind="self"
    )
    session.flush()
    return True


def _role(by: str) -> str:
    return "operator" if by.startswith("operator:") else "patient"


def person_by_facts(
    session: Session,
    *,
    insurer_number: str,
    symbol: str,
    number: str,
    branch: str,
    name: str,
    birth_date: dt.date,
    sex: str,
    address: str,
) -> int:
    """The insured person of this insurance number whose current record holds all four facts
    (normalised, as first-use linking compares them); nobody else, never on a partial match."""
    rows = session.execute(
        select(Insured.id)
        .join(EligibilityPeriod, EligibilityPeriod.insured_id == Insured.id)
        .where(
            Insured.insurer_number == insurer_number,
            Insured.symbol_norm == normalize_key_text(symbol),
            Insured.number_norm == normalize_key_text(number),
            Insured.branch == branch,
            EligibilityPeriod.superseded_by.is_(None),
            EligibilityPeriod.name_norm == normalize_person_text(name),
            EligibilityPeriod.birth_date == birth_date,
            EligibilityPeriod.sex == sex,
            EligibilityPeriod.address_norm == normalize_person_text(address),
        )
        .distinct()
    ).all()
    if not rows:
        raise NotFoundError("no insured person has this insurance number and these four facts")
    if len(rows) > 1:
        raise RegistrationAmbiguousError("several records match: check the insurance number")
    return int(rows[0][0])


def suspend_person(session: Session, insured_id: int, *, by: str) -> int:
    """Suspend every card linked to the person (the call centre: the caller has no card in hand)."""
    cards = session.execute(select(CardLink.issuer, CardLink.serial).where(CardLink.insured_id == insured_id)).all()
    if not cards:
        raise NotFoundError("no card is linked to this person")
    return sum(suspend_card(session, issuer=i, serial_hex=s, insured_id=insured_id, by=by) for i, s in cards)


def resume_person(session: Session, insured_id: int, *, by: str) -> int:
    """End every live suspension of the person's cards; the number of cards resumed."""
    rows = (
        session.execute(
            select(CardSuspension).where(CardSuspension.insured_id == insured_id, CardSuspension.resumed_at.is_(None))
        )
        .scalars()
        .all()
    )
    now = utcnow()
    for row in rows:
        row.resumed_at, row.resumed_by = now, by
    if rows:
        access_log.record(
            session, insured_id=insured_id, facility_code=None, role=_role(by), what="card_resumed", query_kind="self"
        )
    session.flush()
    return len(rows)


def audit_trail(session: Session, insured_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(CardSuspension).where(CardSuspension.insured_id == insured_id).order_by(CardSuspension.id)
    ).scalars()
    return [
        {
            "serial": r.serial,
            "suspended_at": r.suspended_at,
            "suspended_by": r.suspended_by,
            "resumed_at": r.resumed_at,
            "resumed_by": r.resumed_by,
        }
        for r in rows
    ]
