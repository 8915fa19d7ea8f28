"""Terminal settings (environment variables with the ``SHIKAKU_`` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class TerminalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIKAKU_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    facility_token: str | None = None


@lru_cache
def get_settings() -> TerminalSettings:
    return TerminalSettings()
