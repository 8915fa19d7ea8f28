from __future__ import annotations

from fastapi import APIRouter

from schemas.eligibility import ByNumberQuery, EligibilityResult
from shikaku_server.access_log import service as access_log
from shikaku_server.deps import PrincipalDep, SessionDep, StateDep
from shikaku_server.eligibility import service

router = APIRouter(prefix="/v1/eligibility", tags=["eligibility"])


@router.post("/by-number", response_model=EligibilityResult, response_model_exclude_none=False)
def by_number(query: ByNumberQuery, principal: PrincipalDep, session: SessionDep, state: StateDep) -> EligibilityResult:
    facility = principal.require_facility()
    result, insured_id = service.query_by_number(
        session, state.cache, state.settings.eligibility_cache_ttl_seconds, query
    )
    if insured_id is not None:
        access_log.record(
            session,
            insured_id=insured_id,
            facility_code=facility,
            role=principal.role or "",
            what="eligibility",
            query_kind="number",
        )
    state.metrics.event(f"eligibility_validity_{result.validity}")
    return result
