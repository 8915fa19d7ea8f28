"""Loader settings (environment variables with the ``SHIKAKU_`` prefix; every one optional)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class LoaderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIKAKU_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    insurer_token: str | None = None
    upload_timeout_s: float = 3600.0  # the server answers after committing the whole file
    lang: str = "ja"  # messages and reject report: ja or en (--lang overrides)


@lru_cache
def get_settings() -> LoaderSettings:
    return LoaderSettings()
