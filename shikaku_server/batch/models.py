"""一括照会: a facility's list of by-number queries, answered later."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class Batch(Base):
    __tablename__ = "batch"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    facility_code: Mapped[str] = mapped_column(ForeignKey("facility.code"))
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id"))
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(100))
    count: Mapped[int]
    queries: Mapped[list[Any]]
    results: Mapped[list[Any] | None]
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    # the runner holding the batch (``running``) and until when; a runner that dies stops
    # renewing, and once the lease has passed any process takes the batch over (service.py)
    owner: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None]
