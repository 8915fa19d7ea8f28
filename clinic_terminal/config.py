"""Terminal settings (environment variables with the ``SHIKAKU_`` prefix)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class TerminalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIKAKU_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    facility_token: str | None = None
    # XML folder interface (clinic_terminal/xmlif, `clinic-terminal watch`)
    xml_root: str | None = None  # folder holding req/ res/ face/
    xml_encoding: Literal["utf-8", "shift_jis"] = "utf-8"  # encoding of the result files
    facility_code: str | None = None  # 10-digit 医療機関コード written into face files


@lru_cache
def get_settings() -> TerminalSettings:
    return TerminalSettings()
