from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, BackgroundTasks, status

from schemas.eligibility import BatchCreate, BatchCreated, BatchResult
from shikaku_server.batch import service
from shikaku_server.deps import PrincipalDep, SessionDep, StateDep

router = APIRouter(prefix="/v1/eligibility/batches", tags=["batch"])


@router.post("", response_model=BatchCreated, status_code=status.HTTP_202_ACCEPTED)
def create(
    body: BatchCreate, principal: PrincipalDep, session: SessionDep, state: StateDep, background: BackgroundTasks
) -> BatchCreated:
    principal.require_facility()
    state.limiter.hit("batch_query", principal, len(body.queries))  # every query counts
    created = service.create_batch(session, principal, body)
    # committed by ``SessionDep`` before the answer, hence before this task runs (after the answer)
    background.add_task(
        service.run_batch,
        state.session_factory,
        state.cache,
        state.settings.eligibility_cache_ttl_seconds,
        created.batch_id,
        lease=dt.timedelta(seconds=state.settings.batch_lease_seconds),
    )
    return created


@router.get("/{batch_id}", response_model=BatchResult)
def get(batch_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep) -> BatchResult:
    result, abandoned = service.get_batch(session, principal, batch_id)
    if abandoned:  # its runner died (a crash, a restart): answer it now
        service.run_batch(
            state.session_factory,
            state.cache,
            state.settings.eligibility_cache_ttl_seconds,
            batch_id,
            lease=dt.timedelta(seconds=state.settings.batch_lease_seconds),
        )
        session.expire_all()
        result, _ = service.get_batch(session, principal, batch_id)
    return result
