"""一括照会: store the queries, answer them in the background, serve the results later.

A runner **claims** a batch (``running``, its ``owner`` token, a ``lease_until``) and answers it
in chunks: each chunk's results and access-log entries commit together with a renewed lease, and
only while the runner still owns the batch (a fenced update), so a runner that lost its batch to
another writes nothing. A runner that dies (a crash, SIGKILL) stops renewing; once its lease has
passed, any process takes the batch over and continues after the last committed chunk. Every
server process runs a ``BatchRecovery`` thread that does so at start-up and then every half lease,
and a ``GET`` of such a batch runs it at once. So a batch always completes, and each of its
queries is logged once.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, or_, select, update
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
STALE_PENDING = dt.timedelta(seconds=30)  # a pending batch nobody claimed this long: its creator died
LEASE = dt.timedelta(seconds=30)
Clock = Callable[[], dt.datetime]


class _LostLease(Exception):
    pass


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


def _free(now: dt.datetime) -> Any:
    """Not done, and nobody holds it: no lease, or one that has passed."""
    return and_(
        Batch.status.in_(("pending", "running")),
        or_(Batch.lease_until.is_(None), Batch.lease_until < now),
    )


def _abandoned(now: dt.datetime) -> Any:
    """Free, and not a fresh batch its creating process is about to claim."""
    return and_(
        _free(now),
        or_(Batch.status == "running", Batch.lease_until.is_not(None), Batch.created_at < now - STALE_PENDING),
    )


def run_batch(
    factory: sessionmaker[Session],
    cache: Cache,
    ttl: int,
    batch_id: str,
    *,
    lease: dt.timedelta = LEASE,
    now: Clock = utcnow,
) -> bool:
    """Claim the batch if nobody holds it, answer its remaining queries, and say whether this
    call completed it. Failures are logged; the batch is then free again after one lease."""
    owner = secrets.token_urlsafe(12)
    with transaction(factory) as session:
        claimed = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, _free(now()))
            .values(status="running", owner=owner, lease_until=now() + lease)
        ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        return False
    try:
        with factory() as session:
            batch = session.get(Batch, batch_id)
            assert batch is not None
            queries, facility, role = list(batch.queries), batch.facility_code, batch.role
            results: list[dict[str, Any]] = list(batch.results or [])  # committed by an earlier runner
        while True:
            _run_chunk(factory, cache, ttl, batch_id, owner, queries, results, facility, role, lease, now)
            if len(results) >= len(queries):
                return True
    except _LostLease:
        log.warning("batch taken over by another runner; this one stops", extra={"batch_id": batch_id})
        return False
    except Exception:
        log.exception("batch failed; it is retried after its lease", extra={"batch_id": batch_id})
        with transaction(factory) as session:
            session.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.owner == owner)
                .values(status="pending", owner=None, lease_until=now() + lease)
            )
        return False


def _run_chunk(
    factory: sessionmaker[Session],
    cache: Cache,
    ttl: int,
    batch_id: str,
    owner: str,
    queries: list[Any],
    results: list[dict[str, Any]],
    facility: str,
    role: str,
    lease: dt.timedelta,
    now: Clock,
) -> None:
    """Answer queries for up to a third of the lease, then commit them (results, log entries and
    a renewed lease) if this runner still owns the batch; ``results`` grows only on commit."""
    until = time.monotonic() + lease.total_seconds() / 3
    done: list[dict[str, Any]] = []
    with transaction(factory) as session:
        entries: list[dict[str, Any]] = []
        for raw in queries[len(results) :]:
            result, insured_id, mismatched = query_by_number(session, cache, ttl, ByNumberQuery.model_validate(raw))
            done.append(result.model_dump(mode="json"))
            entry = {"facility_code": facility, "role": role, "query_kind": "batch"}
            if insured_id is not None:
                entries.append({**entry, "insured_id": insured_id, "what": "eligibility"})
            # a guessed birth date shows in the victim's log, as for a single lookup
            entries.extend({**entry, "insured_id": i, "what": "eligibility_no_match"} for i in mismatched)
            if len(entries) >= 1000:
                record_many(session, entries)
                entries = []
            if time.monotonic() >= until:
                break
        record_many(session, entries)
        complete = len(results) + len(done) >= len(queries)
        values: dict[str, Any] = {"results": results + done, "lease_until": now() + lease}
        if complete:
            values |= {"status": "done", "completed_at": utcnow(), "owner": None, "lease_until": None}
        kept = session.execute(
            update(Batch).where(Batch.id == batch_id, Batch.owner == owner, Batch.status == "running").values(**values)
        ).rowcount  # type: ignore[attr-defined]
        if kept != 1:
            raise _LostLease  # rolls this chunk back: the new owner answers it
    results += done


def recover(
    factory: sessionmaker[Session],
    cache: Cache,
    ttl: int,
    *,
    lease: dt.timedelta = LEASE,
    now: Clock = utcnow,
    stop: threading.Event | None = None,
) -> list[str]:
    """Run every abandoned batch (its runner died); the ids this call completed."""
    with factory() as session:
        ids = list(session.execute(select(Batch.id).where(_abandoned(now())).order_by(Batch.created_at)).scalars())
    completed = []
    for batch_id in ids:
        if stop is not None and stop.is_set():
            break
        if run_batch(factory, cache, ttl, batch_id, lease=lease, now=now):
            completed.append(batch_id)
    return completed


class BatchRecovery:
    """The process's recovery thread: ``recover`` at start-up, then every half lease."""

    def __init__(self, factory: sessionmaker[Session], cache: Cache, ttl: int, lease: dt.timedelta) -> None:
        self.factory, self.cache, self.ttl, self.lease = factory, cache, ttl, lease
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="batch-recovery", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                recover(self.factory, self.cache, self.ttl, lease=self.lease, stop=self.stopping)
            except Exception:  # the database may be down for a while: try again next time
                log.exception("batch recovery failed; retrying")
            self.stopping.wait(self.lease.total_seconds() / 2)

    def close(self) -> None:
        """Stop after the batch in progress, if any (its lease then lets another process finish it)."""
        self.stopping.set()
        self.thread.join(timeout=5)


def get_batch(
    session: Session, principal: Principal, batch_id: str, now: Clock = utcnow
) -> tuple[BatchResult, bool]:
    """The batch as the facility sees it, and whether it is abandoned (run it now)."""
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
    at = now()
    held = batch.lease_until is not None and batch.lease_until >= at
    fresh = batch.status == "pending" and batch.lease_until is None and at - batch.created_at <= STALE_PENDING
    abandoned = not done and not held and not fresh
    return BatchResult(
        batch_id=batch.id,
        status="done" if done else "pending",
        count=batch.count,
        created_at=batch.created_at,
        completed_at=batch.completed_at,
        results=items,
    ), abandoned
