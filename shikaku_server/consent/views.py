from __future__ import annotations

from fastapi import APIRouter

from schemas.card import ConsentRecord, ConsentRequest
from shikaku_server.consent import service
from shikaku_server.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/v1/consents", tags=["consent"])


@router.post("", response_model=ConsentRecord)
def give(body: ConsentRequest, principal: PrincipalDep, session: SessionDep) -> ConsentRecord:
    return service.give_consent(session, principal, body)
