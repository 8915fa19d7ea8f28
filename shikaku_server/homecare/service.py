"""居宅同意取得型 (home visits and online care): the first visit, the courses of care, 再照会.

* **The first visit** confirms the person once: a card check (PIN or face, ``card.service``), or
  **目視確認** (``visual_check``): the visiting staff looked at the card and the person and say
  who they are by the four facts printed on the card or by the insurance number with the birth
  date. The visit records the method (``auth_method`` ``visual``), the staff member named and the
  token used; its access-log entry has query kind ``visual``, so the patient sees how they were
  confirmed.
* **The course's consent** is taken at that visit with ``setting: "home"`` (``consent.service``):
  its extent (home visits, online care, the categories shared) and its end (``course_until``, or
  until withdrawn or replaced; a later answer at this facility, a refusal included, ends it).
* **再照会**: for as long as that consent is in force and covers the kind of care, later visits
  re-check the person's eligibility through the first visit's ``visit_id``, without the card:
  ``POST /v1/visits/{visit_id}/recheck``. The answer is the card check's answer (query kind
  ``card``, the same ``visit_id``), as of the day asked (today by default), with the 限度額 /
  特定疾病 parts when the consent shares them.
* **The courses** of the facility (``GET /v1/home-courses``): its live home-care consents with
  their first visit and person, for the visiting staff's list; each person listed is a read.

Every read — the visual check, each re-check, each person listed — is in the person's access log,
written and committed before the answer. See docs/homecare.md.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.codes import Validity
from schemas.homecare import Care, CourseFilter, VisualCheckRequest
from schemas.identifiers import normalize_key_text
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.service import Principal
from shikaku_server.cache import Cache
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.consent.service import (
    HOME,
    VISUAL,
    consent_in_force,
    consent_in_force_sql,
    latest_consent,
    live_consent,
    visit_of,
)
from shikaku_server.database import Transactions, utcnow
from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.eligibility.rules import insured_with_four_facts
from shikaku_server.eligibility.service import (
    BundleReader,
    Evaluation,
    birth_date_mismatches,
    cached_bundle,
    evaluate,
    evaluate_insured,
    result_dict,
    settle_validity,
    today_jst,
)
from shikaku_server.errors import ConsentExpiredError, ConsentRequiredError

RECHECK_KINDS: dict[str, str] = {"visit": "recheck", "online": "recheck_online"}  # access-log query kinds
CARE_COVERED = {"visit": "home_visit", "online": "online_care"}  # the consent's column per kind of care
COURSES_LIMIT = 500


@dataclass(frozen=True, slots=True)
class _Person:
    insured_id: int
    insurer_number: str
    symbol_norm: str
    number_norm: str
    visit_id: str
    share_limit_certificate: bool


# ---------------------------------------------------------------- 再照会


def home_consent(session: Session, principal: Principal, visit_id: str, care: Care = "visit") -> _Person:
    """The visit's person, when their latest consent at this facility is a live home-care one
    covering ``care``; the re-check is logged (and committed with the caller's transaction)
    before anything is read."""
    facility = principal.require_facility()
    visit = visit_of(session, visit_id, facility)
    consent = latest_consent(session, insured_id=visit.insured_id, facility_code=facility)
    if consent is None or consent.setting != HOME:
        raise ConsentRequiredError("再照会 needs the patient's home-care consent (setting home) at this facility")
    if not consent_in_force(consent.revoked_at, consent.expires_at):
        raise ConsentExpiredError("the home-care consent has ended: check the card again")
    if not getattr(consent, CARE_COVERED[care]):
        raise ConsentRequiredError(f"the course's consent does not cover this kind of care ({care})")
    insured = session.get(Insured, visit.insured_id)
    assert insured is not None
    access_log.record(
        session,
        insured_id=insured.id,
        facility_code=facility,
        role=principal.role or "",
        what="eligibility",
        query_kind=RECHECK_KINDS[care],
        consent_id=consent.id,
        visit_id=visit.id,
    )
    return _Person(
        insured.id, insured.insurer_number, insured.symbol_norm, insured.number_norm, visit.id,
        consent.limit_certificate,
    )


@dataclass(frozen=True, slots=True)
class Reads:
    """What the re-check and the visual check work with (built by the views from the app's parts)."""

    transactions: Transactions
    cache: Cache
    bundles: BundleReader
    ttl: int  # the bundle cache's, seconds

    async def bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        return await cached_bundle(
            cache=self.cache,
            bundles=self.bundles,
            ttl=self.ttl,
            insurer_number=insurer_number,
            symbol_norm=symbol_norm,
            number_norm=number_norm,
        )


async def recheck(
    reads: Reads, principal: Principal, visit_id: str, as_of: dt.date | None, care: Care = "visit"
) -> dict[str, Any]:
    """再照会: the JSON values of the ``EligibilityResult`` of the visit's person on ``as_of``."""

    person = await reads.transactions.run(lambda session: home_consent(session, principal, visit_id, care))
    day = as_of or today_jst()
    bundle = await reads.bundle(person.insurer_number, person.symbol_norm, person.number_norm)
    evaluation = await settle_validity(reads.bundles, evaluate_insured(bundle, person.insured_id, day), day)
    return result_dict(
        evaluation,
        insurer_name=bundle["insurer_name"],
        as_of=day,
        query_kind="card",
        share_limit_certificate=person.share_limit_certificate,
        visit_id=person.visit_id,
    )


# ---------------------------------------------------------------- 目視確認


async def visual_check(reads: Reads, principal: Principal, body: VisualCheckRequest) -> dict[str, Any]:
    """The first visit by 目視確認: the person the four facts (exactly one current record covering
    today) or the insurance number and birth date name, their eligibility today, and the visit
    (method ``visual``, the staff member and token) with its access-log entry, committed before
    the answer. Nobody found: validity 4 (several: 5), no visit; as a by-number lookup, the
    persons of the number whose birth date was missed see the try (``eligibility_no_match``)."""
    facility = principal.require_facility()
    day = today_jst()
    mismatched: list[int] = []
    if body.insurance is not None:
        q = body.insurance
        bundle = await reads.bundle(q.insurer_number, normalize_key_text(q.symbol), normalize_key_text(q.number))
        evaluation = evaluate(bundle, branch=q.branch, birth_date=q.birth_date, as_of=day)
        if evaluation.validity == Validity.NONE:
            mismatched = birth_date_mismatches(bundle, branch=q.branch, birth_date=q.birth_date)
    else:
        assert body.four_facts is not None
        facts = body.four_facts

        def find(session: Session) -> list[tuple[int, str, str, str]]:
            ids = select(Insured.id, Insured.insurer_number, Insured.symbol_norm, Insured.number_norm).where(
                Insured.id.in_(
                    insured_with_four_facts(
                        name=facts.name, birth_date=facts.birth_date, sex=facts.sex, address=facts.address,
                        as_of=day,
                    )
                )
            )
            return [(r[0], r[1], r[2], r[3]) for r in session.execute(ids)]

        found = await reads.transactions.read(find)
        if len(found) == 1:
            insured_id, number, symbol_norm, number_norm = found[0]
            bundle = await reads.bundle(number, symbol_norm, number_norm)
            evaluation = evaluate_insured(bundle, insured_id, day)
        else:
            bundle = {"insurer_name": None}
            validity = Validity.MULTIPLE if found else Validity.NONE
            evaluation = Evaluation(validity, None, None, None)
    evaluation = await settle_validity(reads.bundles, evaluation, day)
    visit_id = None if evaluation.insured_id is None else secrets.token_urlsafe(24)

    def record(session: Session) -> None:
        for person in mismatched:
            access_log.record(
                session, insured_id=person, facility_code=facility, role=principal.role or "",
                what="eligibility_no_match", query_kind=VISUAL,
            )
        if evaluation.insured_id is None or visit_id is None:
            return
        period = evaluation.period or {}
        session.add(
            Visit(
                id=visit_id,
                facility_code=facility,
                insured_id=evaluation.insured_id,
                auth_method=VISUAL,
                card_classification=period.get("card_classification", "01"),
                as_of=day,
                confirmed_by=body.confirmed_by,
                confirmed_token_id=principal.token_id,
            )
        )
        session.flush()
        consent = live_consent(session, insured_id=evaluation.insured_id, facility_code=facility)
        access_log.record(
            session, insured_id=evaluation.insured_id, facility_code=facility, role=principal.role or "",
            what="eligibility", query_kind=VISUAL, consent_id=None if consent is None else consent.id,
            visit_id=visit_id,
        )

    await reads.transactions.run(record)  # committed before the answer
    return result_dict(
        evaluation,
        insurer_name=bundle["insurer_name"],
        as_of=day,
        query_kind="card",
        share_limit_certificate=False,  # answered before this visit's consent, as a card check
        visit_id=visit_id,
    )


# ---------------------------------------------------------------- the courses of care


def courses(session: Session, principal: Principal, only: CourseFilter | None = None) -> list[dict[str, Any]]:
    """The facility's ongoing courses of care (its live home-care consents), newest first, at most
    ``COURSES_LIMIT``; ``only``: one person's. Each person listed gets an access-log entry
    (``what`` home_courses), written before the list is answered."""
    facility = principal.require_facility()
    query = (
        select(Consent, Visit, Insured)
        .join(Visit, Visit.id == Consent.visit_id)
        .join(Insured, Insured.id == Consent.insured_id)
        .where(Consent.facility_code == facility, Consent.setting == HOME, consent_in_force_sql(utcnow()))
        .order_by(Consent.given_at.desc(), Consent.id.desc())
        .limit(COURSES_LIMIT)
    )
    if only is not None:
        query = query.where(
            Insured.insurer_number == only.insurer_number,
            Insured.symbol_norm == normalize_key_text(only.symbol),
            Insured.number_norm == normalize_key_text(only.number),
        )
        if only.branch is not None:
            query = query.where(Insured.branch == only.branch)
    out = []
    for consent, visit, insured in session.execute(query):
        access_log.record(
            session, insured_id=insured.id, facility_code=facility, role=principal.role or "",
            what="home_courses", query_kind="list", consent_id=consent.id, visit_id=visit.id,
        )
        period = session.execute(
            select(EligibilityPeriod.name, EligibilityPeriod.name_kana, EligibilityPeriod.birth_date)
            .where(EligibilityPeriod.insured_id == insured.id, EligibilityPeriod.superseded_by.is_(None))
            .order_by(EligibilityPeriod.valid_from.desc(), EligibilityPeriod.id.desc())
            .limit(1)
        ).first()
        out.append({
            "consent_id": consent.id,
            "visit_id": visit.id,
            "first_visit_at": visit.created_at,
            "confirmation": visit.auth_method,
            "confirmed_by": visit.confirmed_by,
            "given_at": consent.given_at,
            "expires_at": consent.expires_at,
            "home_visit": consent.home_visit,
            "online_care": consent.online_care,
            "drug": consent.drug,
            "checkup": consent.checkup,
            "clinical": consent.clinical,
            "limit_certificate": consent.limit_certificate,
            "person": {
                "insurer_number": insured.insurer_number,
                "symbol": insured.symbol,
                "number": insured.number,
                "branch": insured.branch,
                "name": period[0] if period else None,
                "name_kana": period[1] if period else None,
                "birth_date": period[2] if period else None,
            },
        })
    session.flush()
    return out
