from __future__ import annotations

from fastapi import APIRouter, Response

from schemas.eligibility import ByNumberQuery, EligibilityResult
from shikaku_server.auth.service import Principal
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.eligibility import service
from shikaku_server.fastpath import FastRoute, json_model
from shikaku_server.state import AppState

router = APIRouter(prefix="/v1/eligibility", tags=["eligibility"])


async def lookup(state: AppState, principal: Principal, query: ByNumberQuery) -> bytes:
    """``service.lookup`` with the app's parts: the route below and its fast path (``FAST``)."""
    return await service.lookup(state.lookup, principal, query)


@router.post("/by-number", response_model=EligibilityResult)
async def by_number(query: ByNumberQuery, principal: PrincipalDep, state: StateDep) -> Response:
    # the body is rendered from checked data (response_model stays for the OpenAPI schema)
    return Response(await lookup(state, principal, query), media_type="application/json")


# the ordinary lookup without FastAPI's routing and body handling (``shikaku_server.fastpath``)
FAST = FastRoute("/v1/eligibility/by-number", router, json_model(ByNumberQuery), lookup)
