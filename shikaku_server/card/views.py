from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from schemas.card import AccessLog, AccessLogRequest, ByCardQuery, Challenge, Registered, Registration
from schemas.eligibility import EligibilityResult
from shikaku_server.card import service
from shikaku_server.deps import PrincipalDep, SessionDep, StateDep, get_principal

router = APIRouter(tags=["card"])


@router.post("/v1/card/challenges", response_model=Challenge)
def challenge(principal: PrincipalDep, state: StateDep) -> Challenge:
    facility = principal.require_facility()
    return service.create_challenge(state.cache, facility, state.settings.challenge_ttl_seconds)


@router.post("/v1/card/registrations", response_model=Registered)
def registration(body: Registration, principal: PrincipalDep, session: SessionDep, state: StateDep) -> Registered:
    return service.register(
        session,
        state.session_factory,
        state.cache,
        state.verifier,
        principal,
        challenge_id=body.challenge_id,
        cert_der=body.certificate,
        signature=body.signature,
        facts=body.basic_facts,
        challenge_ttl=state.settings.challenge_ttl_seconds,
    )


@router.post("/v1/eligibility/by-card", response_model=EligibilityResult)
def by_card(body: ByCardQuery, principal: PrincipalDep, session: SessionDep, state: StateDep) -> EligibilityResult:
    result = service.by_card(
        session, state.cache, state.verifier, principal, body, state.settings.challenge_ttl_seconds
    )
    state.metrics.event(f"card_check_{body.auth_method}")
    return result


@router.post("/v1/me/access-log", response_model=AccessLog)
async def my_access_log(body: AccessLogRequest, request: Request, state: StateDep) -> AccessLog:
    """The patient authenticates with the card (challenge + PIN signature). A facility token, when
    the kiosk sends one, binds the challenge to that facility."""
    facility = None
    if request.headers.get("authorization"):
        facility = (await get_principal(request, state)).require_facility()

    def read() -> list[dict[str, object]]:
        state.access_log.flush()  # the patient sees every entry, including those still queued
        with state.session_factory.begin() as session:
            return service.my_access_log(
                session,
                state.cache,
                state.verifier,
                challenge_id=body.challenge_id,
                cert_der=body.certificate,
                signature=body.signature,
                facility_code=facility,
                challenge_ttl=state.settings.challenge_ttl_seconds,
            )

    entries = await run_in_threadpool(read)
    return AccessLog.model_validate({"entries": entries})
