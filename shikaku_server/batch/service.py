"""一括照会: store the queries, answer them in the background, serve the results later."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from schemas.eligibility import BatchCreate, BatchCreated, BatchItem, BatchResult, ByNumberQuery, EligibilityResult
from shikaku_server.access_log.service import record_many
from shikaku_server.auth.service import Principal
from shikaku_server.batch.models import Batch
from shikaku_server.cache import Cache
from shikaku_server.database import transaction, utcnow
from shikaku_server.eligibility.service import query_by_number
from shikaku_server.errors import NotFoundError

log = logging.getLogger(__name__)
STALE_PENDING = dt.timedelta(seconds=30)


def create_batch(session: Session, principal: Principal, body: BatchCreate) -> BatchCreated:
    facility = principal.require_facility()
    batch = Batch(
        id=secrets.token_urlsafe(16),
        facility_code=facility,
        token_id=principal.token_id,
        role=principal.role or "",
        label=body.label,
        count=len(body.queries),
        queries=[q.model_dump(mode="json") for q in body.queries],
        status="pending",
    )
    session.add(batch)
    session.flush()
    return BatchCreated(batch_id=batch.id, status="pending", count=batch.count)


def run_batch(factory: sessionmaker[Session], cache: Cache, ttl: int, batch_id: str) -> None:
    """Answer every query of a pending batch (claimed atomically: one runner per batch)."""
    with transaction(factory) as session:
        claimed = session.execute(
            update(Batch).where(Batch.id == batch_id, Batch.status == "pending").values(status="running")
        ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        return
    try:
        with transaction(factory) as session:
            batch = session.get(Batch, batch_id)
            assert batch is not None
            results: list[dict[str, Any]] = []
            entries: list[dict[str, Any]] = []
            for index, raw in enumerate(batch.queries):
                query = ByNumberQuery.model_validate(raw)
                result, insured_id = query_by_number(session, cache, ttl, query)
                results.append(result.model_dump(mode="json"))
                if insured_id is not None:
                    entries.append(
                        {
                            "insured_id": insured_id,
                            "facility_code": batch.facility_code,
                            "role": batch.role,
                            "what": "eligibility",
                            "query_kind": "batch",
                        }
                    )
                if index % 1000 == 999:
                    record_many(session, entries)
                    entries = []
            record_many(session, entries)
            batch.results = results
            batch.status = "done"
            batch.completed_at = utcnow()
    except Exception:
        log.exception("batch failed; it will be retried")
        with transaction(factory) as session:
            session.execute(update(Batch).where(Batch.id == batch_id).values(status="pending"))
        raise


def get_batch(session: Session, principal: Principal, batch_id: str) -> tuple[BatchResult, bool]:
    """The batch as the facility sees it, and whether it is pending for too long (run it now)."""
    facility = principal.require_facility()
    batch = session.get(Batch, batch_id)
    if batch is None or batch.facility_code != facility:
        raise NotFoundError("no such batch for this facility")
    done = batch.status == "done"
    items = None
    if done and batch.results is not None:
        items = [
            BatchItem(index=i, query=ByNumberQuery.model_validate(q), result=EligibilityResult.model_validate(r))
            for i, (q, r) in enumerate(zip(batch.queries, batch.results, strict=True))
        ]
    stale = batch.status == "pending" and utcnow() - batch.created_at > STALE_PENDING
    return BatchResult(
        batch_id=batch.id,
        status="done" if done else "pending",
        count=batch.count,
        created_at=batch.created_at,
        completed_at=batch.completed_at,
        results=items,
    ), stale
