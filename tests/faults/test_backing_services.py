"""A backing service stopped, frozen (SIGSTOP) or killed: ``503 unavailable`` with Retry-After
within the documented bound (docs/operations.md), never a 500, never a hang; recovery without
restarting the server.

Each test runs its own PostgreSQL cluster and Redis server (tests/faults/conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.access_log.service import AccessLogWriter, PostgresEntryInserter
from shikaku_server.app import create_app
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.cache import CacheError, RedisCache, RedisClient, RedisCounters, _RedisPyAsync
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import FACILITY_CODE, auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.faults.conftest import PrivatePG, PrivateRedis
from tests.integration.test_card_api import by_card, register

pytestmark = pytest.mark.slow

# the documented bound (docs/operations.md, "When PostgreSQL or Redis fails"): a request that needs
# a service that is down or frozen is answered 503 within 6 s at worst (a 2 s pool wait, then the
# 4 s statement deadline); asserted with a margin for a loaded CI machine
BOUND = 7.0
_numbers = itertools.count(1000)


def query(number: str | None = None) -> dict[str, Any]:
    return {
        "insurer_number": INSURER_A,
        "symbol": "123",
        "number": number or str(next(_numbers)),  # a new one each time: never cached
        "branch": "00",
        "birth_date": "1980-04-01",
    }


def assert_unavailable(r: Any, elapsed: float) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert elapsed < BOUND, elapsed


def timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    r = call()
    return r, time.monotonic() - start


@pytest.fixture
def server(
    private_pg: PrivatePG, private_redis: PrivateRedis, test_ca: TestCA, trust_anchor_file: Path
) -> Iterator[dict[str, Any]]:
    upgrade(private_pg.url)
    engine = make_engine(private_pg.url)
    with transaction(make_session_factory(engine)) as s:
        tokens = {
            "reception": add_facility(s, code=FACILITY_CODE, name="しかく内科クリニック", role="reception"),
            "spare": add_facility(s, code=FACILITY_CODE, name="しかく内科クリニック", role="physician"),
            "insurer": add_insurer(s, numbers=[INSURER_A], name="全国健康保険協会 東京支部"),
        }
    engine.dispose()
    settings = Settings(database_url=private_pg.url, redis_url=private_redis.url, trust_anchors=str(trust_anchor_file))
    card = test_ca.issue_auth_certificate()
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/v1/uploads?kind=eligibility",
            content=eligibility_csv([person()]),
            headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"},
        )
        assert r.status_code == 200, r.text
        r = register(client, tokens["reception"], card)
        assert r.status_code == 200 and r.json()["status"] == "linked", r.text
        assert by_card(client, tokens["reception"], card).status_code == 200
        # resolve the tokens once (cached per process), so the outage hits the data paths
        for token in ("reception", "insurer"):
            r = client.post("/v1/eligibility/by-number", json=query(), headers=auth(tokens[token]))
            assert r.status_code in (200, 403), r.text
        yield {"client": client, "tokens": tokens, "pg": private_pg, "redis": private_redis, "card": card}


def _paths_needing_postgres(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    """Every path that needs PostgreSQL: an uncached lookup, a card check, an upload, a token not
    yet resolved, a batch, and /readyz."""
    calls = {
        "by-card": lambda: by_card(client, tokens["reception"], card),
        "lookup": lambda: client.post("/v1/eligibility/by-number", json=query(), headers=auth(tokens["reception"])),
        "upload": lambda: client.post(
            "/v1/uploads?kind=eligibility",
            content=eligibility_csv([person(number="99")]),
            headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"},
        ),
        "new token": lambda: client.post("/v1/eligibility/by-number", json=query(), headers=auth(tokens["spare"])),
        "batch": lambda: client.post(
            "/v1/eligibility/batches", json={"queries": [query()]}, headers=auth(tokens["reception"])
        ),
    }
    for name, call in calls.items():
        r, elapsed = timed(call)
        assert r.status_code != 500, name
        assert_unavailable(r, elapsed)
        print(f"{name}: 503 in {elapsed:.2f} s")
    r, elapsed = timed(lambda: client.get("/readyz"))
    assert r.status_code == 503 and r.json()["checks"]["database"] == "unavailable"
    assert elapsed < BOUND


def _works_again(client: TestClient, tokens: dict[str, str]) -> None:
    """Back within 2 s of the service's return, without restarting the server."""
    start = time.monotonic()
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() - start < 2.0, "not ready after the restart"
        time.sleep(0.05)
    print(f"ready again {time.monotonic() - start:.2f} s after the restart")
    r = client.post("/v1/eligibility/by-number", json=query("4567"), headers=auth(tokens["reception"]))
    assert r.status_code == 200, r.text
    r = client.post("/v1/eligibility/by-number", json=query(), headers=auth(tokens["spare"]))
    assert r.status_code == 200, r.text


