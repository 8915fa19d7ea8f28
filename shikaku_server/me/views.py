"""``/v1/me/*``: the patient's own side. No facility token: the card proves every call
(``me.proof.prove``). A kiosk may send its facility token: its challenges then serve too, and the
reads are logged with its facility code."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from schemas.card import AccessLog, Challenge
from schemas.me import (
    CardProof,
    MyCheckups,
    MyConsent,
    MyConsents,
    MyEligibility,
    MyEligibilityRequest,
    MyMedications,
    Suspended,
    WithdrawRequest,
)
from shikaku_server.card.service import create_challenge
from shikaku_server.deps import StateDep, get_principal
from shikaku_server.me import service
from shikaku_server.me.proof import ME_SCOPE, Proven
from shikaku_server.state import AppState

router = APIRouter(tags=["me"])
T = TypeVar("T")


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post("/v1/me/challenges", response_model=Challenge)
async def challenge(request: Request, state: StateDep) -> Challenge:
    """A challenge for the calls below; rate-limited per client address."""
    await state.limiter.ahit_client("me_challenge", client_address(request))
    return await create_challenge(state.card.challenges, ME_SCOPE, state.card.challenge_ttl)


async def _kiosk(request: Request, state: AppState) -> str | None:
    """The kiosk's facility code when the call carries its token (a bad token is refused)."""
    if not request.headers.get("authorization"):
        return None
    return (await get_principal(request, state)).require_facility()


async def _answer(request: Request, state: AppState, body: CardProof, work: Callable[[Session, Proven], T]) -> T:
    return await service.answer(state, body, await _kiosk(request, state), work)


@router.post("/v1/me/eligibility", response_model=MyEligibility)
async def eligibility(body: MyEligibilityRequest, request: Request, state: StateDep) -> MyEligibility:
    return await _answer(request, state, body, lambda s, p: service.eligibility(s, p, body.as_of))


@router.post("/v1/me/medications", response_model=MyMedications)
async def medications(body: CardProof, request: Request, state: StateDep) -> MyMedications:
    return await _answer(request, state, body, service.medications)


@router.post("/v1/me/checkups", response_model=MyCheckups)
async def checkups(body: CardProof, request: Request, state: StateDep) -> MyCheckups:
    return await _answer(request, state, body, service.checkups)


@router.post("/v1/me/access-log", response_model=AccessLog)
async def access_log(body: CardProof, request: Request, state: StateDep) -> AccessLog:
    """Who read this person's data: facility code and name, role, what, when, under which
    consent, and whether it was an emergency read."""

    entries = await service.access_log_entries(state, body, await _kiosk(request, state))
    return AccessLog.model_validate({"entries": entries})


@router.post("/v1/me/consents", response_model=MyConsents)
async def consents(body: CardProof, request: Request, state: StateDep) -> MyConsents:
    return await _answer(request, state, body, service.consents)


@router.post("/v1/me/consents/withdraw", response_model=MyConsent)
async def withdraw(body: WithdrawRequest, request: Request, state: StateDep) -> MyConsent:
    return await _answer(request, state, body, lambda s, p: service.withdraw(s, p, body.consent_id))


@router.post("/v1/me/suspension", response_model=Suspended)
async def suspension(body: CardProof, request: Request, state: StateDep) -> Suspended:
    """一時利用停止: this card is refused everywhere (``card_suspended``) until resumed."""
    return await _answer(request, state, body, service.suspend)
