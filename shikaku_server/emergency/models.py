"""救急時医療情報閲覧: drug information read without consent at an emergency hospital."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class EmergencyRead(Base):
    """Who read whose drug information in an emergency, and the reason they stated. The
    patient's access log carries the read itself (``emergency`` true); this row keeps the reason
    and the token for the operator's review."""

    __tablename__ = "emergency_read"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    facility_code: Mapped[str] = mapped_column(ForeignKey("facility.code"))
    token_id: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    reason: Mapped[str] = mapped_column(String(500))
