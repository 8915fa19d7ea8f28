"""救急時医療情報閲覧: a physician at an emergency hospital reads an unconscious patient's drug
information without consent and without the PIN.

What proves presence (docs/consent.md "Emergency reading"): a fresh single-use challenge issued
to this facility's token, answered within its lifetime with the card's user-authentication
certificate read from the card at the terminal (reading it needs no PIN). The certificate must be
trusted, unexpired, unrevoked, linked and not suspended. That proves the request came from the
facility's token within a minute and names a real, live card; it does NOT prove that the card
was in the reader (a certificate is not secret: whoever has copied it once can send it again),
nor who the patient is beyond the card's link. Hence: physician role only, emergency hospitals
only, a stated reason, a tight rate limit, an ``emergency_read`` row for review and an
``emergency`` entry in the patient's access log."""

from __future__ import annotations

from sqlalchemy.orm import Session

from schemas.me import EmergencyRequest, MyMedications
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.models import Facility
from shikaku_server.auth.service import Principal
from shikaku_server.card import service as card
from shikaku_server.clinical.service import drug_items, retention_since
from shikaku_server.database import Transactions
from shikaku_server.eligibility.service import today_jst
from shikaku_server.emergency.models import EmergencyRead
from shikaku_server.errors import ForbiddenRoleError, NotFoundError
from shikaku_server.ratelimit import RateLimiter

EMERGENCY_ROLES = ("physician",)


def set_emergency(session: Session, facility_code: str, on: bool) -> None:
    """Mark (or unmark) a registered facility as an emergency hospital (救急告示病院 etc.)."""
    facility = session.get(Facility, facility_code)
    if facility is None:
        raise NotFoundError("no such facility")
    facility.emergency = on
    session.flush()


def _is_emergency_hospital(session: Session, facility_code: str) -> bool:
    facility = session.get(Facility, facility_code)
    return facility is not None and facility.emergency


async def read_medications(
    principal: Principal,
    body: EmergencyRequest,
    *,
    transactions: Transactions,
    limiter: RateLimiter,
    card_ports: card.CardPorts,
) -> MyMedications:
    facility = principal.require_facility(*EMERGENCY_ROLES)
    if not await transactions.read(lambda session: _is_emergency_hospital(session, facility)):
        raise ForbiddenRoleError("emergency reading is for facilities marked as emergency hospitals")
    await limiter.hit("emergency", principal)
    person = await card.prove_card(  # the card alone: the patient cannot enter a PIN
        card_ports,
        challenge_id=body.challenge_id,
        certificate=body.certificate,
        authenticator=card.CardPresented(),
        facility_code=facility,
    )
    insured_id = person.insured_id

    def read(session: Session) -> MyMedications:
        session.add(
            EmergencyRead(
                facility_code=facility,
                token_id=principal.token_id,
                role=principal.role or "",
                insured_id=insured_id,
                reason=body.reason,
            )
        )
        access_log.record(
            session,
            insured_id=insured_id,
            facility_code=facility,
            role=principal.role or "",
            what="medications",
            query_kind="emergency",
            emergency=True,
        )
        session.flush()
        since = retention_since(today_jst())
        return MyMedications(since=since, items=drug_items(session, insured_id, since))

    return await transactions.run(read)
