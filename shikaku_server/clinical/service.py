"""Drug history, checkups and 診療・手術 information of a consenting patient, by role.

All three are served for the same period, the one setting ``SHIKAKU_CLINICAL_RETENTION_YEARS``
(5 years: ``retention_since``), back from the real day of the visit (``consent.service.visit_day``),
never from the ``as_of`` the card check asked about. A read is logged before anything is read: when its
access-log entry cannot be written the read answers ``503 unavailable`` and no data."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from schemas.card import CheckupItem, Checkups, MedicationItem, Medications
from schemas.procedures import ProcedureItem, Procedures
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.service import Principal
from shikaku_server.clinical.models import Checkup, Medication, Procedure
from shikaku_server.config import get_settings
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.consent.service import consent_for, visit_day, visit_of
from shikaku_server.errors import UnavailableError

DRUG_ROLES = ("physician", "dentist", "pharmacist")
CHECKUP_ROLES = ("physician", "dentist")
PROCEDURE_ROLES = ("physician", "dentist")  # as checkups: a pharmacist sees drugs only


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def retention_since(day: dt.date) -> dt.date:
    """The first day served when reading back from ``day``: the one retention period of drug,
    checkup and clinical information (``Settings.clinical_retention_years``)."""
    return years_before(day, get_settings().clinical_retention_years)


def _open(
    session: Session,
    principal: Principal,
    visit_id: str,
    *,
    roles: tuple[str, ...],
    category: str,
    what: str,
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
    return visit, consent, retention_since(visit_day(visit))


def medications(session: Session, principal: Principal, visit_id: str) -> Medications:
    visit, consent, since = _open(
        session, principal, visit_id, roles=DRUG_ROLES, category="drug", what="medications"
    )
    items = drug_items(session, visit.insured_id, since)
    return Medications(visit_id=visit.id, since=since, consent_id=consent.id, items=items)


def checkups(session: Session, principal: Principal, visit_id: str) -> Checkups:
    visit, consent, since = _open(
        session, principal, visit_id, roles=CHECKUP_ROLES, category="checkup", what="checkups"
    )
    items = checkup_items(session, visit.insured_id, since)
    return Checkups(visit_id=visit.id, since=since, consent_id=consent.id, items=items)


def procedures(session: Session, principal: Principal, visit_id: str) -> Procedures:
    """診療・手術 information under the visit's live ``clinical`` consent (physicians, dentists)."""
    visit, consent, since = _open(
        session, principal, visit_id, roles=PROCEDURE_ROLES, category="clinical", what="procedures"
    )
    items = procedure_items(session, visit.insured_id, since)
    return Procedures(visit_id=visit.id, since=since, consent_id=consent.id, items=items)


def procedure_items(session: Session, insured_id: int, since: dt.date) -> list[ProcedureItem]:
    """The person's 診療・手術 of ``since`` or later, newest first."""
    rows = session.execute(
        select(Procedure)
        .where(Procedure.insured_id == insured_id, Procedure.performed_on >= since)
        .order_by(Procedure.performed_on.desc(), Procedure.id)
    ).scalars()
    return [
        ProcedureItem.model_validate({name: getattr(p, name) for name in ProcedureItem.model_fields}) for p in rows
    ]


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
