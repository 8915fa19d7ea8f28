"""Terminal settings (environment variables with the ``SHIKAKU_`` prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TerminalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIKAKU_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    facility_token: str | None = None
    # XML folder interface (clinic_terminal/xmlif, `clinic-terminal watch`)
    xml_root: str | None = None  # folder holding req/ res/ face/
    xml_encoding: Literal["utf-8", "shift_jis"] = "utf-8"  # encoding of the result files
    facility_code: str | None = None  # 10-digit 医療機関コード written into face files
    # outage mode (緊急時): the journal of checks the server could not answer (clinic_terminal/outage)
    terminal_data_dir: str | None = None  # default: <xml_root>/state, else ~/.local/share/shikaku-terminal
    terminal_journal_key: SecretStr | None = None  # a Fernet key: the journal's payloads are encrypted


def default_data_dir(settings: TerminalSettings, xml_root: Path | None) -> Path:
    """Where the terminal keeps its outage journal."""
    if settings.terminal_data_dir:
        return Path(settings.terminal_data_dir)
    if xml_root is not None:
        return xml_root / "state"
    return Path.home() / ".local" / "share" / "shikaku-terminal"


def journal_key(settings: TerminalSettings) -> str | None:
    return None if settings.terminal_journal_key is None else settings.terminal_journal_key.get_secret_value()


@lru_cache
def get_settings() -> TerminalSettings:
    return TerminalSettings()
