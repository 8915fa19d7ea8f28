"""Who may call the API: facilities, insurers, their tokens, and registered kiosk terminals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class Facility(Base):
    __tablename__ = "facility"

    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # 救急時医療情報閲覧: marked by the operator (``shikaku-admin facility add --emergency``)
    emergency: Mapped[bool] = mapped_column(default=False, server_default=false())


class Insurer(Base):
    __tablename__ = "insurer"

    number: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token, stored as its SHA-256 only. ``kind`` is ``facility`` or ``insurer``."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    facility_code: Mapped[str | None] = mapped_column(ForeignKey("facility.code"))
    role: Mapped[str | None] = mapped_column(String(16))
    insurer_numbers: Mapped[list[Any] | None]
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class Terminal(Base):
    """A kiosk terminal's registered public key (face attestations are signed with it)."""

    __tablename__ = "terminal"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    facility_code: Mapped[str] = mapped_column(ForeignKey("facility.code"))
    public_key_pem: Mapped[str]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
