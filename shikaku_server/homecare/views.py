from __future__ import annotations

from fastapi import APIRouter

from schemas.eligibility import EligibilityResult
from schemas.homecare import RecheckRequest
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.homecare import service

router = APIRouter(prefix="/v1/visits", tags=["homecare"])


@router.post("/{visit_id}/recheck", response_model=EligibilityResult)
async def recheck(
    visit_id: str, principal: PrincipalDep, state: StateDep, body: RecheckRequest | None = None
) -> EligibilityResult:
    """再照会 (居宅同意取得型): the eligibility of the first visit's person, without the card, while
    their home-care consent at this facility lasts (any facility role)."""
    answer = await service.recheck(state, principal, visit_id, body.as_of if body else None)
    return EligibilityResult.model_validate(answer)
