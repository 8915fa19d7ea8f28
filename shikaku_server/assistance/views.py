"""医療扶助 by-number queries (docs/assistance.md): a facility token; thin over the service."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.assistance import AssistanceMonth, AssistanceMonthQuery, AssistanceQuery, AssistanceResult
from shikaku_server.assistance import service
from shikaku_server.deps import PrincipalDep, SessionDep
from shikaku_server.eligibility.service import today_jst

router = APIRouter(prefix="/v1/assistance", tags=["assistance"])


@router.post("/by-number", response_model=AssistanceResult)
def by_number(query: AssistanceQuery, principal: PrincipalDep, session: SessionDep) -> AssistanceResult:
    """The recipient's 医療券/調剤券 of the month for this facility, or 未委託 (``not_delegated``)."""
    facility = principal.require_facility()
    return service.answer(session, query, facility_code=facility, role=principal.role or "", today=today_jst())


@router.post("/by-month", response_model=AssistanceMonth)
def by_month(query: AssistanceMonthQuery, principal: PrincipalDep, session: SessionDep) -> AssistanceMonth:
    """Every recipient with a ticket of the 診療年月 for this facility (the XML 一括照会 ``OQSmutic01``)."""
    facility = principal.require_facility()
    return service.answer_month(session, query, facility_code=facility, role=principal.role or "", today=today_jst())
