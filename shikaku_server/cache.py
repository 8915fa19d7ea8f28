"""Cache and challenge store behind one small Protocol, with Redis and in-process implementations.

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
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from shikaku_server.errors import UnavailableError


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
    def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]: ...

    async def aget_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        """``get_versioned`` for the event loop (the by-number hot path): never blocks it."""
        ...

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None: ...

    async def aset_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None: ...

    def bump(self, namespace: str) -> None: ...

    def put_new(self, key: str, value: bytes, ttl: int) -> bool:
        """Store ``value`` unless ``key`` exists; True when stored."""
        ...

    def take(self, key: str) -> bytes | None:
        """Atomically read and delete ``key``."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: int) -> None: ...

    def incr_window(self, key: str, ttl: int) -> int:
        """Increment a counter that expires ``ttl`` seconds after its first increment."""
        ...

    def incr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        """Add ``amount`` (may be negative) to each counter, in one round trip; their new values.
        A counter lives ``ttl`` seconds after its last change (rate-limit windows: see
        ``shikaku_server.ratelimit``). Raises ``CacheError`` when the store fails."""
        ...

    async def aincr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        """``incr_windows`` for the event loop: never blocks it."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class InMemoryCache:
    """Process-local store for the embedded default (one server process)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._versions: dict[str, int] = {}
        self._max = max_entries

    def _alive(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < now:
            del self._data[key]
            return None
        return item[1]

    def _store(self, key: str, value: bytes, ttl: int) -> None:
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        with self._lock:
            version = self._versions.get(namespace, 0)
            return version, self._alive(f"v:{namespace}:{version}:{key}", time.monotonic())

    async def aget_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        return self.get_versioned(namespace, key)

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._store(f"v:{namespace}:{version}:{key}", value, ttl)

    async def aset_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        self.set_versioned(namespace, version, key, value, ttl)

    def bump(self, namespace: str) -> None:
        with self._lock:
            self._versions[namespace] = self._versions.get(namespace, 0) + 1

    def put_new(self, key: str, value: bytes, ttl: int) -> bool:
        with self._lock:
            if self._alive(key, time.monotonic()) is not None:
                return False
            self._store(key, value, ttl)
            return True

    def take(self, key: str) -> bytes | None:
        with self._lock:
            value = self._alive(key, time.monotonic())
            self._data.pop(key, None)
            return value

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._alive(key, time.monotonic())

    def set(self, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._store(key, value, ttl)

    def incr_window(self, key: str, ttl: int) -> int:
        with self._lock:
            now = time.monotonic()
            item = self._data.get(key)
            if item is None or item[0] < now:
                self._data[key] = (now + ttl, b"1")
                return 1
            count = int(item[1]) + 1
            self._data[key] = (item[0], str(count).encode())
            return count

    def incr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        with self._lock:
            now = time.monotonic()
            counts = []
            for key in keys:
                value = self._alive(key, now)
                count = (int(value) if value is not None else 0) + amount
                self._store(key, str(count).encode(), ttl)
                counts.append(count)
            return counts

    async def aincr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        return self.incr_windows(keys, amount, ttl)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._data.clear()


_GET_VERSIONED = """
local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. v .. ':' .. ARGV[2])}
"""


# rate-limit counters: INCRBY each key, (re)set its time to live; the new values
_INCR_WINDOWS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCRBY', key, ARGV[1])
  redis.call('EXPIRE', key, ARGV[2])
end
return out
"""


class _ReplyError(Exception):
    """An error reply (``-ERR …``) from Redis."""


_INCOMPLETE = object()


def _parse_reply(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply from ``buf[pos:]``: (value, end), or (_INCOMPLETE, pos) when more bytes
    are needed. Bulk strings are bytes, nil is None, an error reply is a ``_ReplyError`` value."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return _INCOMPLETE, pos
    kind, line, after = buf[pos], bytes(buf[pos + 1 : eol]), eol + 2
    if kind == 0x24:  # $ bulk string
        n = int(line)
        if n < 0:
            return None, after
        if len(buf) < after + n + 2:
            return _INCOMPLETE, pos
        return bytes(buf[after : after + n]), after + n + 2
    if kind == 0x2A:  # * array
        n = int(line)
        if n < 0:
            return None, after
        items = []
        for _ in range(n):
            item, after = _parse_reply(buf, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    if kind == 0x3A:  # : integer
        return int(line), after
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return _ReplyError(line.decode(errors="replace")), after
    raise CacheError(f"unexpected reply type {kind!r}")


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
        self.buf = bytearray()
        self.lost = False
        self.outbox: list[bytes] = []  # deferred commands (``send(defer=True)``)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        while self.waiters:
            try:
                value, end = _parse_reply(self.buf, pos)
            except (CacheError, ValueError) as exc:
                self.fail(CacheError(f"bad reply from Redis: {exc}"))
                return
            if value is _INCOMPLETE:
                break
            pos = end
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
        del self.buf[:pos]

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

    def __init__(self, waiter: asyncio.Future[Any]) -> None:
        self._waiter = waiter

    async def counts(self) -> list[int]:
        reply = await self._waiter
        if isinstance(reply, _ReplyError) or not isinstance(reply, list):
            raise CacheError(f"unexpected reply to the counters: {reply!r}")
        return [int(n) for n in reply]

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


class RedisCache:
    """Redis (``SHIKAKU_REDIS_URL``): shared by every server process."""

    def __init__(self, url: str, prefix: str = "shikaku:", *, timeout: float = 0.5, breaker: float = 2.0) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._prefix = prefix
        self._breaker = _Breaker(breaker)
        self._get_versioned = self._redis.register_script(_GET_VERSIONED)
        # the script's name for EVALSHA (what Redis calls it; not a security use)
        self._get_versioned_sha = hashlib.sha1(_GET_VERSIONED.encode(), usedforsecurity=False).hexdigest().encode()
        small = _AsyncRedis(url, timeout=timeout)
        self._async: _AsyncRedis | _RedisPyAsync = small if small.supported else _RedisPyAsync(url, timeout)
        self._incr_windows = self._redis.register_script(_INCR_WINDOWS)

    def _sync(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """A blocking redis-py call behind the breaker; ``CacheError`` when Redis fails."""
        self._breaker.check()
        try:
            result = call(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._breaker.failure()
            raise CacheError(str(exc)) from exc
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc
        self._breaker.success()
        return result

    async def _call(self, *args: bytes) -> Any:
        """A command on the event loop behind the breaker (error replies raise ``_ReplyError``)."""
        self._breaker.check()
        try:
            reply = await self._async.call(*args)
        except _ReplyError:
            self._breaker.success()
            raise
        except CacheError:
            self._breaker.failure()
            raise
        self._breaker.success()
        return reply

    def _k(self, key: str) -> str:
        return self._prefix + key

    def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        version, value = self._sync(
            self._get_versioned, keys=[self._k(f"ver:{namespace}")], args=[self._k(f"v:{namespace}:"), key]
        )
        return int(version), value

    async def aget_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        args = (b"1", self._k(f"ver:{namespace}").encode(), self._k(f"v:{namespace}:").encode(), key.encode())
        try:
            try:
                version, value = await self._call(b"EVALSHA", self._get_versioned_sha, *args)
            except _ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                # Redis does not know the script (once per Redis start): EVAL sends and caches it
                version, value = await self._call(b"EVAL", _GET_VERSIONED.encode(), *args)
        except _ReplyError as exc:
            raise CacheError(str(exc)) from exc
        return int(version), value

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        self._sync(self._redis.set, self._k(f"v:{namespace}:{version}:{key}"), value, ex=ttl)

    async def aset_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        try:
            await self._call(
                b"SET", self._k(f"v:{namespace}:{version}:{key}").encode(), value, b"EX", str(ttl).encode()
            )
        except _ReplyError as exc:
            raise CacheError(str(exc)) from exc

    @property
    def on_event_loop(self) -> bool:
        """Whether ``aput_new`` and ``aeval`` are available: always (the small client, or
        redis-py's asyncio client for the URLs it does not speak)."""
        return self._async.supported

    async def _acall(self, *args: bytes) -> Any:
        try:
            return await self._call(*args)
        except _ReplyError as exc:
            raise CacheError(str(exc)) from exc

    async def aput_new(self, key: str, value: bytes, ttl: int) -> None:
        """``SET key value EX ttl NX`` on the event loop (see ``on_event_loop``)."""
        await self._acall(b"SET", self._k(key).encode(), value, b"EX", str(ttl).encode(), b"NX")

    async def aeval(self, script: str, keys: Sequence[str], args: Sequence[bytes]) -> Any:
        """A Lua script over this cache's ``keys`` on the event loop (see ``on_event_loop``)."""
        return await self._acall(
            b"EVAL", script.encode(), str(len(keys)).encode(), *(self._k(k).encode() for k in keys), *args
        )

    def bump(self, namespace: str) -> None:
        """Never skipped by the breaker: an invalidation is always attempted."""
        try:
            self._redis.incr(self._k(f"ver:{namespace}"))
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc

    def _store(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._sync(call, *args, **kwargs)
        except CacheError as exc:
            raise UnavailableError(f"the {what} (Redis) is unavailable") from exc

    def put_new(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self._store("challenge store", self._redis.set, self._k(key), value, ex=ttl, nx=True))

    def take(self, key: str) -> bytes | None:
        value = self._store("challenge store", self._redis.getdel, self._k(key))
        return value if isinstance(value, bytes) else None

    def get(self, key: str) -> bytes | None:
        value = self._store("cache", self._redis.get, self._k(key))
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self._store("cache", self._redis.set, self._k(key), value, ex=ttl)

    def incr_window(self, key: str, ttl: int) -> int:
        def incr() -> int:
            pipe = self._redis.pipeline()
            pipe.incr(self._k(key))
            pipe.expire(self._k(key), ttl, nx=True)
            count, _ = pipe.execute()
            return int(count)

        return int(self._store("cache", incr))

    def incr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        reply = self._sync(self._incr_windows, keys=[self._k(k) for k in keys], args=[amount, ttl])
        return [int(n) for n in reply]

    async def aincr_windows(self, keys: Sequence[str], amount: int, ttl: int) -> list[int]:
        if not self._async.supported:
            return await asyncio.to_thread(self.incr_windows, keys, amount, ttl)
        reply = await self._acall(*self._incr_windows_command(keys, amount, ttl))
        return [int(n) for n in reply]

    def incr_windows_nowait(self, keys: Sequence[str], amount: int, ttl: int) -> PendingCounts | None:
        """``aincr_windows`` sent now, its reply awaited later (``PendingCounts``), so that the
        next command on the event-loop connection shares its round trip; None when that
        connection is not up (or the URL is one it does not handle): use ``aincr_windows``."""
        if not isinstance(self._async, _AsyncRedis) or self._breaker.tripped:
            return None  # after a failure: ``aincr_windows``, whose answer the breaker sees
        waiter = self._async.send_nowait(*self._incr_windows_command(keys, amount, ttl))
        return PendingCounts(waiter) if waiter is not None else None

    def _incr_windows_command(self, keys: Sequence[str], amount: int, ttl: int) -> tuple[bytes, ...]:
        return (
            b"EVAL",
            _INCR_WINDOWS.encode(),
            str(len(keys)).encode(),
            *(self._k(k).encode() for k in keys),
            str(amount).encode(),
            str(ttl).encode(),
        )

    def ping(self) -> bool:
        """Always asks Redis (readiness must see a recovery), within the socket timeout."""
        try:
            ok = bool(self._redis.ping())
        except redis.RedisError:
            return False
        self._breaker.success()
        return ok

    def close(self) -> None:
        self._async.close()
        self._redis.close()


def make_cache(redis_url: str | None, *, timeout: float = 0.5, breaker: float = 2.0) -> Cache:
    if redis_url and redis_url.startswith("redis+sentinel://"):
        from shikaku_server.redis_sentinel import SentinelRedisCache  # follows a Sentinel failover

        return SentinelRedisCache(redis_url, timeout=timeout, breaker=breaker)
    return RedisCache(redis_url, timeout=timeout, breaker=breaker) if redis_url else InMemoryCache()
