from __future__ import annotations

from fastapi import APIRouter, Response

from schemas.eligibility import ByNumberQuery, EligibilityResult
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.eligibility import service

router = APIRouter(prefix="/v1/eligibility", tags=["eligibility"])


@router.post("/by-number", response_model=EligibilityResult)
async def by_number(query: ByNumberQuery, principal: PrincipalDep, state: StateDep) -> Response:
    facility = principal.require_facility()
    result, insured_id = await service.query_by_number_async(
        state.read_factory, state.cache, state.settings.eligibility_cache_ttl_seconds, query
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
    state.metrics.event(f"eligibility_validity_{result.validity}")
    # the model is already validated: serialise once (response_model stays for the OpenAPI schema)
    return Response(result.model_dump_json(), media_type="application/json")
