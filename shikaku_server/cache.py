"""The server's Redis-backed stores, each behind a small async Protocol with a Redis and an
in-process implementation, built once in the app's lifespan (``stores.make_stores``):

- ``Cache``: the versioned cache of eligibility bundles;
- ``ChallengeStore``: single-use card challenges;
- ``RateCounters``: the rate-limit windows (``shikaku_server.ratelimit``).

The three Redis implementations share one ``RedisClient``: a blocking redis-py client for the
few calls made from threads (an upload's version bump, a batch's counters, readiness), and one
pipelined connection per process on the event loop for everything on the request path (replies
parsed by ``hiredis.Reader``). ``rediss://`` and other URLs the small connection does not speak
go through redis-py's asyncio client: the event loop never blocks on Redis, whatever the URL.

Versioned entries make invalidation race-free: a reader fetches the namespace's version and the
entry under that version in one round trip; an upload bumps the version *after* its commit, so
an entry filled from pre-commit data can never be read again.

When Redis fails: reads of cached data fall back to the database (``CacheError`` is caught by
the caller: the cache fails open); the challenge store has no fallback (challenges must be
visible to every process), so challenge operations raise ``UnavailableError`` (503
``unavailable``). Every Redis call has a short timeout (0.5 s by default), and a circuit breaker
keeps a frozen or dead Redis from costing every request that timeout: after a failure, calls fail
at once for ``breaker`` seconds, then one call probes Redis again (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import hiredis
import redis
import redis.asyncio
from cachetools import TLRUCache
from redis.backoff import NoBackoff
from redis.retry import Retry

from shikaku_server.errors import UnavailableError

Timer = Callable[[], float]


class CacheError(Exception):
    pass


class _Breaker:
    """Open for ``cooldown`` seconds after a connection failure or timeout: calls then fail at
    once. When it has elapsed, the next call is let through as a probe (the others still fail
    fast until the probe has answered)."""

    def __init__(self, cooldown: float, clock: Any = time.monotonic) -> None:
        self._cooldown = cooldown
        self._clock = clock
        self._open_until = 0.0
        self._tripped = False

    def check(self) -> None:
        if not self._tripped:
            return
        now = self._clock()
        if now < self._open_until:
            raise CacheError("Redis is unavailable (circuit open)")
        self._open_until = now + self._cooldown  # this call is the probe

    @property
    def tripped(self) -> bool:
        """Whether a failure has not been followed by a success yet (no probe is taken)."""
        return self._tripped

    def failure(self) -> None:
        self._tripped = True
        self._open_until = self._clock() + self._cooldown

    def success(self) -> None:
        self._tripped = False


class Cache(Protocol):
    """The versioned cache (eligibility bundles): a namespace's version and an entry under it."""

    async def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        """The namespace's version and the entry under it, in one round trip; ``CacheError``."""
        ...

    async def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None: ...

    def bump(self, namespace: str) -> None:
        """A new version of the namespace (blocking: an upload calls it after its commit)."""
        ...

    def ping(self) -> bool: ...


class ChallengeStore(Protocol):
    """Single-use records (card challenges); ``UnavailableError`` when the store is down."""

    async def put_new(self, key: str, value: bytes, ttl: int) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""
        ...

    async def take(self, key: str, used_ttl: int) -> tuple[bytes | None, bool]:
        """Atomically read and delete ``key``, and mark it used for ``used_ttl`` seconds:
        ``(value, False)``; ``(None, True)`` when it was taken before, ``(None, False)`` when
        it is unknown (never stored, or past its time)."""
        ...

    async def discard(self, key: str) -> None:
        """Delete ``key`` (a record stored but never handed out), without a used mark."""
        ...


class RateCounters(Protocol):
    """Counters that live ``ttl`` seconds after their last change (rate-limit windows)."""

    async def incr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        """Add ``amount`` (may be negative) to each counter, in one round trip; their new values.
        Raises ``CacheError`` when the store fails."""
        ...

    def incr_windows_nowait(self, windows: Sequence[Window]) -> PendingCounts | None:
        """``incr_windows`` of every window sent now as one command, its reply (the counts of
        every key, in order) awaited later, so that the next command shares its round trip;
        None when that is not possible (then use ``incr_windows``)."""
        ...


