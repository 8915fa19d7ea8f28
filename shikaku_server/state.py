"""What the running app holds: built in the lifespan, never at import time. The routes hand its
parts to the services as arguments; no service reads it (only the web layer imports this module:
tests/unit/test_no_service_locator.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.access_log.service import AccessLogWriter
from shikaku_server.auth.service import PrincipalCache
from shikaku_server.cache import Cache, Stores
from shikaku_server.card.service import CardPorts
from shikaku_server.config import Settings
from shikaku_server.database import Transactions
from shikaku_server.eligibility.service import BundleReader, LookupPorts
from shikaku_server.metrics import Metrics
from shikaku_server.pgasync import AsyncPG
from shikaku_server.ratelimit import RateLimiter
from shikaku_server.upload.bulk import BulkWriters


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]  # autocommit, for single-statement reads on the hot path
    transactions: Transactions  # units of work of async services and routes (session_factory's)
    reads: Transactions  # read_factory's: the hot path's reads from async code (``Transactions.read``)
    stores: Stores  # the cache, the challenge store and the rate-limit counters
    bundles: BundleReader
    bulk_writers: BulkWriters  # the uploads' (PostgreSQL's COPY, or one writer at a time)
    card: CardPorts
    metrics: Metrics
    access_log: AccessLogWriter
    limiter: RateLimiter
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    pg: AsyncPG | None = None  # event-loop reads on PostgreSQL (closed with the app)

    @property
    def cache(self) -> Cache:
        return self.stores.cache

    @cached_property
    def lookup(self) -> LookupPorts:
        """What a by-number lookup works with (``eligibility.service.lookup``), built once."""
        return LookupPorts(
            limiter=self.limiter,
            cache=self.cache,
            bundles=self.bundles,
            ttl=self.settings.eligibility_cache_ttl_seconds,
            access_log=self.access_log,
            metrics=self.metrics,
        )
