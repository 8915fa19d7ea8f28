"""What the running app holds: built in the lifespan, never at import time."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.access_log.service import AccessLogWriter
from shikaku_server.auth.service import PrincipalCache
from shikaku_server.cache import Cache
from shikaku_server.card.service import CertificateVerifier
from shikaku_server.config import Settings
from shikaku_server.metrics import Metrics
from shikaku_server.pgasync import AsyncPG
from shikaku_server.ratelimit import RateLimiter


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]  # autocommit, for single-statement reads on the hot path
    cache: Cache
    metrics: Metrics
    verifier: CertificateVerifier
    access_log: AccessLogWriter
    limiter: RateLimiter
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    pg: AsyncPG | None = None  # event-loop reads on PostgreSQL (the by-number miss path)
