"""情報提供等記録: every read of a person's data. Append-only (database triggers refuse
UPDATE and DELETE; see the migrations). ``insured_id`` is not a foreign key (migration 0008): a
lookup's entry must not lock the person's row."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class AccessLogEntry(Base):
    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_insured_at", "insured_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int]  # the person read (no foreign key: see above)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    facility_code: Mapped[str | None] = mapped_column(String(10))
    role: Mapped[str] = mapped_column(String(16))  # reception / physician / ... / patient
    what: Mapped[str] = mapped_column(String(32))  # eligibility / medications / checkups / access_log
    query_kind: Mapped[str | None] = mapped_column(String(16))  # card / number / batch
    consent_id: Mapped[int | None]
    visit_id: Mapped[str | None] = mapped_column(String(64))
    emergency: Mapped[bool] = mapped_column(default=False, server_default=false())  # 救急時医療情報閲覧
