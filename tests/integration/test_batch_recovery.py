"""A batch whose runner died (a crash, a kill) is taken over and always completes (both backends)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from schemas.eligibility import BatchCreate
from shikaku_server.app import create_app
from shikaku_server.auth.service import Principal
from shikaku_server.batch import service
from shikaku_server.batch.models import Batch
from shikaku_server.cache import InMemoryCache
from shikaku_server.config import Settings
from shikaku_server.database import ThreadedTransactions, transaction, utcnow
from shikaku_server.eligibility.reader import SQLBundleReader
from shikaku_server.eligibility.service import answer_by_number
from tests.conftest import FACILITY_CODE, auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.test_upload_crash import _free_port, _start

QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}


def runner(factory: Any) -> dict[str, Any]:
    """``run_batch``'s and ``recover``'s ports, through SQLAlchemy (either backend)."""
    transactions = ThreadedTransactions(factory)
    return {
        "transactions": transactions,
        "cache": InMemoryCache(),
        "bundles": SQLBundleReader(transactions),
        "ttl": 60,
    }


def load_people(client: TestClient, token: str, n: int = 1) -> None:
    rows = [person(number=str(4567 + i), name=f"試験 {i}") for i in range(n)]
    headers = {**auth(token), "Content-Type": "text/csv"}
    r = client.post("/v1/uploads?kind=eligibility", content=eligibility_csv(rows), headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] == n, r.text


def left_running(session_factory: Any, token_id: int, queries: list[dict[str, Any]], **state: Any) -> str:
    """The crash state: a batch row its (dead) runner had claimed, as the database keeps it."""
    principal = Principal(token_id, "facility", FACILITY_CODE, "reception", frozenset())
    with transaction(session_factory) as s:
        created = service.create_batch(s, principal, BatchCreate.model_validate({"queries": queries}))
        s.execute(sa.update(Batch).where(Batch.id == created.batch_id).values(status="running", **state))
    return created.batch_id


def reception_token_id(session_factory: Any) -> int:
    with session_factory() as s:
        return int(s.execute(sa.text("SELECT min(id) FROM api_token WHERE role = 'reception'")).scalar_one())


def status(session_factory: Any, batch_id: str) -> str:
    with session_factory() as s:
        return str(s.execute(sa.select(Batch.status).where(Batch.id == batch_id)).scalar_one())


def batch_log_entries(session_factory: Any) -> int:
    with session_factory() as s:
        return int(s.execute(sa.text("SELECT count(*) FROM access_log WHERE query_kind = 'batch'")).scalar_one())


def test_a_batch_left_running_by_a_dead_runner_completes_at_start_up(
    settings: Settings, tokens: dict[str, str], session_factory: Any
) -> None:
    with TestClient(create_app(settings)) as c:
        load_people(c, tokens["insurer"])
    # what the old server left behind when killed mid-batch: running, no lease
    batch_id = left_running(session_factory, reception_token_id(session_factory), [QUERY] * 3)
    with TestClient(create_app(settings)) as c:  # the restart
        deadline = time.monotonic() + 30
        got: dict[str, Any] = {}
        while time.monotonic() < deadline:
            got = c.get(f"/v1/eligibility/batches/{batch_id}", headers=auth(tokens["reception"])).json()
            if got["status"] == "done":
                break
            time.sleep(0.05)
    assert got["status"] == "done", got
    assert [item["result"]["validity"] for item in got["results"]] == [1, 1, 1]
    assert batch_log_entries(session_factory) == 3


def test_a_live_runners_batch_is_taken_over_only_once_its_lease_has_passed(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    load_people(client, tokens["insurer"])
    now = utcnow()
    lease = dt.timedelta(seconds=30)
    batch_id = left_running(
        session_factory,
        reception_token_id(session_factory),
        [QUERY] * 2,
        owner="another-process",
        lease_until=now + dt.timedelta(seconds=10),
    )
    ports = runner(session_factory)
    # its owner is alive (its lease runs): nobody else runs it, not a GET either
    assert asyncio.run(service.recover(**ports, lease=lease, now=lambda: now)) == []
    assert not asyncio.run(service.run_batch(batch_id, **ports, lease=lease, now=lambda: now))
    r = client.get(f"/v1/eligibility/batches/{batch_id}", headers=auth(tokens["reception"]))
    assert r.json()["status"] == "pending" and status(session_factory, batch_id) == "running"
    # its owner stopped renewing: the lease passes and another runner takes it over
    later = now + dt.timedelta(seconds=11)
    assert asyncio.run(service.recover(**ports, lease=lease, now=lambda: later)) == [batch_id]
    assert status(session_factory, batch_id) == "done"
    assert batch_log_entries(session_factory) == 2


def test_a_runner_that_lost_its_lease_writes_nothing(
    settings: Settings, tokens: dict[str, str], session_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(settings)) as c:  # stopped before the batch exists: no recovery thread
        load_people(c, tokens["insurer"])
    batch_id = left_running(session_factory, reception_token_id(session_factory), [QUERY] * 2, owner="dead")
    calls: list[int] = []

    async def slow_query(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            # while this runner works, another one takes the batch over (it thought this one dead)
            with transaction(session_factory) as s:
                s.execute(sa.update(Batch).where(Batch.id == batch_id).values(owner="usurper"))
        calls.append(1)
        return await answer_by_number(*args, **kwargs)

    monkeypatch.setattr(service, "answer_by_number", slow_query)
    assert not asyncio.run(service.run_batch(batch_id, **runner(session_factory)))
    assert status(session_factory, batch_id) == "running"  # the usurper's, untouched
    assert batch_log_entries(session_factory) == 0  # the loser's log entries rolled back


@contextlib.contextmanager
def commits_held(settings: Settings) -> Iterator[None]:
    """Hold back every batch commit (a chunk writes ``access_log``) until the block ends, so the
    kill below lands mid-batch however fast the machine: PostgreSQL locks ``access_log`` against
    writes (from before the batch exists: no race); SQLite takes the database's write lock (WAL:
    readers go on), which must wait for the claim, so a runner that answers 10,000 queries within
    the poll of ``wait_until_running`` (5 ms) could still finish first."""
    url = settings.database_url
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            con.rollback()
            con.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("LOCK TABLE access_log IN EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def wait_until_running(session_factory: Any, batch_id: str) -> None:
    deadline = time.monotonic() + 30
    while status(session_factory, batch_id) == "pending" and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.slow
def test_server_killed_mid_batch_the_next_one_completes_it(
    settings: Settings, tokens: dict[str, str], session_factory: Any
) -> None:
    with TestClient(create_app(settings)) as c:
        load_people(c, tokens["insurer"], 50)
    queries = [QUERY | {"number": str(4567 + i % 100)} for i in range(10_000)]  # half of them match
    port = _free_port()
    sqlite = settings.database_url.startswith("sqlite")
    os.environ["SHIKAKU_BATCH_LEASE_SECONDS"] = "3"
    try:
        proc = _start(settings, port)
        with contextlib.ExitStack() as held:
            if not sqlite:  # PostgreSQL: held from before the batch exists (it is not logged)
                held.enter_context(commits_held(settings))
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/eligibility/batches",
                json={"queries": queries},
                headers=auth(tokens["reception"]),
                timeout=30,
            )
            assert r.status_code == 202, r.text
            batch_id = r.json()["batch_id"]
            wait_until_running(session_factory, batch_id)  # the runner has claimed it
            if sqlite:  # SQLite: the write lock would block the claim, so it is taken after it
                held.enter_context(commits_held(settings))
            # the crash, while the runner is answering or waiting to commit its first chunk
            assert status(session_factory, batch_id) == "running"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert status(session_factory, batch_id) == "running"
        proc = _start(settings, port)
        try:
            deadline = time.monotonic() + 120
            got: dict[str, Any] = {}
            while time.monotonic() < deadline:
                got = httpx.get(
                    f"http://127.0.0.1:{port}/v1/eligibility/batches/{batch_id}",
                    headers=auth(tokens["reception"]),
                    timeout=120,
                ).json()
                if got["status"] == "done":
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        os.environ.pop("SHIKAKU_BATCH_LEASE_SECONDS", None)
    assert got["status"] == "done"
    validity = [item["result"]["validity"] for item in got["results"]]
    assert len(validity) == 10_000 and validity.count(1) == 5_000
    # every matched query logged exactly once (the dead runner's uncommitted part rolled back)
    assert batch_log_entries(session_factory) == 5_000