class _Expiring:
    """A bounded dict whose entries carry their own time to live (``cachetools.TLRUCache``)
    behind a lock (threads and the event loop both use it), on an injectable monotonic clock."""

    def __init__(self, max_entries: int, timer: Timer) -> None:
        self.lock = threading.Lock()
        self.data: TLRUCache[str, tuple[float, bytes]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, value, now: now + value[0], timer=timer
        )

    def get(self, key: str) -> bytes | None:
        item = self.data.get(key)
        return item[1] if item is not None else None

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self.data[key] = (ttl, value)


class InMemoryCache:
    """The versioned cache in this process (the embedded default: one server process)."""

    def __init__(self, max_entries: int = 200_000, timer: Timer = time.monotonic) -> None:
        self._entries = _Expiring(max_entries, timer)
        self._versions: dict[str, int] = {}

    async def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        with self._entries.lock:
            version = self._versions.get(namespace, 0)
            return version, self._entries.get(f"{namespace}:{version}:{key}")

    async def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        with self._entries.lock:
            self._entries.set(f"{namespace}:{version}:{key}", value, ttl)

    def bump(self, namespace: str) -> None:
        with self._entries.lock:
            self._versions[namespace] = self._versions.get(namespace, 0) + 1

    def ping(self) -> bool:
        return True


class InMemoryChallengeStore:
    """Challenges in this process (one server process only: challenges must be seen by all)."""

    def __init__(self, max_entries: int = 100_000, timer: Timer = time.monotonic) -> None:
        self._entries = _Expiring(max_entries, timer)

    async def put_new(self, key: str, value: bytes, ttl: int) -> None:
        with self._entries.lock:
            self._entries.set(key, value, ttl)

    async def take(self, key: str, used_ttl: int) -> tuple[bytes | None, bool]:
        with self._entries.lock:
            value = self._entries.get(key)
            if value is None:
                return None, self._entries.get(f"used:{key}") is not None
            del self._entries.data[key]
            self._entries.set(f"used:{key}", b"1", used_ttl)
            return value, False

    async def discard(self, key: str) -> None:
        with self._entries.lock:
            self._entries.data.pop(key, None)


class InMemoryCounters:
    """Rate-limit windows in this process (the default, and the fallback when Redis fails)."""

    def __init__(self, max_entries: int = 100_000, timer: Timer = time.monotonic) -> None:
        self._entries = _Expiring(max_entries, timer)

    def add(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        """``incr_windows`` without awaiting (in-process: nothing to wait for)."""
        with self._entries.lock:
            counts = []
            for key in keys:
                value = self._entries.get(key)
                count = (int(value) if value is not None else 0) + amount
                self._entries.set(key, str(count).encode(), ttl)
                counts.append(count)
            return counts

    async def incr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        return self.add(keys, amount, ttl)

    def incr_windows_nowait(self, windows: Sequence[Window]) -> PendingCounts | None:
        return None  # nothing to share a round trip with


_GET_VERSIONED = """
local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. v .. ':' .. ARGV[2])}
"""


# rate-limit counters: INCRBY each key by its amount, (re)set its time to live; the new values
# (ARGV: amount and time to live of KEYS[1], then of KEYS[2], …)
_INCR_WINDOWS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCRBY', key, ARGV[2 * i - 1])
  redis.call('EXPIRE', key, ARGV[2 * i])
end
return out
"""

# one window's counters: (keys, amount, time to live in seconds)
Window = tuple[Sequence[str], int, int]


class _ReplyError(Exception):
    """An error reply (``-ERR …``) from Redis."""


def _command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _Pipe(asyncio.Protocol):
    """One pipelined Redis connection on the event loop: commands are written as they come,
    replies are matched to waiters in order (Redis answers in order)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Any]] = deque()
        # RESP replies parsed by hiredis: bulk strings as bytes, nil as None, errors as values
        self.reader = hiredis.Reader(replyError=_ReplyError)
        self.lost = False
        self.outbox: list[bytes] = []  # deferred commands (``send(defer=True)``)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiters:
            try:
                value = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(CacheError(f"bad reply from Redis: {exc}"))
                return
            if value is False:  # an incomplete reply (RESP2 has no false): wait for more bytes
                break
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(CacheError(f"connection to Redis lost: {exc}"))

    def fail(self, exc: Exception) -> None:
        """Fail every waiter and drop the connection (replies could no longer be matched)."""
        self.lost = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self) -> None:
        self.fail(CacheError("Redis did not answer in time"))

    def send(self, loop: asyncio.AbstractEventLoop, payload: bytes, *, defer: bool = False) -> asyncio.Future[Any]:
        """Write a command; with ``defer`` (and after a deferred one, to keep the order) it waits in
        ``outbox`` until this turn of the loop ends, so that the commands issued meanwhile leave
        in one write and come back in one read."""
        if self.lost or self.transport is None:
            raise CacheError("the connection to Redis was lost")
        waiter: asyncio.Future[Any] = loop.create_future()
        self.waiters.append(waiter)
        if defer or self.outbox:
            if not self.outbox:
                loop.call_soon(self.flush)
            self.outbox.append(payload)
        else:
            self.transport.write(payload)
        return waiter

    def flush(self) -> None:
        if self.outbox and not self.lost and self.transport is not None:
            self.transport.write(b"".join(self.outbox))
        self.outbox.clear()


