"""Drug history (3 years) and checkups (5 years) of a consenting patient, by role.

Both windows end at the real day of the visit (``consent.service.visit_day``), never at the
``as_of`` the card check asked about. A read is logged before anything is read: when its
access-log entry cannot be written the read answers ``503 unavailable`` and no data."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from schemas.card import CheckupItem, Checkups, MedicationItem, Medications
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.service import Principal
from shikaku_server.clinical.models import Checkup, Medication
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.consent.service import consent_for, visit_day, visit_of
from shikaku_server.errors import UnavailableError

DRUG_ROLES = ("physician", "dentist", "pharmacist")
DRUG_YEARS = 3
CHECKUP_YEARS = 5
CHECKUP_ROLES = ("physician", "dentist")


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _open(
    session: Session,
    principal: Principal,
    visit_id: str,
    *,
    roles: tuple[str, ...],
    category: str,
    what: str,
    years: int,
) -> tuple[Visit, Consent, dt.date]:
    """Role, visit of this facility, live consent for ``category``; the read is logged."""
    facility = principal.require_facility(*roles)
    visit = visit_of(session, visit_id, facility)
    consent = consent_for(session, visit, category)
    access_log.record(
        session,
        insured_id=visit.insured_id,
        facility_code=facility,
        role=principal.role or "",
        what=what,
        query_kind="card",
        consent_id=consent.id,
        visit_id=visit.id,
    )
    try:
        session.flush()  # the entry is written before the data is read; the request commits both
    except SQLAlchemyError as exc:
        raise UnavailableError("the access log could not be written: no data is served without it") from exc
    return visit, consent, years_before(visit_day(visit), years)


def medications(session: Session, principal: Principal, visit_id: str) -> Medications:
    visit, consent, since = _open(
        session, principal, visit_id, roles=DRUG_ROLES, category="drug", what="medications", years=DRUG_YEARS
    )
    items = drug_items(session, visit.insured_id, since)
    return Medications(visit_id=visit.id, since=since, consent_id=consent.id, items=items)


def checkups(session: Session, principal: Principal, visit_id: str) -> Checkups:
    visit, consent, since = _open(
        session, principal, visit_id, roles=CHECKUP_ROLES, category="checkup", what="checkups", years=CHECKUP_YEARS
    )
    items = checkup_items(session, visit.insured_id, since)
    return Checkups(visit_id=visit.id, since=since, consent_id=consent.id, items=items)


def drug_items(session: Session, insured_id: int, since: dt.date) -> list[MedicationItem]:
    """The person's drugs dispensed on ``since`` or later, newest first."""
    rows = session.execute(
        select(Medication)
        .where(Medication.insured_id == insured_id, Medication.dispensed_on >= since)
        .order_by(Medication.dispensed_on.desc(), Medication.id)
    ).scalars()
    return [
        MedicationItem(
            dispensed_on=m.dispensed_on,
            facility_code=m.facility_code,
            drug_code=m.drug_code,
            drug_name=m.drug_name,
            quantity=m.quantity,
            unit=m.unit,
            days=m.days,
        )
        for m in rows
    ]


def checkup_items(session: Session, insured_id: int, since: dt.date) -> list[CheckupItem]:
    """The person's checkups of ``since`` or later, newest first."""
    rows = session.execute(
        select(Checkup)
        .where(Checkup.insured_id == insured_id, Checkup.checked_on >= since)
        .order_by(Checkup.checked_on.desc())
    ).scalars()
    return [CheckupItem(checked_on=c.checked_on, results=c.results, urine_protein=c.urine_protein) for c in rows]
