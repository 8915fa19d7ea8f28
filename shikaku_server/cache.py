"""Cache and challenge store behind one small Protocol, with Redis and in-process implementations.

Versioned entries make invalidation race-free: a reader fetches the namespace's version and the
entry under that version in one round trip; an upload bumps the version *after* its commit, so
an entry filled from pre-commit data can never be read again.

When Redis fails: reads of cached data fall back to the database (``CacheError`` is caught by
the caller); the challenge store has no fallback (challenges must be visible to every process),
so challenge operations raise ``UnavailableError`` (503 ``unavailable``).
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

from shikaku_server.errors import UnavailableError


class CacheError(Exception):
    pass


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

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._data.clear()


_GET_VERSIONED = """
local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. v .. ':' .. ARGV[2])}
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

    def send(self, loop: asyncio.AbstractEventLoop, payload: bytes) -> asyncio.Future[Any]:
        if self.lost or self.transport is None:
            raise CacheError("the connection to Redis was lost")
        waiter: asyncio.Future[Any] = loop.create_future()
        self.waiters.append(waiter)
        self.transport.write(payload)
        return waiter


class _AsyncRedis:
    """The few commands of the hot path, without blocking the event loop and without a thread
    hop: one connection per process and loop, commands pipelined, a timeout per command (a
    timeout drops the connection; the next command reconnects). Plain ``redis://host:port/db``
    URLs with an optional password; anything else keeps the blocking client."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.supported = parts.scheme == "redis" and bool(parts.hostname)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.db = (parts.path or "/0").strip("/") or "0"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
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

    def close(self) -> None:
        if self._pipe is not None and self._pipe.transport is not None:
            self._pipe.transport.close()
        self._pipe = None


class RedisCache:
    """Redis (``SHIKAKU_REDIS_URL``): shared by every server process."""

    def __init__(self, url: str, prefix: str = "shikaku:") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._get_versioned = self._redis.register_script(_GET_VERSIONED)
        # the script's name for EVALSHA (what Redis calls it; not a security use)
        self._get_versioned_sha = hashlib.sha1(_GET_VERSIONED.encode(), usedforsecurity=False).hexdigest().encode()
        self._async = _AsyncRedis(url, timeout=2.0)

    def _k(self, key: str) -> str:
        return self._prefix + key

    def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        try:
            version, value = self._get_versioned(
                keys=[self._k(f"ver:{namespace}")], args=[self._k(f"v:{namespace}:"), key]
            )
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc
        return int(version), value

    async def aget_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        if not self._async.supported:
            return self.get_versioned(namespace, key)
        try:
            version, value = await self._async.call(
                b"EVALSHA",
                self._get_versioned_sha,
                b"1",
                self._k(f"ver:{namespace}").encode(),
                self._k(f"v:{namespace}:").encode(),
                key.encode(),
            )
        except _ReplyError as exc:
            if str(exc).startswith("NOSCRIPT"):
                return self.get_versioned(namespace, key)  # loads the script, once per Redis start
            raise CacheError(str(exc)) from exc
        return int(version), value

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        try:
            self._redis.set(self._k(f"v:{namespace}:{version}:{key}"), value, ex=ttl)
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc

    async def aset_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        if not self._async.supported:
            self.set_versioned(namespace, version, key, value, ttl)
            return
        try:
            await self._async.call(
                b"SET", self._k(f"v:{namespace}:{version}:{key}").encode(), value, b"EX", str(ttl).encode()
            )
        except _ReplyError as exc:
            raise CacheError(str(exc)) from exc

    @property
    def on_event_loop(self) -> bool:
        """Whether ``aput_new`` and ``aeval`` are available (the URL is one the non-blocking
        client speaks); callers otherwise use the blocking calls in a thread."""
        return self._async.supported

    async def _acall(self, *args: bytes) -> Any:
        try:
            return await self._async.call(*args)
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
        try:
            self._redis.incr(self._k(f"ver:{namespace}"))
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc

    def put_new(self, key: str, value: bytes, ttl: int) -> bool:
        try:
            return bool(self._redis.set(self._k(key), value, ex=ttl, nx=True))
        except redis.RedisError as exc:
            raise UnavailableError("the challenge store (Redis) is unavailable") from exc

    def take(self, key: str) -> bytes | None:
        try:
            value = self._redis.getdel(self._k(key))
        except redis.RedisError as exc:
            raise UnavailableError("the challenge store (Redis) is unavailable") from exc
        return value if isinstance(value, bytes) else None

    def get(self, key: str) -> bytes | None:
        try:
            value = self._redis.get(self._k(key))
        except redis.RedisError as exc:
            raise UnavailableError("the cache (Redis) is unavailable") from exc
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: int) -> None:
        try:
            self._redis.set(self._k(key), value, ex=ttl)
        except redis.RedisError as exc:
            raise UnavailableError("the cache (Redis) is unavailable") from exc

    def incr_window(self, key: str, ttl: int) -> int:
        try:
            pipe = self._redis.pipeline()
            pipe.incr(self._k(key))
            pipe.expire(self._k(key), ttl, nx=True)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            raise UnavailableError("the cache (Redis) is unavailable") from exc
        return int(count)

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._async.close()
        self._redis.close()


def make_cache(redis_url: str | None) -> Cache:
    if redis_url and redis_url.startswith("redis+sentinel://"):
        from shikaku_server.redis_sentinel import SentinelRedisCache  # follows a Sentinel failover

        return SentinelRedisCache(redis_url)
    return RedisCache(redis_url) if redis_url else InMemoryCache()
