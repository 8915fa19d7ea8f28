"""Card challenges (``create_challenge`` / ``redeem_challenge``) over both ``ChallengeStore``
implementations, Redis (one round trip each, on the event loop) and in-process: the same answers
either way. Time is injected (the service's clock, the in-process store's timer): no sleep."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import redis

from shikaku_server.cache import ChallengeStore, InMemoryChallengeStore, RedisChallengeStore, RedisClient
from shikaku_server.card import service
from shikaku_server.errors import (
    ChallengeExpiredError,
    ChallengeReusedError,
    ChallengeUnknownError,
    UnavailableError,
)

FACILITY = "0110113719"


class Clock:
    """Wall clock (for the service) and monotonic timer (for the in-process store), movable."""

    def __init__(self) -> None:
        self.at = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
        self.mono = 1000.0

    def __call__(self) -> dt.datetime:
        return self.at

    def timer(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[ChallengeStore]:
    if request.param == "memory":
        yield InMemoryChallengeStore(timer=clock.timer)
        return
    url: str = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    client = RedisClient(url)
    yield RedisChallengeStore(client)
    client.close()


def _run(main: Coroutine[Any, Any, None], store: ChallengeStore) -> None:
    """Run on a fresh loop and drop the event-loop Redis connection before the loop closes."""

    async def wrapped() -> None:
        try:
            await main
        finally:
            if isinstance(store, RedisChallengeStore):
                store.client.close()

    asyncio.run(wrapped())


def test_single_use_and_bound_to_its_facility(store: ChallengeStore, clock: Clock) -> None:
    async def run() -> None:
        ch = await service.create_challenge(store, FACILITY, 60, clock=clock)
        nonce = await service.redeem_challenge(store, ch.challenge_id, FACILITY, 60, clock=clock)
        assert nonce == base64.b64decode(ch.nonce) and len(nonce) == 32
        with pytest.raises(ChallengeReusedError):
            await service.redeem_challenge(store, ch.challenge_id, FACILITY, 60, clock=clock)
        with pytest.raises(ChallengeUnknownError):
            await service.redeem_challenge(store, "no-such-challenge", FACILITY, 60, clock=clock)
        with pytest.raises(ChallengeUnknownError):  # a failed redemption marks nothing used
            await service.redeem_challenge(store, "no-such-challenge", FACILITY, 60, clock=clock)
        other = await service.create_challenge(store, FACILITY, 60, clock=clock)
        with pytest.raises(ChallengeUnknownError):
            await service.redeem_challenge(store, other.challenge_id, "0110113727", 60, clock=clock)
        with pytest.raises(ChallengeReusedError):  # consumed by the attempt from the other facility
            await service.redeem_challenge(store, other.challenge_id, FACILITY, 60, clock=clock)
        anywhere = await service.create_challenge(store, FACILITY, 60, clock=clock)
        assert await service.redeem_challenge(store, anywhere.challenge_id, None, 60, clock=clock)

    _run(run(), store)


def test_expired_then_forgotten(store: ChallengeStore, clock: Clock) -> None:
    async def run() -> None:
        ch = await service.create_challenge(store, FACILITY, 60, clock=clock)
        assert ch.expires_at == clock() + dt.timedelta(seconds=60)
        clock.advance(61)  # past its validity, still kept (twice as long) to say so
        with pytest.raises(ChallengeExpiredError):
            await service.redeem_challenge(store, ch.challenge_id, FACILITY, 60, clock=clock)
        late = await service.create_challenge(store, FACILITY, 60, clock=clock)
        clock.advance(59)
        assert await service.redeem_challenge(store, late.challenge_id, FACILITY, 60, clock=clock)

    _run(run(), store)


def test_in_process_store_forgets_after_twice_the_validity(clock: Clock) -> None:
    store = InMemoryChallengeStore(timer=clock.timer)

    async def run() -> None:
        ch = await service.create_challenge(store, FACILITY, 60, clock=clock)
        clock.advance(121)  # past the time it is kept: unknown, not expired
        with pytest.raises(ChallengeUnknownError):
            await service.redeem_challenge(store, ch.challenge_id, FACILITY, 60, clock=clock)
        used = await service.create_challenge(store, FACILITY, 60, clock=clock)
        await service.redeem_challenge(store, used.challenge_id, FACILITY, 60, clock=clock)
        clock.advance(239)
        with pytest.raises(ChallengeReusedError):  # the "used" mark is kept four times the validity
            await service.redeem_challenge(store, used.challenge_id, FACILITY, 60, clock=clock)
        clock.advance(2)
        with pytest.raises(ChallengeUnknownError):
            await service.redeem_challenge(store, used.challenge_id, FACILITY, 60, clock=clock)

    asyncio.run(run())


def test_redis_down_is_unavailable_at_once() -> None:
    client = RedisClient("redis://127.0.0.1:1/0")  # nothing listens there
    store = RedisChallengeStore(client)

    async def run() -> None:
        with pytest.raises(UnavailableError):
            await service.create_challenge(store, FACILITY, 60)
        with pytest.raises(UnavailableError):
            await service.redeem_challenge(store, "x", FACILITY, 60)

    start = time.monotonic()
    _run(run(), store)
    assert time.monotonic() - start < 5