class _AsyncRedis:
    """The few commands of the hot path, without blocking the event loop and without a thread
    hop: one connection per process and loop, commands pipelined, a timeout per command (a
    timeout drops the connection; the next command reconnects). ``redis://host:port/db`` and
    ``unix:///path?db=N`` URLs with an optional password; anything else (``rediss://``) goes
    through redis-py's asyncio client (``_RedisPyAsync``)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
        self.unix_path = unquote(parts.path) if parts.scheme == "unix" and parts.path else None
        self.supported = (parts.scheme == "redis" and bool(parts.hostname)) or self.unix_path is not None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        if self.unix_path is not None:
            self.db = query.get("db", "0") or "0"
        else:
            self.db = (parts.path or "/0").strip("/") or "0"
        username = parts.username or query.get("username")
        password = parts.password or query.get("password")
        self.username = unquote(username) if username else None
        self.password = unquote(password) if password else None
        self.timeout = timeout
        self._pipe: _Pipe | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Pipe] | None = None

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> _Pipe:
        current = self._pipe
        if current is not None and not current.lost and self._loop is loop:
            return current
        if self._connecting is not None and self._loop is loop:
            return await asyncio.shield(self._connecting)
        self._loop, self._pipe = loop, None
        connecting = self._connecting = loop.create_future()
        try:
            pipe = await asyncio.wait_for(self._open(loop), self.timeout)
        except BaseException as exc:
            self._connecting = None
            error = exc if isinstance(exc, CacheError) else CacheError(f"cannot connect to Redis: {exc!r}")
            connecting.set_exception(error)
            connecting.exception()  # retrieved: no "never retrieved" warning when nobody waits
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise error from exc
        self._pipe, self._connecting = pipe, None
        connecting.set_result(pipe)
        return pipe

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Pipe:
        if self.unix_path is not None:
            _, pipe = await loop.create_unix_connection(_Pipe, self.unix_path)
        else:
            _, pipe = await loop.create_connection(_Pipe, self.host, self.port)
        try:
            setup = []
            if self.password is not None:
                user = (self.username.encode(),) if self.username else ()
                setup.append(pipe.send(loop, _command(b"AUTH", *user, self.password.encode())))
            if self.db != "0":
                setup.append(pipe.send(loop, _command(b"SELECT", self.db.encode())))
            for reply in await asyncio.gather(*setup):
                if isinstance(reply, _ReplyError):
                    raise CacheError(str(reply))
        except BaseException:
            pipe.fail(CacheError("Redis connection setup failed"))  # closes it: no half-set-up leak
            raise
        return pipe

    async def call(self, *args: bytes) -> Any:
        loop = asyncio.get_running_loop()
        pipe = await self._connection(loop)
        waiter = pipe.send(loop, _command(*args))
        timer = loop.call_later(self.timeout, pipe.timed_out)
        try:
            reply = await waiter
        finally:
            timer.cancel()
        if isinstance(reply, _ReplyError):
            raise reply
        return reply

    def send_nowait(self, *args: bytes) -> asyncio.Future[Any] | None:
        """Queue a command and return the future of its reply, when this loop's connection is up
        (None otherwise): the commands sent before this turn of the event loop ends go with it in
        one write, one round trip for all."""
        loop = asyncio.get_running_loop()
        pipe = self._pipe
        if pipe is None or pipe.lost or self._loop is not loop:
            return None
        waiter = pipe.send(loop, _command(*args), defer=True)
        timer = loop.call_later(self.timeout, pipe.timed_out)
        waiter.add_done_callback(lambda _: timer.cancel())
        return waiter

    def close(self) -> None:
        if self._pipe is not None and self._pipe.transport is not None:
            self._pipe.transport.close()
        self._pipe = None


class PendingCounts:
    """The reply of counters sent with ``RedisCache.incr_windows_nowait``: ``await counts()``,
    or ``discard()`` it (its error, if any, is then retrieved and dropped)."""

    def __init__(self, waiter: asyncio.Future[Any], again: Callable[[], Awaitable[list[int]]]) -> None:
        self._waiter = waiter
        self._again = again  # when Redis did not know the script (NOSCRIPT: after its restart)
        self._counts: list[int] | None = None

    async def counts(self) -> list[int]:
        """The counts, read once and kept: the ``Hit``s of one request read them one after the
        other, and after a NOSCRIPT the windows must be counted again once, not once per reader."""
        if self._counts is None:
            reply = await self._waiter
            if isinstance(reply, _ReplyError) and str(reply).startswith("NOSCRIPT"):
                self._counts = await self._again()
            elif isinstance(reply, _ReplyError) or not isinstance(reply, list):
                raise CacheError(f"unexpected reply to the counters: {reply!r}")
            else:
                self._counts = [int(n) for n in reply]
        return self._counts

    def discard(self) -> None:
        def retrieve(waiter: asyncio.Future[Any]) -> None:
            if not waiter.cancelled():
                waiter.exception()

        self._waiter.add_done_callback(retrieve)


class _RedisPyAsync:
    """``_AsyncRedis.call`` over redis-py's asyncio client, for the URLs the small client does not
    speak (``rediss://`` …): one client per event loop, raw replies, the same errors."""

    supported = True

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._clients: dict[int, redis.asyncio.Redis[bytes]] = {}

    async def call(self, *args: bytes) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = self._clients[id(loop)] = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            )
        try:
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError as exc:
            raise _ReplyError(f"NOSCRIPT {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            raise _ReplyError(str(exc)) from exc
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc

    def close(self) -> None:
        self._clients.clear()  # their connections close with their event loops


class RedisClient:
    """One Redis (``SHIKAKU_REDIS_URL``) shared by every server process: the breaker, the keys'
    prefix, a blocking redis-py client (invalidations, readiness) and the event-loop connection."""

    def __init__(self, url: str, prefix: str = "shikaku:", *, timeout: float = 0.5, breaker: float = 2.0) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.prefix = prefix
        self.breaker = _Breaker(breaker)
        small = _AsyncRedis(url, timeout=timeout)
        self.aio: Any = small if small.supported else _RedisPyAsync(url, timeout)

    def k(self, key: str) -> str:
        return self.prefix + key

    async def call(self, *args: bytes) -> Any:
        """A command on the event loop behind the breaker (error replies raise ``_ReplyError``)."""
        self.breaker.check()
        try:
            reply = await self.aio.call(*args)
        except _ReplyError:
            self.breaker.success()
            raise
        except CacheError:
            self.breaker.failure()
            raise
        self.breaker.success()
        return reply

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[bytes]) -> Any:
        """A Lua script over this client's ``keys``: EVALSHA, and EVAL once when Redis does not
        know it (after each Redis start). ``CacheError`` for any failure."""
        tail = (str(len(keys)).encode(), *(self.k(k).encode() for k in keys), *args)
        try:
            try:
                return await self.call(b"EVALSHA", script.sha, *tail)
            except _ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                return await self.call(b"EVAL", script.source, *tail)
        except _ReplyError as exc:
            raise CacheError(str(exc)) from exc

    def send_nowait(self, *args: bytes) -> asyncio.Future[Any] | None:
        """A command queued on the event-loop connection (see ``_AsyncRedis.send_nowait``); None
        after a failure (the breaker must see the next answer) or without that connection."""
        if not isinstance(self.aio, _AsyncRedis) or self.breaker.tripped:
            return None
        return self.aio.send_nowait(*args)

    async def replicated(self) -> None:
        """After a single-use write: nothing here (``SentinelRedisClient`` waits for a replica)."""

    def ping(self) -> bool:
        """Always asks Redis (readiness must see a recovery), within the socket timeout."""
        try:
            ok = bool(self.redis.ping())
        except redis.RedisError:
            return False
        self.breaker.success()
        return ok

    def close(self) -> None:
        self.aio.close()
        self.redis.close()


