"""医療扶助 (public assistance): the 医療券/調剤券 that 福祉事務所 load monthly, and every read of
them (docs/assistance.md)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class AssistanceTicket(Base):
    """One 医療券 (ticket_kind 1) or 調剤券 (2) of one recipient, month and 指定医療機関."""

    __tablename__ = "assistance_ticket"
    __table_args__ = (
        UniqueConstraint("payer_number", "recipient_number", "month", "ticket_kind", "facility_code"),
        Index("ix_assistance_ticket_office_month", "office_code", "month"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(36))
    office_code: Mapped[str] = mapped_column(String(6))
    payer_number: Mapped[str] = mapped_column(String(8))
    recipient_number: Mapped[str] = mapped_column(String(7))
    name: Mapped[str] = mapped_column(String(200))
    name_kana: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[dt.date]
    sex: Mapped[str] = mapped_column(String(1))
    month: Mapped[dt.date]  # the first day of the month
    ticket_kind: Mapped[str] = mapped_column(String(1))
    facility_code: Mapped[str] = mapped_column(String(10))
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]
    self_pay: Mapped[int | None]


class AssistanceRead(Base):
    """情報提供等記録 of 医療扶助: a recipient has no insured row, so reads are kept here, by the
    recipient's 公費負担者番号 and 受給者番号."""

    __tablename__ = "assistance_read"
    __table_args__ = (Index("ix_assistance_read_recipient", "payer_number", "recipient_number", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    payer_number: Mapped[str] = mapped_column(String(8))
    recipient_number: Mapped[str] = mapped_column(String(7))
    facility_code: Mapped[str] = mapped_column(String(10))
    role: Mapped[str] = mapped_column(String(16))
    what: Mapped[str] = mapped_column(String(32))  # assistance / assistance_no_match
    status: Mapped[str] = mapped_column(String(16))  # the answer's status
