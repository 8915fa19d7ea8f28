"""``shikaku_server.cache`` without a real Redis: the reply parser on partial frames, NOSCRIPT,
timeouts and the breaker, and the in-process implementations on an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shikaku_server.cache import (
    CacheError,
    InMemoryCache,
    InMemoryChallengeStore,
    InMemoryCounters,
    RedisCache,
    RedisChallengeStore,
    RedisClient,
    RedisCounters,
    _Pipe,
    _ReplyError,
)
from shikaku_server.errors import UnavailableError


class Timer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


# ---------------------------------------------------------------- the event-loop connection


def test_replies_split_anywhere_reach_their_waiters_in_order() -> None:
    """Replies (bulk, array with nil, integer, simple string, error) fed one byte at a time:
    each waiter gets its reply once, and only once it is complete."""

    async def run() -> list[Any]:
        loop = asyncio.get_running_loop()
        pipe = _Pipe()
        pipe.connection_made(FakeTransport())  # type: ignore[arg-type]
        waiters = [pipe.send(loop, b"cmd") for _ in range(5)]
        frames = b"$5\r\nab\r\nc\r\n*3\r\n:7\r\n$-1\r\n$2\r\nxy\r\n:-3\r\n+OK\r\n-NOSCRIPT No matching script\r\n"
        seen = []
        for i in range(len(frames)):
            pipe.data_received(frames[i : i + 1])
            seen.append(sum(w.done() for w in waiters))
        assert seen == sorted(seen) and seen[-1] == 5
        assert seen[frames.index(b"*3") - 1] == 1  # the first reply is complete before the second starts
        return [w.result() for w in waiters]

    first, second, third, fourth, fifth = asyncio.run(run())
    assert first == b"ab\r\nc"  # a bulk string may hold CR LF
    assert second == [7, None, b"xy"]
    assert (third, fourth) == (-3, b"OK")
    assert isinstance(fifth, _ReplyError) and str(fifth).startswith("NOSCRIPT")


def test_a_garbled_reply_fails_every_waiter_and_drops_the_connection() -> None:
    async def run() -> tuple[list[BaseException | None], bool, bool]:
        loop = asyncio.get_running_loop()
        pipe = _Pipe()
        transport = FakeTransport()
        pipe.connection_made(transport)  # type: ignore[arg-type]
        waiters = [pipe.send(loop, b"cmd") for _ in range(2)]
        pipe.data_received(b"?what\r\n")
        return [w.exception() for w in waiters], pipe.lost, transport.aborted

    errors, lost, aborted = asyncio.run(run())
    assert all(isinstance(e, CacheError) for e in errors) and lost and aborted


class ScriptedAio:
    """The event-loop connection's ``call`` interface, answering from a function."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes, ...]] = []

    async def call(self, *args: bytes) -> Any:
        self.calls.append(args)
        return self.answer(*args)

    def close(self) -> None:
        pass


def _client(answer: Any, **kwargs: Any) -> tuple[RedisClient, ScriptedAio]:
    client = RedisClient("redis://127.0.0.1:9199/0", **kwargs)  # nothing is sent there
    aio = ScriptedAio(answer)
    client.aio = aio
    return client, aio


def test_a_script_redis_does_not_know_is_sent_once_then_called_by_its_sha() -> None:
    known: set[bytes] = set()

    def redis(*args: bytes) -> Any:
        if args[0] == b"EVALSHA":
            if args[1] not in known:
                raise _ReplyError("NOSCRIPT No matching script. Please use EVAL.")
            return [b"4", b"bundle"]
        assert args[0] == b"EVAL"
        known.add(__import__("hashlib").sha1(args[1]).hexdigest().encode())
        return [b"4", b"bundle"]

    client, aio = _client(redis)
    cache = RedisCache(client)

    async def run() -> list[tuple[int, bytes | None]]:
        return [await cache.get_versioned("elig:01130012", "k") for _ in range(2)]

    assert asyncio.run(run()) == [(4, b"bundle"), (4, b"bundle")]
    assert [c[0] for c in aio.calls] == [b"EVALSHA", b"EVAL", b"EVALSHA"]
    assert aio.calls[0][3:5] == (b"shikaku:ver:elig:01130012", b"shikaku:v:elig:01130012:")  # prefixed keys


def test_another_error_reply_is_a_cache_error_not_a_retry() -> None:
    def redis(*args: bytes) -> Any:
        raise _ReplyError("ERR something else")

    client, aio = _client(redis)
    with pytest.raises(CacheError, match="something else"):
        asyncio.run(RedisCache(client).get_versioned("ns", "k"))
    assert len(aio.calls) == 1


