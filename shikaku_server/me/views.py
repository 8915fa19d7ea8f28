"""``/v1/me/*``: the patient's own side. No facility token: the card proves every call
(``me.proof.prove``). A kiosk may send its facility token: its challenges then serve too, and the
reads are logged with its facility code."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from schemas.card import AccessLog, Challenge
from schemas.expenses import Expenses, ExpensesExportRequest, ExpensesRequest
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
from schemas.procedures import MyProcedures
from shikaku_server.card.service import create_challenge
from shikaku_server.deps import StateDep, get_principal
from shikaku_server.expenses import service as expenses
from shikaku_server.me import service
from shikaku_server.me.proof import ME_SCOPE, Proven
from shikaku_server.state import AppState

router = APIRouter(tags=["me"])
T = TypeVar("T")


def ports(state: AppState) -> service.Ports:
    """The app's parts the patient's own calls work with (``service.Ports``)."""
    return service.Ports(card=state.card, transactions=state.transactions, access_log=state.access_log)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post("/v1/me/challenges", response_model=Challenge)
async def challenge(request: Request, state: StateDep) -> Challenge:
    """A challenge for the calls below; rate-limited per client address."""
    await state.limiter.hit_client("me_challenge", client_address(request))
    return await create_challenge(state.card.challenges, ME_SCOPE, state.card.challenge_ttl)


async def _kiosk(request: Request, state: AppState) -> str | None:
    """The kiosk's facility code when the call carries its token (a bad token is refused)."""
    if not request.headers.get("authorization"):
        return None
    return (await get_principal(request, state)).require_facility()


async def _answer(request: Request, state: AppState, body: CardProof, work: Callable[[Session, Proven], T]) -> T:
    return await service.answer(ports(state), body, await _kiosk(request, state), work)


@router.post("/v1/me/eligibility", response_model=MyEligibility)
async def eligibility(body: MyEligibilityRequest, request: Request, state: StateDep) -> MyEligibility:
    return await _answer(request, state, body, lambda s, p: service.eligibility(s, p, body.as_of))


@router.post("/v1/me/medications", response_model=MyMedications)
async def medications(body: CardProof, request: Request, state: StateDep) -> MyMedications:
    return await _answer(request, state, body, service.medications)


@router.post("/v1/me/checkups", response_model=MyCheckups)
async def checkups(body: CardProof, request: Request, state: StateDep) -> MyCheckups:
    return await _answer(request, state, body, service.checkups)


@router.post("/v1/me/procedures", response_model=MyProcedures)
async def procedures(body: CardProof, request: Request, state: StateDep) -> MyProcedures:
    """The person's own 診療・手術 information (5 years: ``SHIKAKU_CLINICAL_RETENTION_YEARS``)."""
    return await _answer(request, state, body, service.procedures)


@router.post("/v1/me/access-log", response_model=AccessLog)
async def access_log(body: CardProof, request: Request, state: StateDep) -> AccessLog:
    """Who read this person's data: facility code and name, role, what, when, under which
    consent, and whether it was an emergency read."""

    entries = await service.access_log_entries(ports(state), body, await _kiosk(request, state))
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


@router.post("/v1/me/expenses", response_model=Expenses)
async def my_expenses(body: ExpensesRequest, request: Request, state: StateDep) -> Expenses:
    """医療費通知情報 of calendar ``year``: rows by month, facility and kind of care, with totals."""
    return await _answer(request, state, body, lambda s, p: expenses.expenses_of_year(s, p.insured_id, body.year))


@router.post(
    "/v1/me/expenses/export",
    response_class=Response,
    responses={200: {"content": {expenses.XLSX_MEDIA_TYPE: {}, expenses.CSV_MEDIA_TYPE: {}}}},
)
async def my_expenses_export(body: ExpensesExportRequest, request: Request, state: StateDep) -> Response:
    """The year as a file to download: the 医療費集計フォーム (.xlsx) or CSV (docs/expenses.md)."""
    content, media_type, filename = await _answer(
        request, state, body, lambda s, p: expenses.export_year(s, p.insured_id, body.year, body.format)
    )
    return Response(
        content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
