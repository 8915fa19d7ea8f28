"""Server settings: environment variables with the ``SHIKAKU_`` prefix (contract: Settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shikaku_server.database import DBTimeouts

DEFAULT_SQLITE = "sqlite:///./shikaku.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIKAKU_", extra="ignore")

    database_url: str = DEFAULT_SQLITE
    redis_url: str | None = None
    trust_anchors: str | None = None  # PEM file(s), separated by os.pathsep
    # operational knobs (not in the contract; documented in docs/operations.md)
    challenge_ttl_seconds: int = 60
    eligibility_cache_ttl_seconds: int = 300
    certificate_cache_size: int = 10_000
    max_json_body_bytes: int = 4 * 1024 * 1024  # a 10,000-query batch fits
    max_upload_bytes: int = 2 * 1024 * 1024 * 1024
    upload_error_limit: int = 10_000  # errors listed in an upload answer (all are counted)
    db_pool_size: int = 10
    batch_lease_seconds: int = 30  # a batch whose runner stopped renewing this long is taken over
    # how long a request waits for a backing service before 503 (docs/operations.md)
    db_connect_timeout_seconds: float = 2.0
    db_statement_timeout_seconds: float = 3.0
    db_pool_timeout_seconds: float = 2.0
    redis_timeout_seconds: float = 0.5
    redis_breaker_seconds: float = 2.0
    token_revocation_check_seconds: float = 1.0  # a revoked token stops working within about this
    # how far back drug, checkup and clinical (診療・手術) information is served, in years, from the
    # visit's day (facilities, FHIR) or today (the patient, emergency reads): one period for all
    # three (docs/consent.md "Windows")
    clinical_retention_years: int = Field(default=5, ge=1, le=100)
    log_level: str = "INFO"
    metrics_token: str | None = None  # when set, /metrics needs this bearer token
    # rate limits (docs/operations.md "Rate limits"): per token and per facility, in fixed windows
    # of a minute (lookups, challenges) or an hour (batch queries, registrations); 0 turns one off
    rate_limit_lookups_per_token: int = 600
    rate_limit_lookups_per_facility: int = 3_000
    rate_limit_lookup_failures_per_token: int = 30  # per hour: lookups that matched nobody
    rate_limit_lookup_failures_per_facility: int = 100
    rate_limit_challenges_per_token: int = 120
    rate_limit_challenges_per_facility: int = 600
    rate_limit_batch_queries_per_token: int = 20_000
    rate_limit_batch_queries_per_facility: int = 50_000
    rate_limit_registrations_per_token: int = 20
    rate_limit_registrations_per_facility: int = 60
    rate_limit_me_challenges_per_client: int = 20  # per minute per client address (/v1/me/challenges)
    rate_limit_emergency_reads_per_token: int = 10  # per hour (救急時医療情報閲覧)
    rate_limit_emergency_reads_per_facility: int = 30

    def db_timeouts(self) -> DBTimeouts:
        return DBTimeouts(
            connect=self.db_connect_timeout_seconds,
            statement=self.db_statement_timeout_seconds or None,
            pool=self.db_pool_timeout_seconds,
        )

    def trust_anchor_paths(self) -> list[Path]:
        import os

        if not self.trust_anchors:
            return []
        return [Path(p) for p in self.trust_anchors.split(os.pathsep) if p]


@lru_cache
def get_settings() -> Settings:
    return Settings()
