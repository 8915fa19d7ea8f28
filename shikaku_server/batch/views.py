from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, BackgroundTasks, status
from sqlalchemy.orm import Session

from schemas.eligibility import BatchCreate, BatchCreated, BatchResult
from shikaku_server.batch import service
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.state import AppState

router = APIRouter(prefix="/v1/eligibility/batches", tags=["batch"])


def _runner(state: AppState) -> dict[str, Any]:
    """``service.run_batch``'s keyword arguments from the app's parts."""
    return {
        "transactions": state.transactions,
        "cache": state.cache,
        "bundles": state.bundles,
        "ttl": state.settings.eligibility_cache_ttl_seconds,
        "lease": dt.timedelta(seconds=state.settings.batch_lease_seconds),
    }


@router.post("", response_model=BatchCreated, status_code=status.HTTP_202_ACCEPTED)
async def create(
    body: BatchCreate, principal: PrincipalDep, state: StateDep, background: BackgroundTasks
) -> BatchCreated:
    principal.require_facility()
    await state.limiter.hit("batch_query", principal, len(body.queries))  # every query counts
    created = await state.transactions.run(lambda session: service.create_batch(session, principal, body))
    # committed before the answer, hence before this task runs (after the answer)
    background.add_task(service.run_batch, created.batch_id, **_runner(state))
    return created


@router.get("/{batch_id}", response_model=BatchResult)
async def get(batch_id: str, principal: PrincipalDep, state: StateDep) -> BatchResult:
    def read(session: Session) -> tuple[BatchResult, bool]:
        return service.get_batch(session, principal, batch_id)

    result, abandoned = await state.transactions.read(read)
    if abandoned:  # its runner died (a crash, a restart): answer it now
        await service.run_batch(batch_id, **_runner(state))
        result, _ = await state.transactions.read(read)
    return result
