"""Visits (one per card check) and the patient's consent given during a visit."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class Visit(Base):
    __tablename__ = "visit"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random, unguessable
    facility_code: Mapped[str] = mapped_column(ForeignKey("facility.code"))
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    auth_method: Mapped[str] = mapped_column(String(8))  # pin / face / visual (目視確認, home care)
    card_classification: Mapped[str] = mapped_column(String(2))
    as_of: Mapped[dt.date]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # 目視確認 only: the staff member who looked at the card, and the token they used
    confirmed_by: Mapped[str | None] = mapped_column(String(64))
    confirmed_token_id: Mapped[int | None]


class Consent(Base):
    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_lookup", "insured_id", "facility_code", "given_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visit.id"))
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    facility_code: Mapped[str] = mapped_column(ForeignKey("facility.code"))
    drug: Mapped[bool]
    checkup: Mapped[bool]
    clinical: Mapped[bool]
    limit_certificate: Mapped[bool]
    setting: Mapped[str] = mapped_column(String(16))  # outpatient / inpatient / home
    given_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]  # None: until revoked (inpatient / home)
    revoked_at: Mapped[dt.datetime | None]
    # home care: the course's extent (re-checks for home visits / for online care)
    home_visit: Mapped[bool] = mapped_column(default=False, server_default=false())
    online_care: Mapped[bool] = mapped_column(default=False, server_default=false())