@dataclass(frozen=True)
class Script:
    source: bytes
    sha: bytes  # the script's name for EVALSHA (what Redis calls it; not a security use)

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source.encode(), hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest().encode())


_GET_VERSIONED_SCRIPT = Script.of(_GET_VERSIONED)
_INCR_WINDOWS_SCRIPT = Script.of(_INCR_WINDOWS)
# take a challenge, mark it used, or tell "reused" from "unknown": one round trip
_TAKE = Script.of(
    """
local v = redis.call('GETDEL', KEYS[1])
if v then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
  return {1, v}
end
return {0, redis.call('EXISTS', KEYS[2])}
"""
)


class RedisCache:
    """The versioned cache in Redis."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    async def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        k = self.client.k
        version, value = await self.client.script(
            _GET_VERSIONED_SCRIPT, [f"ver:{namespace}"], [k(f"v:{namespace}:").encode(), key.encode()]
        )
        return int(version), value

    async def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        try:
            await self.client.call(
                b"SET", self.client.k(f"v:{namespace}:{version}:{key}").encode(), value, b"EX", str(ttl).encode()
            )
        except _ReplyError as exc:
            raise CacheError(str(exc)) from exc

    def bump(self, namespace: str) -> None:
        """Never skipped by the breaker: an invalidation is always attempted."""
        try:
            self.client.redis.incr(self.client.k(f"ver:{namespace}"))
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc

    def ping(self) -> bool:
        return self.client.ping()


class RedisChallengeStore:
    """Challenges in Redis, seen by every server process: one round trip to store, one to take."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    async def put_new(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self.client.call(b"SET", self.client.k(key).encode(), value, b"EX", str(ttl).encode(), b"NX")
            await self.client.replicated()
        except (CacheError, _ReplyError) as exc:
            raise UnavailableError("the challenge store (Redis) is unavailable") from exc

    async def take(self, key: str, used_ttl: int) -> tuple[bytes | None, bool]:
        try:
            taken, value = await self.client.script(_TAKE, [key, f"used:{key}"], [str(used_ttl).encode()])
            await self.client.replicated()
        except (CacheError, _ReplyError) as exc:
            raise UnavailableError("the challenge store (Redis) is unavailable") from exc
        return (value, False) if taken == 1 else (None, bool(value))

    async def discard(self, key: str) -> None:
        try:
            await self.client.call(b"DEL", self.client.k(key).encode())
        except (CacheError, _ReplyError) as exc:
            raise UnavailableError("the challenge store (Redis) is unavailable") from exc