def test_postgres_stopped_is_503_then_recovers(server: dict[str, Any]) -> None:
    client, tokens, pg = server["client"], server["tokens"], server["pg"]
    pg.stop()
    _paths_needing_postgres(client, tokens, server["card"])
    pg.start()
    _works_again(client, tokens)


def test_postgres_frozen_is_503_within_the_bound_then_recovers(server: dict[str, Any]) -> None:
    client, tokens, pg = server["client"], server["tokens"], server["pg"]
    pg.freeze()
    try:
        _paths_needing_postgres(client, tokens, server["card"])
    finally:
        pg.cont()
    _works_again(client, tokens)


def test_redis_frozen_or_killed_costs_lookups_little_and_challenges_are_503(server: dict[str, Any]) -> None:
    """The cache fails open (lookups answered from PostgreSQL) and a short circuit breaker keeps a
    frozen Redis from adding its timeout to every request; challenges (no fallback) are 503."""
    client, tokens, rds = server["client"], server["tokens"], server["redis"]

    def lookup() -> Any:
        return client.post("/v1/eligibility/by-number", json=query("4567"), headers=auth(tokens["reception"]))

    rds.freeze()
    try:
        start = time.monotonic()
        for _ in range(20):
            r = lookup()
            assert r.status_code == 200, r.text
            assert r.json()["validity"] == 1
        assert time.monotonic() - start < 3.0  # was 20 × 2 s
        r, elapsed = timed(lambda: client.post("/v1/card/challenges", headers=auth(tokens["reception"])))
        assert_unavailable(r, elapsed)
        assert elapsed < 1.5
        r, elapsed = timed(lambda: client.get("/readyz"))
        assert r.status_code == 503 and r.json()["checks"]["cache"] == "unavailable" and elapsed < 1.5
    finally:
        rds.cont()
    rds.kill()
    r, elapsed = timed(lambda: client.post("/v1/card/challenges", headers=auth(tokens["reception"])))
    assert_unavailable(r, elapsed)
    assert lookup().status_code == 200
    rds.start()
    start = time.monotonic()  # the breaker lets a probe through within its 2 s (+ 0.5 s probe timeout)
    while client.post("/v1/card/challenges", headers=auth(tokens["reception"])).status_code != 200:
        # bound: breaker + probe + margin for a loaded 2-core CI machine (seen 3.04 s there)
        assert time.monotonic() - start < 6.0, "challenges not back after Redis restarted"
        time.sleep(0.05)
    print(f"challenges again {time.monotonic() - start:.2f} s after the Redis restart")
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("client_kind", ["unix socket", "redis-py asyncio"])
def test_redis_is_never_waited_for_on_the_event_loop(private_redis: PrivateRedis, client_kind: str) -> None:
    """Through a ``unix://`` URL (the small client) and through redis-py's asyncio client (what
    ``rediss://`` URLs use; TLS itself is not tested here) the cache talks to Redis on the event
    loop: while Redis is frozen another task keeps running (the blocking client used to stop the
    loop for its timeout), and a script Redis does not know yet is loaded (NOSCRIPT)."""
    if client_kind == "unix socket":
        client = RedisClient(private_redis.unix_url)
    else:
        client = RedisClient(private_redis.url)
        client.aio = _RedisPyAsync(private_redis.url, 0.5)
    cache = RedisCache(client)

    async def scenario() -> int:
        await cache.set_versioned("ns", 0, "k", b"v", 60)
        assert await cache.get_versioned("ns", "k") == (0, b"v")  # EVALSHA after a NOSCRIPT
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        private_redis.freeze()
        try:
            with pytest.raises(CacheError):
                await cache.get_versioned("ns", "k")
        finally:
            private_redis.cont()
            stop.set()
            await task
        return ticks

    try:
        ticks = asyncio.run(scenario())
    finally:
        client.close()
    assert ticks >= 10  # the loop ran while the cache waited for the frozen Redis
    redis.Redis.from_url(private_redis.url).ping()


