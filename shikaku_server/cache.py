"""Cache and challenge store behind one small Protocol, with Redis and in-process implementations.

Versioned entries make invalidation race-free: a reader fetches the namespace's version and the
entry under that version in one round trip; an upload bumps the version *after* its commit, so
an entry filled from pre-commit data can never be read again.

When Redis fails: reads of cached data fall back to the database (``CacheError`` is caught by
the caller); the challenge store has no fallback (challenges must be visible to every process),
so challenge operations raise ``UnavailableError`` (503 ``unavailable``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol

import redis

from shikaku_server.errors import UnavailableError


class CacheError(Exception):
    pass


class Cache(Protocol):
    def get_versioned(self, namespace: str, key: str) -> tuple[int, bytes | None]: ...

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None: ...

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

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._store(f"v:{namespace}:{version}:{key}", value, ttl)

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


class RedisCache:
    """Redis (``SHIKAKU_REDIS_URL``): shared by every server process."""

    def __init__(self, url: str, prefix: str = "shikaku:") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._get_versioned = self._redis.register_script(_GET_VERSIONED)

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

    def set_versioned(self, namespace: str, version: int, key: str, value: bytes, ttl: int) -> None:
        try:
            self._redis.set(self._k(f"v:{namespace}:{version}:{key}"), value, ex=ttl)
        except redis.RedisError as exc:
            raise CacheError(str(exc)) from exc

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
        self._redis.close()


def make_cache(redis_url: str | None) -> Cache:
    return RedisCache(redis_url) if redis_url else InMemoryCache()
