from __future__ import annotations

import datetime as dt
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from schemas.card import (
    ByCardQuery,
    CardLinkDriftReport,
    CardLinkReport,
    Challenge,
    Registered,
    Registration,
)
from schemas.eligibility import EligibilityResult
from shikaku_server.auth.service import Principal
from shikaku_server.card import drift, service
from shikaku_server.deps import PrincipalDep, SessionDep, get_principal
from shikaku_server.errors import RateLimitedError, UnavailableError
from shikaku_server.fastpath import FastRoute, empty_body, json_model
from shikaku_server.state import AppState

router = APIRouter(tags=["card"])


async def _card_context(request: Request) -> tuple[Principal, AppState]:
    """``PrincipalDep`` and ``StateDep`` as one dependency (the same resolution and the same
    errors): FastAPI solves one node instead of three on the two requests of every card check."""
    state: AppState = request.app.state.shikaku
    return await get_principal(request, state), state


CardContext = Annotated[tuple[Principal, AppState], Depends(_card_context)]


async def issue_challenge(state: AppState, principal: Principal, _: object = None) -> bytes:
    """A challenge for the principal's facility, rate-limited per token and per facility: the
    counters and the challenge go to Redis in one round trip (a refused challenge is withdrawn).
    Shared by the route below and by its fast path (``FAST_CHALLENGE``)."""
    facility = principal.require_facility()
    hit = await state.limiter.begin("challenge", principal)
    try:
        created = await service.create_challenge(state.card.challenges, facility, state.card.challenge_ttl)
    except UnavailableError:
        await hit.check()  # over a limit: 429, as when the counters were read first
        raise
    except BaseException:
        hit.discard()
        raise
    try:
        await hit.check()
    except RateLimitedError:
        await service.withdraw_challenge(state.card.challenges, created.challenge_id)
        raise
    # the model's own JSON: the same bytes FastAPI renders through response_model, minus revalidation
    return created.model_dump_json().encode()


@router.post("/v1/card/challenges", response_model=Challenge)
async def challenge(context: CardContext) -> Response:
    principal, state = context
    return Response(await issue_challenge(state, principal), media_type="application/json")


@router.post("/v1/card/registrations", response_model=Registered)
async def registration(body: Registration, context: CardContext) -> Registered:
    """Rate-limited per token and per facility; committed (link, audit, access-log entry) before
    the answer is sent."""
    principal, state = context
    principal.require_facility()
    await state.limiter.hit("registration", principal)
    return await service.register(
        state.card,
        principal,
        challenge_id=body.challenge_id,
        cert_der=body.certificate,
        signature=body.signature,
        facts=body.basic_facts,
    )


async def card_check(state: AppState, principal: Principal, body: ByCardQuery) -> bytes:
    """A card check (PIN or face), the answer's JSON and its metrics: shared by the route below
    and by its fast path (``FAST_BY_CARD``)."""
    authenticator = service.authenticator_for(body, state.card, principal.require_facility())
    result = await service.check_card(body, authenticator, principal=principal, ports=state.card)
    state.metrics.event(f"card_check_{body.auth_method}")
    state.metrics.event(f"eligibility_validity_{result['validity']}")  # by number and by card alike
    return orjson.dumps(result)


@router.post("/v1/eligibility/by-card", response_model=EligibilityResult)
async def by_card(body: ByCardQuery, context: CardContext) -> Response:
    principal, state = context
    # the body is rendered from checked data (response_model stays for the OpenAPI schema)
    return Response(await card_check(state, principal, body), media_type="application/json")


MAX_ID = 2**63 - 1  # a cursor is an audit id: a 64-bit integer (a larger one no database binds)


@router.get("/v1/insurer/card-links", response_model=CardLinkReport)
def card_links(
    principal: PrincipalDep,
    session: SessionDep,
    since: dt.datetime | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> CardLinkReport:
    """For insurer tokens: cards linked to (or refused for) the insurer's insured persons, oldest
    first, at most 1,000 per call; page with ``after=<next_after>``."""
    links, next_after = service.card_link_report(session, principal, since=since, after=after)
    return CardLinkReport.model_validate({"links": links, "next_after": next_after})


@router.get("/v1/insurer/card-link-drift", response_model=CardLinkDriftReport)
def card_link_drift(
    principal: PrincipalDep,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> CardLinkDriftReport:
    """For insurer tokens: the insurer's linked cards whose record's four facts (name, birth date,
    sex, address) changed since the link (docs/card.md), oldest link first, at most 1,000 per
    call; page with ``after=<next_after>`` until ``links`` is empty."""
    links, next_after = drift.card_link_drift(session, principal, after=after)
    return CardLinkDriftReport.model_validate({"links": links, "next_after": next_after})


# the two requests of a card check without FastAPI's routing and body handling
# (``shikaku_server.fastpath``): the same functions answer, every other case goes to the routes
FAST_CHALLENGE = FastRoute("/v1/card/challenges", router, empty_body, issue_challenge, json_body=False)
FAST_BY_CARD = FastRoute("/v1/eligibility/by-card", router, json_model(ByCardQuery), card_check)