class RedisCounters:
    """Rate-limit windows in Redis, shared by every server process."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    async def incr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        return await self._incr([(keys, amount, ttl)])

    async def _incr(self, windows: Sequence[Window]) -> list[int]:
        keys = [key for window in windows for key in window[0]]
        reply = await self.client.script(_INCR_WINDOWS_SCRIPT, keys, _window_args(windows))
        return [int(n) for n in reply]

    def incr_windows_nowait(self, windows: Sequence[Window]) -> PendingCounts | None:
        k = self.client.k
        keys = [k(key).encode() for window in windows for key in window[0]]
        waiter = self.client.send_nowait(
            b"EVALSHA", _INCR_WINDOWS_SCRIPT.sha, str(len(keys)).encode(), *keys, *_window_args(windows)
        )
        if waiter is None:
            return None
        return PendingCounts(waiter, lambda: self._incr(windows))  # EVAL, then by its SHA


def _window_args(windows: Sequence[Window]) -> list[bytes]:
    """The script's ARGV: each key's amount and time to live."""
    out: list[bytes] = []
    for keys, amount, ttl in windows:
        pair = (str(amount).encode(), str(ttl).encode())
        for _ in keys:
            out += pair
    return out


@dataclass(frozen=True)
class Stores:
    """What ``make_stores`` builds once per process (the app's lifespan owns and closes it)."""

    cache: Cache
    challenges: ChallengeStore
    counters: RateCounters
    client: RedisClient | None = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