def test_access_log_writer_gives_up_on_a_frozen_database_and_keeps_its_entries(server: dict[str, Any]) -> None:
    """The group-commit writer's insert (a raw DBAPI statement) has the statement deadline too:
    a flush during a freeze returns within the bound, the entry stays queued, and is written
    once PostgreSQL is back."""
    pg: PrivatePG = server["pg"]
    engine = make_engine(pg.url)
    factory = make_session_factory(engine)
    with factory() as s:
        insured_id = s.execute(sa.text("SELECT id FROM insured")).scalar_one()
    writer = AccessLogWriter(PostgresEntryInserter(engine), interval=3600)  # flushed by hand below
    try:
        writer.submit({"insured_id": insured_id, "facility_code": FACILITY_CODE, "role": "reception", "what": "x"})
        pg.freeze()
        try:
            _, elapsed = timed(writer.flush)
        finally:
            pg.cont()
        assert elapsed < BOUND
        with factory() as s:
            assert s.execute(sa.text("SELECT count(*) FROM access_log WHERE what = 'x'")).scalar_one() == 0
        writer.flush()
        with factory() as s:
            assert s.execute(sa.text("SELECT count(*) FROM access_log WHERE what = 'x'")).scalar_one() == 1
    finally:
        writer.close()
        engine.dispose()


def test_the_counters_of_several_windows_leave_in_one_command_each_with_its_amount_and_ttl(
    private_redis: PrivateRedis,
) -> None:
    """A lookup's volume counters (+1, a minute) and its failure counters (read: +0, an hour)
    are one script call; each key gets its own amount and time to live, and after a NOSCRIPT the
    windows are counted once, however many ``Hit``s read the reply."""
    direct = redis.Redis(port=private_redis.port)
    client = RedisClient(private_redis.unix_url, prefix="p:")
    counters = RedisCounters(client)
    direct.set("p:f1", 4)

    async def scenario() -> tuple[list[int], list[int], int]:
        await client.call(b"PING")
        try:
            pending = counters.incr_windows_nowait([(["v1", "v2"], 1, 60), (["f1"], 0, 3600)])
            assert pending is not None
            first = await pending.counts()
            direct.script_flush()
            pending = counters.incr_windows_nowait([(["v1", "v2"], 2, 60), (["f1"], 0, 3600)])
            assert pending is not None
            again = [await pending.counts(), await pending.counts()]  # two readers of one reply
            assert again[0] == again[1]
        finally:
            client.close()
        return first, again[0], int(direct.info("commandstats")["cmdstat_evalsha"]["calls"])

    first, after_flush, evalsha = asyncio.run(scenario())
    assert first == [1, 1, 4]
    assert after_flush == [3, 3, 4]  # counted once after the NOSCRIPT, not once per reader
    assert 55 <= direct.ttl("p:v1") <= 60 and 55 <= direct.ttl("p:v2") <= 60
    assert 3590 <= direct.ttl("p:f1") <= 3600
    assert int(direct.get("p:f1") or 0) == 4  # a read adds nothing
    assert evalsha >= 2


def test_rate_counters_go_by_the_scripts_sha_and_load_it_again_after_a_redis_restart(
    private_redis: PrivateRedis,
) -> None:
    """The hot path's counters (sent with the lookup's cache read, one round trip) name their
    script by its SHA; a Redis that was restarted answers NOSCRIPT, and the counters are then
    counted once with the script's text (never twice: NOSCRIPT ran nothing) and by SHA again."""
    direct = redis.Redis(port=private_redis.port)
    client = RedisClient(private_redis.unix_url)  # the small client: the only one that pipelines
    counters = RedisCounters(client)

    def calls(command: str) -> int:
        return int(direct.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))

    async def scenario() -> list[tuple[list[int], int, int]]:
        await client.call(b"PING")  # the connection open (the hot path sends on an open one)
        seen = []
        try:
            for flush in (False, False, True):
                if flush:
                    direct.script_flush()  # what a restart of Redis does to its scripts
                pending = counters.incr_windows_nowait([(["rl:a", "rl:b"], 1, 60)])
                assert pending is not None
                seen.append((await pending.counts(), calls("evalsha"), calls("eval")))
        finally:
            client.close()
        return seen

    assert asyncio.run(scenario()) == [
        ([1, 1], 2, 1),  # unknown script: NOSCRIPT, then once more by SHA (NOSCRIPT) and by its text
        ([2, 2], 3, 1),  # by its SHA from then on
        ([3, 3], 5, 2),  # after the flush the same: counted once (NOSCRIPT ran nothing)
    ]
