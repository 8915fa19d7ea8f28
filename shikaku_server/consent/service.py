"""Consent given at a card check, and the rules for reading drug and checkup data under it.

Outpatient consent lasts 24 hours; inpatient and home-care consent lasts until revoked (a later
consent of the same person at the same facility replaces it). The latest consent of the person
at the facility is the one in force.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.card import ConsentRecord, ConsentRequest
from schemas.codes import CERTIFICATE_TYPE_CARDS
from shikaku_server.auth.service import Principal
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.database import utcnow
from shikaku_server.errors import (
    ConsentExpiredError,
    ConsentRequiredError,
    NotFoundError,
    ValidationFailedError,
)

OUTPATIENT_HOURS = 24
CONSENT_WINDOW = dt.timedelta(hours=2)  # consent is taken right after the card check


def visit_of(session: Session, visit_id: str, facility_code: str) -> Visit:
    """The visit, when it belongs to this facility; another facility's visit does not exist."""
    visit = session.get(Visit, visit_id)
    if visit is None or visit.facility_code != facility_code:
        raise NotFoundError("no such visit")
    return visit


def latest_consent(session: Session, *, insured_id: int, facility_code: str) -> Consent | None:
    return session.execute(
        select(Consent)
        .where(Consent.insured_id == insured_id, Consent.facility_code == facility_code)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def live_consent(session: Session, *, insured_id: int, facility_code: str) -> Consent | None:
    consent = latest_consent(session, insured_id=insured_id, facility_code=facility_code)
    if consent is None or consent.revoked_at is not None:
        return None
    if consent.expires_at is not None and consent.expires_at < utcnow():
        return None
    return consent


def give_consent(session: Session, principal: Principal, body: ConsentRequest) -> ConsentRecord:
    facility = principal.require_facility()
    visit = visit_of(session, body.visit_id, facility)
    now = utcnow()
    if now - visit.created_at > CONSENT_WINDOW:
        raise ValidationFailedError("consent is taken at the card check: this visit is too old, check the card again")
    sharing = body.drug or body.checkup or body.clinical or body.limit_certificate
    if sharing and visit.card_classification in CERTIFICATE_TYPE_CARDS:
        raise ValidationFailedError("holders of a 資格証明書-type card cannot share information")
    expires = now + dt.timedelta(hours=OUTPATIENT_HOURS) if body.setting == "outpatient" else None
    consent = Consent(
        visit_id=visit.id,
        insured_id=visit.insured_id,
        facility_code=facility,
        drug=body.drug,
        checkup=body.checkup,
        clinical=body.clinical,
        limit_certificate=body.limit_certificate,
        setting=body.setting,
        given_at=now,
        expires_at=expires,
    )
    session.add(consent)
    session.flush()
    return ConsentRecord(
        consent_id=consent.id,
        visit_id=visit.id,
        drug=consent.drug,
        checkup=consent.checkup,
        clinical=consent.clinical,
        limit_certificate=consent.limit_certificate,
        setting=body.setting,
        given_at=now,
        expires_at=expires,
    )


def consent_for(session: Session, visit: Visit, category: str) -> Consent:
    """The consent in force covering ``category`` (drug / checkup), or the reason there is none."""
    consent = latest_consent(session, insured_id=visit.insured_id, facility_code=visit.facility_code)
    if consent is None or not getattr(consent, category):
        raise ConsentRequiredError(f"the patient has not agreed to share {category} information with this facility")
    if consent.revoked_at is not None or (consent.expires_at is not None and consent.expires_at < utcnow()):
        raise ConsentExpiredError()
    return consent
