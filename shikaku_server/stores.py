"""Which cache, challenge store and rate-limit counters the process uses (``Stores``): Redis,
through one client (plain, or Sentinel that follows a failover), or the in-process ones. Chosen
once, in the app's lifespan. A module of its own: ``redis_sentinel`` builds on ``cache``, so
``cache`` must not import it back."""

from __future__ import annotations

from shikaku_server.cache import (
    InMemoryCache,
    InMemoryChallengeStore,
    InMemoryCounters,
    RedisCache,
    RedisChallengeStore,
    RedisClient,
    RedisCounters,
    Stores,
)
from shikaku_server.redis_sentinel import SentinelRedisClient


def make_stores(redis_url: str | None, *, timeout: float = 0.5, breaker: float = 2.0) -> Stores:
    """Redis when a URL is given (``redis+sentinel://`` follows a failover), else in-process."""
    if not redis_url:
        return Stores(InMemoryCache(), InMemoryChallengeStore(), InMemoryCounters())
    client: RedisClient
    if redis_url.startswith("redis+sentinel://"):
        client = SentinelRedisClient(redis_url, timeout=timeout, breaker=breaker)
    else:
        client = RedisClient(redis_url, timeout=timeout, breaker=breaker)
    return Stores(RedisCache(client), RedisChallengeStore(client), RedisCounters(client), client)
