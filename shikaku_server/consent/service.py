"""Consent given at a card check, and the rules for reading drug and checkup data under it.

Outpatient consent lasts 24 hours; inpatient and home-care consent lasts until revoked. The
latest consent of the person at the facility is the one in force, and a new consent ends the
earlier ones (``revoked_at``): what the patient says at this visit, a refusal included, replaces
what they said before, for every visit of theirs at this facility. A consent is taken at the visit
it answers; a visit whose patient has since answered at a newer visit takes none.

A visit is of the day it was made (its real day, JST). Only a check of that day's eligibility
opens consent and data: a card check with another ``as_of`` (a re-check of a past date, for a
claim; a future one, for a booking) answers the eligibility and takes no consent, and no drug or
checkup history is read through it. The drug (3 years) and checkup (5 years) windows end at the
visit's real day whatever ``as_of`` said. See docs/consent.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from schemas.card import ConsentRecord, ConsentRequest
from schemas.codes import CERTIFICATE_TYPE_CARDS
from shikaku_server.auth.service import Principal
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.database import utcnow
from shikaku_server.eligibility.service import JST
from shikaku_server.errors import (
    ConsentExpiredError,
    ConsentRequiredError,
    NotFoundError,
    ValidationFailedError,
)

OUTPATIENT_HOURS = 24
CONSENT_WINDOW = dt.timedelta(hours=2)  # consent is taken right after the card check
HOME = "home"
VISUAL = "visual"  # a visit confirmed by 目視確認 (home care only: docs/homecare.md)
COURSE_MAX_DAYS = 366  # a course-of-care consent names its last day at most a year ahead (our rule)


def visit_day(visit: Visit) -> dt.date:
    """The real day of the visit: the JST day it was made on, whatever ``as_of`` it asked about."""
    return visit.created_at.astimezone(JST).date()


def is_recheck(visit: Visit) -> bool:
    """A card check of another day's eligibility (``as_of`` not the visit's day): no consent, no data."""
    return visit.as_of != visit_day(visit)


def visit_of(session: Session, visit_id: str, facility_code: str) -> Visit:
    """The visit, when it belongs to this facility; another facility's visit does not exist."""
    visit = session.get(Visit, visit_id)
    if visit is None or visit.facility_code != facility_code:
        raise NotFoundError("no such visit")
    return visit


def latest_consent_query(insured_id: Any, facility_code: Any, *columns: Any, limit: Any = 1) -> Select[Any]:
    """The latest consent of a person at a facility: the one SQL builder of ``latest_consent``
    and of the card check's single statement (``card.store``: correlated, as a LATERAL)."""
    return (
        select(*(columns or (Consent,)))
        .where(Consent.insured_id == insured_id, Consent.facility_code == facility_code)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
        .limit(limit)
    )


def consent_in_force(revoked_at: dt.datetime | None, expires_at: dt.datetime | None) -> bool:
    """Whether a consent neither revoked nor expired is in force now (the one rule)."""
    return revoked_at is None and (expires_at is None or expires_at >= utcnow())


def consent_in_force_sql(now: dt.datetime) -> ColumnElement[bool]:
    """``consent_in_force`` as a SQL condition over the consent table."""
    return and_(Consent.revoked_at.is_(None), or_(Consent.expires_at.is_(None), Consent.expires_at >= now))


def latest_consent(session: Session, *, insured_id: int, facility_code: str) -> Consent | None:
    return session.execute(latest_consent_query(insured_id, facility_code)).scalar_one_or_none()


def live_consent(session: Session, *, insured_id: int, facility_code: str) -> Consent | None:
    consent = latest_consent(session, insured_id=insured_id, facility_code=facility_code)
    return consent if consent is not None and consent_in_force(consent.revoked_at, consent.expires_at) else None


def give_consent(session: Session, principal: Principal, body: ConsentRequest) -> ConsentRecord:
    facility = principal.require_facility()
    visit = visit_of(session, body.visit_id, facility)
    now = utcnow()
    if now - visit.created_at > CONSENT_WINDOW:
        raise ValidationFailedError("consent is taken at the card check: this visit is too old, check the card again")
    if is_recheck(visit):
        raise ValidationFailedError("consent is taken at a card check of today's eligibility: this visit asked as_of")
    if _answered_at_a_newer_visit(session, visit):
        raise ValidationFailedError("the patient has answered at a newer card check: consent is taken at that visit")
    sharing = body.drug or body.checkup or body.clinical or body.limit_certificate
    if sharing and visit.card_classification in CERTIFICATE_TYPE_CARDS:
        raise ValidationFailedError("holders of a 資格証明書-type card cannot share information")
    if visit.auth_method == VISUAL and body.setting != HOME and sharing:
        raise ValidationFailedError("a visit confirmed by 目視確認 takes a home-care consent or a refusal")
    home_visit, online_care, expires = _lifetime(body, now)
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
        home_visit=home_visit,
        online_care=online_care,
    )
    session.add(consent)
    session.flush()
    # the new answer ends every earlier consent of the person here (a refusal beats an older consent)
    session.execute(
        update(Consent)
        .where(
            Consent.insured_id == visit.insured_id,
            Consent.facility_code == facility,
            Consent.id != consent.id,
            Consent.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
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
        home_visit=home_visit,
        online_care=online_care,
    )


def _lifetime(body: ConsentRequest, now: dt.datetime) -> tuple[bool, bool, dt.datetime | None]:
    """The extent (home visits, online care) and the end of a consent: 24 hours for outpatients,
    none for inpatients, the end (JST) of the course's last day for home care (none when not said).
    The extent and the last day belong to home care only."""
    if body.setting != HOME:
        if body.home_visit or body.online_care or body.course_until is not None:
            raise ValidationFailedError("home_visit, online_care and course_until belong to setting home")
        expires = now + dt.timedelta(hours=OUTPATIENT_HOURS) if body.setting == "outpatient" else None
        return False, False, expires
    home_visit = True if body.home_visit is None else body.home_visit
    online_care = True if body.online_care is None else body.online_care
    if not (home_visit or online_care):
        raise ValidationFailedError("a home-care consent covers home visits, online care or both")
    if body.course_until is None:
        return home_visit, online_care, None
    today = now.astimezone(JST).date()
    if not today <= body.course_until <= today + dt.timedelta(days=COURSE_MAX_DAYS):
        raise ValidationFailedError(f"course_until is a day from today to {COURSE_MAX_DAYS} days ahead")
    end = dt.datetime.combine(body.course_until + dt.timedelta(days=1), dt.time(), JST) - dt.timedelta(microseconds=1)
    return home_visit, online_care, end.astimezone(dt.UTC)


def _answered_at_a_newer_visit(session: Session, visit: Visit) -> bool:
    newer = (
        select(Consent.id)
        .join(Visit, Visit.id == Consent.visit_id)
        .where(
            Consent.insured_id == visit.insured_id,
            Consent.facility_code == visit.facility_code,
            Visit.created_at > visit.created_at,
        )
    )
    return bool(session.execute(select(exists(newer))).scalar())


def consent_for(session: Session, visit: Visit, category: str) -> Consent:
    """The consent in force covering ``category`` (drug / checkup), or the reason there is none."""
    if is_recheck(visit):
        raise ConsentRequiredError("this visit checked another day's eligibility: no data is read through it")
    consent = latest_consent(session, insured_id=visit.insured_id, facility_code=visit.facility_code)
    if consent is None or not getattr(consent, category):
        raise ConsentRequiredError(f"the patient has not agreed to share {category} information with this facility")
    if not consent_in_force(consent.revoked_at, consent.expires_at):
        raise ConsentExpiredError()
    return consent
