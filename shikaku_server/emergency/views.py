"""救急時医療情報閲覧 (emergency reading of drug information without consent)."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.me import EmergencyRequest, MyMedications
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.emergency import service

router = APIRouter(tags=["emergency"])


@router.post("/v1/emergency/medications", response_model=MyMedications)
async def medications(body: EmergencyRequest, principal: PrincipalDep, state: StateDep) -> MyMedications:
    """A physician at an emergency hospital: the drug information (5 years) of the card read at
    the terminal, without consent and without PIN. Needs a reason; rate-limited; logged with
    the ``emergency`` marker in the patient's access log."""
    return await service.read_medications(
        principal, body, transactions=state.transactions, limiter=state.limiter, card_ports=state.card
    )
