"""一括照会: store the queries, answer them in the background, serve the results later.

Answered on the event loop by ``answer_by_number`` (the single lookup's own path: same cache,
same reader); database writes in a worker thread. A runner **claims** a batch (``running``, its
``owner`` token, a ``lease_until``) and answers it in chunks: each chunk's results and
access-log entries commit together with a renewed lease, and only while the runner still owns
the batch (a fenced update), so a runner that lost its batch to another writes nothing. A runner
that dies (a crash, SIGKILL) stops renewing; once its lease has passed, any process takes the
batch over and continues after the last committed chunk. Every server process runs a
``BatchRecovery`` task that does so at start-up and then every half lease, and a ``GET`` of
such a batch runs it at once. So a batch always completes, and each of its queries is logged
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from schemas.eligibility import BatchCreate, BatchCreated, BatchItem, BatchResult, ByNumberQuery, EligibilityResult
from shikaku_server.access_log.service import record_many
from shikaku_server.auth.service import Principal
from shikaku_server.batch.models import Batch
from shikaku_server.cache import Cache
from shikaku_server.database import Transactions, utcnow
from shikaku_server.eligibility.service import BundleReader, answer_by_number
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


async def run_batch(
    batch_id: str,
    *,
    transactions: Transactions,
    cache: Cache,
    bundles: BundleReader,
    ttl: int,
    lease: dt.timedelta = LEASE,
    now: Clock = utcnow,
) -> bool:
    """Claim the batch if nobody holds it, answer its remaining queries (``answer_by_number``,
    the lookup's own path), and say whether this call completed it. Failures are logged; the
    batch is then free again after one lease."""
    owner = secrets.token_urlsafe(12)

    def claim(session: Session) -> tuple[list[Any], str, str, list[dict[str, Any]]] | None:
        claimed = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, _free(now()))
            .values(status="running", owner=owner, lease_until=now() + lease)
        ).rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            return None
        batch = session.get(Batch, batch_id)
        assert batch is not None
        # results committed by an earlier runner are kept
        return list(batch.queries), batch.facility_code, batch.role, list(batch.results or [])

    claimed = await transactions.run(claim)
    if claimed is None:
        return False
    queries, facility, role, results = claimed
    chunk = _Chunk(transactions, batch_id, owner, facility, role, lease, now)
    try:
        while len(results) < len(queries):
            await chunk.run(queries, results, cache=cache, bundles=bundles, ttl=ttl)
        return True
    except _LostLease:
        log.warning("batch taken over by another runner; this one stops", extra={"batch_id": batch_id})
        return False
    except Exception:
        log.exception("batch failed; it is retried after its lease", extra={"batch_id": batch_id})

        def release(session: Session) -> None:
            session.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.owner == owner)
                .values(status="pending", owner=None, lease_until=now() + lease)
            )

        await transactions.run(release)
        return False


@dataclass(frozen=True)
class _Chunk:
    transactions: Transactions
    batch_id: str
    owner: str
    facility: str
    role: str
    lease: dt.timedelta
    now: Clock

    async def run(
        self, queries: list[Any], results: list[dict[str, Any]], *, cache: Cache, bundles: BundleReader, ttl: int
    ) -> None:
        """Answer queries for up to a third of the lease, then commit them (results, log entries
        and a renewed lease) if this runner still owns the batch; ``results`` grows only on commit."""
        until = time.monotonic() + self.lease.total_seconds() / 3
        done: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        entry = {"facility_code": self.facility, "role": self.role, "query_kind": "batch"}
        for raw in queries[len(results) :]:
            answer = await answer_by_number(ByNumberQuery.model_validate(raw), cache=cache, bundles=bundles, ttl=ttl)
            done.append(answer.result)
            if answer.insured_id is not None:
                entries.append({**entry, "insured_id": answer.insured_id, "what": "eligibility"})
            # a guessed birth date shows in the victim's log, as for a single lookup
            entries.extend({**entry, "insured_id": i, "what": "eligibility_no_match"} for i in answer.mismatched)
            if time.monotonic() >= until:
                break
        complete = len(results) + len(done) >= len(queries)
        await self.transactions.run(lambda session: self._commit(session, results + done, entries, complete))
        results += done

    def _commit(
        self, session: Session, results: list[dict[str, Any]], entries: list[dict[str, Any]], complete: bool
    ) -> None:
        for start in range(0, len(entries), 1000):
            record_many(session, entries[start : start + 1000])
        values: dict[str, Any] = {"results": results, "lease_until": self.now() + self.lease}
        if complete:
            values |= {"status": "done", "completed_at": utcnow(), "owner": None, "lease_until": None}
        kept = session.execute(
            update(Batch)
            .where(Batch.id == self.batch_id, Batch.owner == self.owner, Batch.status == "running")
            .values(**values)
        ).rowcount  # type: ignore[attr-defined]
        if kept != 1:
            raise _LostLease  # rolls this chunk back: the new owner answers it


async def recover(
    *,
    transactions: Transactions,
    cache: Cache,
    bundles: BundleReader,
    ttl: int,
    lease: dt.timedelta = LEASE,
    now: Clock = utcnow,
) -> list[str]:
    """Run every abandoned batch (its runner died); the ids this call completed."""

    def abandoned(session: Session) -> list[str]:
        return list(session.execute(select(Batch.id).where(_abandoned(now())).order_by(Batch.created_at)).scalars())

    completed = []
    for batch_id in await transactions.read(abandoned):
        ran = await run_batch(
            batch_id, transactions=transactions, cache=cache, bundles=bundles, ttl=ttl, lease=lease, now=now
        )
        if ran:
            completed.append(batch_id)
    return completed


class BatchRecovery:
    """The process's recovery task on the app's event loop: ``recover`` at start-up, then
    every half lease."""

    def __init__(
        self, *, transactions: Transactions, cache: Cache, bundles: BundleReader, ttl: int, lease: dt.timedelta
    ) -> None:
        self.transactions, self.cache, self.bundles, self.ttl, self.lease = transactions, cache, bundles, ttl, lease
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="batch-recovery")

    async def _run(self) -> None:
        while True:
            try:
                await recover(
                    transactions=self.transactions,
                    cache=self.cache,
                    bundles=self.bundles,
                    ttl=self.ttl,
                    lease=self.lease,
                )
            except Exception:  # the database may be down for a while: try again next time
                log.exception("batch recovery failed; retrying")
            await asyncio.sleep(self.lease.total_seconds() / 2)

    async def close(self) -> None:
        """Stop (a batch in progress keeps its lease, after which another process finishes it)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def get_batch(session: Session, principal: Principal, batch_id: str, now: Clock = utcnow) -> tuple[BatchResult, bool]:
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
