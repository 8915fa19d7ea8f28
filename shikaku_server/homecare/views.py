from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError

from schemas.eligibility import EligibilityResult
from schemas.homecare import CourseFilter, HomeCourses, RecheckRequest, VisualCheckRequest
from schemas.identifiers import MY_NUMBER_MESSAGE, Branch, InsurerNumber
from shikaku_server.deps import PrincipalDep, SessionDep, StateDep
from shikaku_server.errors import MyNumberDetectedError, ValidationFailedError
from shikaku_server.homecare import service
from shikaku_server.state import AppState

router = APIRouter(tags=["homecare"])


def _reads(state: AppState) -> service.Reads:
    return service.Reads(
        transactions=state.transactions,
        cache=state.cache,
        bundles=state.bundles,
        ttl=state.settings.eligibility_cache_ttl_seconds,
    )


@router.post("/v1/visits/{visit_id}/recheck", response_model=EligibilityResult)
async def recheck(
    visit_id: str, principal: PrincipalDep, state: StateDep, body: RecheckRequest | None = None
) -> EligibilityResult:
    """再照会 (居宅同意取得型): the eligibility of the first visit's person, without the card, while
    their home-care consent at this facility lasts and covers ``care`` (any facility role)."""
    body = body or RecheckRequest()
    answer = await service.recheck(_reads(state), principal, visit_id, body.as_of, body.care)
    return EligibilityResult.model_validate(answer)


@router.post("/v1/visits/visual", response_model=EligibilityResult)
async def visual(body: VisualCheckRequest, principal: PrincipalDep, state: StateDep) -> EligibilityResult:
    """目視確認 (居宅同意取得型): the first visit of a course of care without reading the card; the
    visiting staff name the person by the card's four facts or its insurance number (any facility
    role; the staff member's name and the token are recorded on the visit)."""
    answer = await service.visual_check(_reads(state), principal, body)
    return EligibilityResult.model_validate(answer)


@router.get("/v1/home-courses", response_model=HomeCourses)
def home_courses(
    principal: PrincipalDep,
    session: SessionDep,
    insurer_number: Annotated[InsurerNumber | None, Query()] = None,
    symbol: Annotated[str, Query(max_length=40)] = "",
    number: Annotated[str | None, Query(max_length=40)] = None,
    branch: Annotated[Branch | None, Query()] = None,
) -> HomeCourses:
    """The facility's ongoing courses of care (live home-care consents), each with its first
    visit; ``insurer_number`` + ``number`` (+ ``symbol``, ``branch``): one person's. Every person
    listed is in their access log."""
    only = None
    if insurer_number is not None and number:
        try:
            only = CourseFilter(insurer_number=insurer_number, symbol=symbol, number=number, branch=branch)
        except ValidationError as exc:  # the rule only, never the value (it may be personal)
            if MY_NUMBER_MESSAGE in str(exc):
                raise MyNumberDetectedError() from None
            raise ValidationFailedError("symbol and number are free text of at most 40 characters") from None
    return HomeCourses.model_validate({"courses": service.courses(session, principal, only)})
