"""One row per accepted upload: what it was, what it did, and its content hash (re-sends).

Re-sends are recognised per uploader: ``uploader`` is the digest of the set of insurer numbers
the sending token may write (``uploader_of``), so two tokens of the same insurer share their
re-sends and two insurers never see each other's uploads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow
from shikaku_server.digests import sha256_text


class Upload(Base):
    __tablename__ = "upload"
    __table_args__ = (UniqueConstraint("kind", "uploader", "sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id"))
    kind: Mapped[str] = mapped_column(String(16))
    uploader: Mapped[str] = mapped_column(String(43))
    sha256: Mapped[str | None] = mapped_column(String(64))
    encoding: Mapped[str | None] = mapped_column(String(16))
    accepted: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[Any] | None]
    errors_truncated: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


def uploader_of(insurer_numbers: Iterable[str]) -> str:
    """Who sent a file, as stored: the digest of the sorted insurer numbers its token may write."""
    return sha256_text(",".join(sorted(insurer_numbers)).encode())
