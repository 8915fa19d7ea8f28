"""Redis behind Sentinel: the cache and challenge store follow a failover by themselves.

``SHIKAKU_REDIS_URL=redis+sentinel://host1:26379,host2:26380,host3:26381/<service>/<db>`` (an
optional ``user:password@`` before the first host is the *Redis* password; the sentinels are
asked without one). Each command goes to the master the sentinels name now: redis-py's
``Sentinel`` (blocking calls) and ``redis.asyncio.sentinel.Sentinel`` (the event-loop hot path)
ask the sentinels again whenever a connection fails or the old master answers ``READONLY``.

Single use across a failover: Redis replication is asynchronous, so a failover can lose the last
writes. Every write that single use depends on (a challenge created, a challenge consumed, its
"used" mark) is followed by ``WAIT 1 <ms>``: when the call returns, a replica holds the write
(unless no replica answered in time; that remaining window is in docs/operations.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from shikaku_server.cache import CacheError, RedisClient, _ReplyError
from shikaku_server.errors import UnavailableError

SCHEME = "redis+sentinel"
TIMEOUT = 2.0
WAIT_MS = 500  # how long a single-use write waits for a replica's acknowledgement


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """``redis+sentinel://h1:p1,h2:p2/<service>/<db>``; ValueError naming the rule broken."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ValueError(f"a Sentinel URL starts with {SCHEME}://")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("each sentinel is host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("the path is /<service>/<db> (db optional, default 0)")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError("the database is a number")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None if sep else None
        password = unquote(secret) if sep else unquote(user)
    return SentinelURL(tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0, username, password)


class _AsyncSentinelClient:
    """The ``call(*args)`` interface of ``cache._AsyncRedis`` over ``redis.asyncio`` Sentinel:
    one master client per event loop (connections belong to the loop that made them)."""

    supported = True

    def __init__(self, config: SentinelURL) -> None:
        self._config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sentinel: redis.asyncio.sentinel.Sentinel | None = None
        self._client: redis.asyncio.Redis[bytes] | None = None

    def _master(self) -> redis.asyncio.Redis[bytes]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            sentinel = self._sentinel = redis.asyncio.sentinel.Sentinel(
                list(self._config.sentinels), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
            )
            self._client = sentinel.master_for(
                self._config.service,
                db=self._config.db,
                username=self._config.username,
                password=self._config.password,
                socket_timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
            )
            self._loop = loop
        return self._client

    async def call(self, *args: bytes) -> Any:
        try:
            return await self._master().execute_command(*args)  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError as exc:
            raise _ReplyError(f"NOSCRIPT {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            raise _ReplyError(str(exc)) from exc
        except (redis.RedisError, OSError) as exc:
            raise CacheError(f"Redis (via Sentinel) is unavailable: {exc!r}") from exc

    async def aclose(self) -> None:
        """Close this loop's connections (before the loop ends)."""
        if self._client is not None:
            await self._client.aclose()  # type: ignore[attr-defined]  # the stubs predate aclose
        for client in self._sentinel.sentinels if self._sentinel is not None else []:
            await client.aclose()  # type: ignore[attr-defined]
        self._client = self._sentinel = None

    def close(self) -> None:
        self._client = self._sentinel = None  # their connections close with their event loop


class SentinelRedisClient(RedisClient):
    """``RedisClient`` whose connections go to the master the sentinels name; a single-use
    write (a challenge stored or taken) waits for a replica's acknowledgement."""

    def __init__(self, url: str, prefix: str = "shikaku:", *, timeout: float = 0.5, breaker: float = 2.0) -> None:
        # the breaker and the keys' prefix; no connection yet
        super().__init__("redis://sentinel.invalid/0", prefix, timeout=timeout, breaker=breaker)
        config = parse_sentinel_url(url)
        self._sentinel = redis.sentinel.Sentinel(
            list(config.sentinels), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self.redis = self._sentinel.master_for(
            config.service,
            db=config.db,
            username=config.username,
            password=config.password,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
        )
        self._sentinel_async = _AsyncSentinelClient(config)
        self.aio = self._sentinel_async  # the same call() interface

    async def aclose(self) -> None:
        """Close the event-loop connections of the running loop (a server's loop ends with the
        process; tests that run several loops call this at the end of each)."""
        await self._sentinel_async.aclose()

    async def replicated(self) -> None:
        try:
            await self.aio.call(b"WAIT", b"1", str(WAIT_MS).encode())
        except (CacheError, _ReplyError) as exc:
            raise UnavailableError("the challenge store (Redis) is unavailable") from exc

    def close(self) -> None:
        super().close()
        for client in self._sentinel.sentinels:
            client.close()