def test_challenge_store_answers_from_the_take_script_and_says_unavailable_when_redis_fails() -> None:
    replies: list[Any] = [[1, b"record"], [0, 1], [0, 0]]
    client, aio = _client(lambda *args: replies.pop(0))
    store = RedisChallengeStore(client)

    async def run() -> list[tuple[bytes | None, bool]]:
        return [await store.take("challenge:x", 240) for _ in range(3)]

    assert asyncio.run(run()) == [(b"record", False), (None, True), (None, False)]
    assert aio.calls[0][3:5] == (b"shikaku:challenge:x", b"shikaku:used:challenge:x")

    def down(*args: bytes) -> Any:
        raise CacheError("connection refused")

    client.aio = ScriptedAio(down)
    with pytest.raises(UnavailableError):
        asyncio.run(store.take("challenge:y", 240))
    with pytest.raises(UnavailableError):
        asyncio.run(store.put_new("challenge:y", b"r", 120))


def test_a_silent_redis_times_out_then_the_breaker_fails_fast(tmp_path: Path) -> None:
    """A Redis that accepts and never answers: the call fails after the timeout (no hang), the
    connection is dropped, and the next calls fail at once without a new connection."""
    path = str(tmp_path / "silent.sock")
    connections: list[asyncio.StreamWriter] = []

    async def run() -> list[str]:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            await reader.read()  # never answers

        server = await asyncio.start_unix_server(accept, path)
        client = RedisClient(f"unix://{path}", timeout=0.2, breaker=60)
        cache = RedisCache(client)
        errors = []
        try:
            for _ in range(3):
                try:
                    await cache.get_versioned("ns", "k")
                except CacheError as exc:
                    errors.append(str(exc))
        finally:
            client.close()
            for writer in connections:
                writer.close()
            server.close()
            await server.wait_closed()
        return errors

    errors = asyncio.run(run())
    assert len(errors) == 3
    assert "in time" in errors[0]
    assert all("circuit open" in e for e in errors[1:])
    assert len(connections) == 1


# ---------------------------------------------------------------- the in-process implementations


def test_in_memory_cache_versions_expiry_and_bound() -> None:
    timer = Timer()
    cache = InMemoryCache(max_entries=2, timer=timer)

    async def run() -> None:
        assert await cache.get_versioned("ns", "a") == (0, None)
        await cache.set_versioned("ns", 0, "a", b"1", 10)
        assert await cache.get_versioned("ns", "a") == (0, b"1")
        cache.bump("ns")  # an upload: the entry of version 0 is never read again
        assert await cache.get_versioned("ns", "a") == (1, None)
        assert await cache.get_versioned("other", "a") == (0, None)
        await cache.set_versioned("ns", 1, "a", b"2", 10)
        timer.now += 9.9
        assert await cache.get_versioned("ns", "a") == (1, b"2")
        timer.now += 0.2
        assert await cache.get_versioned("ns", "a") == (1, None)  # past its time to live
        for key in ("x", "y", "z"):
            await cache.set_versioned("ns", 1, key, key.encode(), 60)
        assert [(await cache.get_versioned("ns", k))[1] for k in ("x", "y", "z")] == [None, b"y", b"z"]

    asyncio.run(run())


def test_in_memory_counters_live_ttl_after_their_last_change() -> None:
    timer = Timer()
    counters = InMemoryCounters(timer=timer)
    assert counters.add(["a", "b"], 1, 60) == [1, 1]
    timer.now += 50
    assert counters.add(["a"], 2, 60) == [3]
    timer.now += 50  # "b" last changed 100 s ago, "a" 50 s ago
    assert asyncio.run(counters.incr_windows(["a", "b"], -1, 60)) == [2, -1]
    assert counters.incr_windows_nowait([(["a"], 1, 60)]) is None  # no round trip to share


def test_in_memory_challenge_store_is_single_use_on_its_timer() -> None:
    timer = Timer()
    store = InMemoryChallengeStore(timer=timer)

    async def run() -> list[tuple[bytes | None, bool]]:
        await store.put_new("challenge:a", b"r", 120)
        out = [await store.take("challenge:a", 240), await store.take("challenge:a", 240)]
        timer.now += 241
        out.append(await store.take("challenge:a", 240))
        await store.put_new("challenge:b", b"s", 120)
        timer.now += 121
        out.append(await store.take("challenge:b", 240))
        return out

    assert asyncio.run(run()) == [(b"r", False), (None, True), (None, False), (None, False)]


def test_redis_counters_share_a_round_trip_only_on_the_small_client() -> None:
    client, _ = _client(lambda *args: [1])
    assert RedisCounters(client).incr_windows_nowait([(["a"], 1, 60)]) is None  # not the pipelined connection
