"""The Sentinel-aware cache (``redis+sentinel://`` URLs): commands follow a failover by themselves,
challenges stay single-use through it. A master, a replica and one sentinel on loopback ports."""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from shikaku_server.redis_sentinel import SentinelRedisClient, parse_sentinel_url
from shikaku_server.stores import make_stores

T = TypeVar("T")

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    assert REDIS_SERVER, "redis-server is needed"
    master, replica, sentinel = _free_port(), _free_port(), _free_port()
    procs = []
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    procs.append(subprocess.Popen([REDIS_SERVER, "--port", str(master), *common], stdout=subprocess.DEVNULL))
    procs.append(
        subprocess.Popen(
            [REDIS_SERVER, "--port", str(replica), "--replicaof", "127.0.0.1", str(master), *common],
            stdout=subprocess.DEVNULL,
        )
    )
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor t 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds t 1000\nsentinel failover-timeout t 5000\n"
    )
    procs.append(subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
    try:
        _wait(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up")
        _wait(lambda: int(redis.Redis(port=sentinel).execute_command("SENTINEL", "MASTER", "t")[b"num-slaves"]) >= 1)
        yield f"redis+sentinel://127.0.0.1:{sentinel}/t/3", master, replica
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        gc.collect()  # what is left unclosed warns here, under this module's filters, not in a later test


def test_url_parsing_names_the_rule() -> None:
    cfg = parse_sentinel_url("redis+sentinel://:s3cret@a:26379,b:26380/svc/2")
    assert cfg.sentinels == (("a", 26379), ("b", 26380))
    assert (cfg.service, cfg.db, cfg.password) == ("svc", 2, "s3cret")
    assert parse_sentinel_url("redis+sentinel://a:1/svc").db == 0
    with pytest.raises(ValueError, match="host:port"):
        parse_sentinel_url("redis+sentinel://a/svc/0")
    with pytest.raises(ValueError, match="service"):
        parse_sentinel_url("redis+sentinel://a:1/")


def test_cache_follows_a_failover_and_challenges_stay_single_use(sentinel_setup: tuple[str, int, int]) -> None:
    url, master, replica = sentinel_setup
    stores = make_stores(url)
    client = stores.client
    assert isinstance(client, SentinelRedisClient)
    cache, challenges = stores.cache, stores.challenges
    assert cache.ping()

    def run(main: Coroutine[Any, Any, T]) -> T:
        async def closing() -> T:
            try:
                return await main
            finally:
                await client.aclose()  # this loop's connections

        return asyncio.run(closing())

    async def before() -> tuple[tuple[bytes | None, bool], tuple[int, bytes | None]]:
        await challenges.put_new("challenge:a", b"x", 60)
        await challenges.put_new("challenge:b", b"y", 60)
        taken = await challenges.take("challenge:a", 60)  # consumed before the failover
        await challenges.put_new("challenge:c", b"z", 60)
        await cache.set_versioned("ns", 0, "k", b"v", 60)
        return taken, await cache.get_versioned("ns", "k")

    assert run(before()) == ((b"x", False), (0, b"v"))
    # the writes were acknowledged by the replica before the calls returned (WAIT)
    assert redis.Redis(port=replica, db=3).get("shikaku:challenge:c") == b"z"
    assert redis.Redis(port=replica, db=3).get("shikaku:challenge:a") is None

    sentinel = redis.Redis(port=int(url.split(":")[2].split("/")[0]))
    _wait(lambda: sentinel.execute_command("SENTINEL", "FAILOVER", "t"))  # NOGOODSLAVE until it has looked
    _wait(lambda: redis.Redis(port=replica).info("replication")["role"] == "master")
    # the window the module's docstring names: until the sentinel demotes the old master, a
    # connection still open to it writes there; once demoted, every write reaches the new master
    _wait(lambda: redis.Redis(port=master).info("replication")["role"] == "slave")

    def usable() -> bool:
        try:
            run(challenges.put_new("challenge:d", b"w", 60))
        except Exception:
            return False
        return True

    _wait(usable)
    assert redis.Redis(port=replica, db=3).get("shikaku:challenge:d") == b"w"  # on the new master

    async def after() -> list[Any]:
        return [
            await challenges.take("challenge:a", 60),  # still consumed: single use survived the failover
            await challenges.take("challenge:b", 60),
            await challenges.take("challenge:b", 60),
            await cache.get_versioned("ns", "k"),
        ]

    assert run(after()) == [(None, True), (b"y", False), (None, True), (0, b"v")]
    stores.close()
