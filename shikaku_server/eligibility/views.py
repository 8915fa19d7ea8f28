from __future__ import annotations

from fastapi import APIRouter, Response

from schemas.eligibility import ByNumberQuery, EligibilityResult
from shikaku_server.auth.service import Principal
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.eligibility import service
from shikaku_server.state import AppState

router = APIRouter(prefix="/v1/eligibility", tags=["eligibility"])


async def lookup(state: AppState, principal: Principal, query: ByNumberQuery) -> bytes:
    """One by-number lookup: the answer's JSON, its access-log entry and its metric.

    Shared by the route below and by ``fastpath.ByNumberFastPath`` (the same code answers)."""
    facility = principal.require_facility()
    body, validity, insured_id = await service.answer_by_number(
        state.read_factory, state.cache, state.settings.eligibility_cache_ttl_seconds, query, state.pg
    )
    if insured_id is not None:
        state.access_log.submit(
            {
                "insured_id": insured_id,
                "facility_code": facility,
                "role": principal.role or "",
                "what": "eligibility",
                "query_kind": "number",
            }
        )
    state.metrics.event(f"eligibility_validity_{validity}")
    return body


@router.post("/by-number", response_model=EligibilityResult)
async def by_number(query: ByNumberQuery, principal: PrincipalDep, state: StateDep) -> Response:
    # the body is rendered from checked data (response_model stays for the OpenAPI schema)
    return Response(await lookup(state, principal, query), media_type="application/json")
