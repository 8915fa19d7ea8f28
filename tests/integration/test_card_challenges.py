"""The challenge store of the card hot path (``acreate_challenge`` / ``aredeem_challenge``): on
Redis through the event-loop client (one round trip each), elsewhere through the blocking calls;
the same answers either way, and interchangeable with ``create_challenge`` / ``redeem_challenge``."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import redis

from shikaku_server.cache import Cache, InMemoryCache, RedisCache
from shikaku_server.card import service
from shikaku_server.errors import (
    ChallengeExpiredError,
    ChallengeReusedError,
    ChallengeUnknownError,
    UnavailableError,
)

FACILITY = "0110113719"


@pytest.fixture(params=["redis", "memory"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield InMemoryCache()
        return
    url: str = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    c = RedisCache(url)
    yield c
    c.close()


def _run(main: Coroutine[Any, Any, None], cache: Cache) -> None:
    """Run on a fresh loop and drop the event-loop Redis connection before the loop closes."""

    async def wrapped() -> None:
        try:
            await main
        finally:
            cache.close()

    asyncio.run(wrapped())


def test_single_use_bound_to_facility(cache: Cache) -> None:
    async def run() -> None:
        ch = await service.acreate_challenge(cache, FACILITY, 60)
        nonce = await service.aredeem_challenge(cache, ch.challenge_id, FACILITY, 60)
        assert nonce == base64.b64decode(ch.nonce) and len(nonce) == 32
        with pytest.raises(ChallengeReusedError):
            await service.aredeem_challenge(cache, ch.challenge_id, FACILITY, 60)
        with pytest.raises(ChallengeUnknownError):
            await service.aredeem_challenge(cache, "no-such-challenge", FACILITY, 60)
        with pytest.raises(ChallengeUnknownError):  # an unknown id does not become "reused"
            await service.aredeem_challenge(cache, "no-such-challenge", FACILITY, 60)
        other = await service.acreate_challenge(cache, FACILITY, 60)
        with pytest.raises(ChallengeUnknownError):
            await service.aredeem_challenge(cache, other.challenge_id, "0110113727", 60)
        with pytest.raises(ChallengeReusedError):  # consumed by the refused attempt
            await service.aredeem_challenge(cache, other.challenge_id, FACILITY, 60)

    _run(run(), cache)


def test_interchangeable_with_the_blocking_calls(cache: Cache) -> None:
    async def run() -> None:
        ch = await service.acreate_challenge(cache, FACILITY, 60)
        assert service.redeem_challenge(cache, ch.challenge_id, FACILITY, 60) == base64.b64decode(ch.nonce)
        with pytest.raises(ChallengeReusedError):
            await service.aredeem_challenge(cache, ch.challenge_id, FACILITY, 60)
        old = service.create_challenge(cache, FACILITY, 60)
        assert await service.aredeem_challenge(cache, old.challenge_id, FACILITY, 60) == base64.b64decode(old.nonce)
        with pytest.raises(ChallengeReusedError):
            service.redeem_challenge(cache, old.challenge_id, FACILITY, 60)

    _run(run(), cache)


def test_expired(cache: Cache) -> None:
    async def run() -> None:
        ch = await service.acreate_challenge(cache, FACILITY, 1)
        await asyncio.sleep(1.1)  # past its validity, still kept (twice as long) to say so
        with pytest.raises(ChallengeExpiredError):
            await service.aredeem_challenge(cache, ch.challenge_id, FACILITY, 1)

    _run(run(), cache)


def test_redis_down_is_unavailable() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")  # nothing listens there

    async def run() -> None:
        with pytest.raises(UnavailableError):
            await service.acreate_challenge(cache, FACILITY, 60)
        with pytest.raises(UnavailableError):
            await service.aredeem_challenge(cache, "x", FACILITY, 60)

    start = time.monotonic()
    _run(run(), cache)
    assert time.monotonic() - start < 5
