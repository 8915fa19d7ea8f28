from __future__ import annotations

from fastapi import APIRouter

from schemas.card import Checkups, Medications
from schemas.procedures import Procedures
from shikaku_server.clinical import service
from shikaku_server.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/v1/visits", tags=["clinical"])


@router.get("/{visit_id}/medications", response_model=Medications)
def medications(visit_id: str, principal: PrincipalDep, session: SessionDep) -> Medications:
    return service.medications(session, principal, visit_id)


@router.get("/{visit_id}/checkups", response_model=Checkups)
def checkups(visit_id: str, principal: PrincipalDep, session: SessionDep) -> Checkups:
    return service.checkups(session, principal, visit_id)


@router.get("/{visit_id}/procedures", response_model=Procedures)
def procedures(visit_id: str, principal: PrincipalDep, session: SessionDep) -> Procedures:
    """診療・手術 information under the patient's clinical consent (physician, dentist)."""
    return service.procedures(session, principal, visit_id)
