"""居宅同意取得型 (home visits and online care): 再照会, a re-check of eligibility without the card.

The card is checked once, at the first visit (a ``visit``), and the patient's consent is taken for
the whole course of care with ``setting: "home"`` (it lasts until replaced or withdrawn). For as
long as that consent is in force, later visits re-check the person's eligibility through that
first visit's ``visit_id``, without the card: ``POST /v1/visits/{visit_id}/recheck``. The answer
is the card check's answer (query kind ``card``, the same ``visit_id``), as of the day asked
(today by default), with the 限度額 / 特定疾病 parts when the consent shares them. Each re-check
is in the person's access log (``what`` eligibility, query kind ``recheck``, the consent), written
and committed before the answer. See docs/consent.md ("Home care").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from shikaku_server.access_log import service as access_log
from shikaku_server.auth.service import Principal
from shikaku_server.consent.service import latest_consent, visit_of
from shikaku_server.database import utcnow
from shikaku_server.eligibility.models import Insured
from shikaku_server.eligibility.service import (
    cached_bundle,
    evaluate_insured,
    result_dict,
    settle_validity,
    today_jst,
)
from shikaku_server.errors import ConsentExpiredError, ConsentRequiredError

if TYPE_CHECKING:
    from shikaku_server.state import AppState

HOME = "home"
RECHECK = "recheck"  # the access log's query kind of a 再照会


@dataclass(frozen=True, slots=True)
class _Person:
    insured_id: int
    insurer_number: str
    symbol_norm: str
    number_norm: str
    visit_id: str
    share_limit_certificate: bool


def home_consent(session: Session, principal: Principal, visit_id: str) -> _Person:
    """The visit's person, when their latest consent at this facility is a live home-care one;
    the re-check is logged (and committed with the caller's transaction) before anything is read."""
    facility = principal.require_facility()
    visit = visit_of(session, visit_id, facility)
    consent = latest_consent(session, insured_id=visit.insured_id, facility_code=facility)
    if consent is None or consent.setting != HOME:
        raise ConsentRequiredError("再照会 needs the patient's home-care consent (setting home) at this facility")
    if consent.revoked_at is not None or (consent.expires_at is not None and consent.expires_at < utcnow()):
        raise ConsentExpiredError("the home-care consent has ended: check the card again")
    insured = session.get(Insured, visit.insured_id)
    assert insured is not None
    access_log.record(
        session,
        insured_id=insured.id,
        facility_code=facility,
        role=principal.role or "",
        what="eligibility",
        query_kind=RECHECK,
        consent_id=consent.id,
        visit_id=visit.id,
    )
    return _Person(
        insured.id, insured.insurer_number, insured.symbol_norm, insured.number_norm, visit.id,
        consent.limit_certificate,
    )


async def recheck(state: AppState, principal: Principal, visit_id: str, as_of: dt.date | None) -> dict[str, Any]:
    """再照会: the JSON values of the ``EligibilityResult`` of the visit's person on ``as_of``."""

    person = await state.transactions.run(lambda session: home_consent(session, principal, visit_id))
    day = as_of or today_jst()
    bundle = await cached_bundle(
        cache=state.cache,
        bundles=state.bundles,
        ttl=state.settings.eligibility_cache_ttl_seconds,
        insurer_number=person.insurer_number,
        symbol_norm=person.symbol_norm,
        number_norm=person.number_norm,
    )
    evaluation = await settle_validity(state.bundles, evaluate_insured(bundle, person.insured_id, day), day)
    return result_dict(
        evaluation,
        insurer_name=bundle["insurer_name"],
        as_of=day,
        query_kind="card",
        share_limit_certificate=person.share_limit_certificate,
        visit_id=person.visit_id,
    )
