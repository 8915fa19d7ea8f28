"""Insured persons (the 4-part key) and their eligibility history.

A period row is never edited except to mark it superseded: a ``change`` or ``loss`` supersedes
the rows it affects and inserts their replacements, so the full history stays readable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base


class Insured(Base):
    __tablename__ = "insured"
    __table_args__ = (UniqueConstraint("insurer_number", "symbol_norm", "number_norm", "branch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insurer_number: Mapped[str] = mapped_column(String(8))
    symbol: Mapped[str] = mapped_column(String(40))  # as the insurer sent it
    number: Mapped[str] = mapped_column(String(40))
    branch: Mapped[str] = mapped_column(String(2))
    symbol_norm: Mapped[str] = mapped_column(String(40))  # NFKC, no spaces: what queries compare
    number_norm: Mapped[str] = mapped_column(String(40))


class EligibilityPeriod(Base):
    __tablename__ = "eligibility_period"
    __table_args__ = (
        Index("ix_eligibility_period_current", "insured_id", "superseded_by"),
        Index("ix_eligibility_period_facts", "birth_date", "name_norm"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    upload_id: Mapped[str] = mapped_column(String(36))
    line: Mapped[int]
    superseded_by: Mapped[str | None] = mapped_column(String(36))  # upload id that replaced it
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]
    reason_of_loss: Mapped[str | None] = mapped_column(String(2))
    name: Mapped[str]
    name_kana: Mapped[str]
    name_norm: Mapped[str]
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[dt.date]
    address: Mapped[str | None]
    address_norm: Mapped[str | None]
    post_number: Mapped[str | None] = mapped_column(String(8))
    personal_family: Mapped[str] = mapped_column(String(1))
    card_classification: Mapped[str] = mapped_column(String(2))
    copay_ratio: Mapped[int]
    elderly_ratio: Mapped[int | None]
    elderly_valid_from: Mapped[dt.date | None]
    elderly_valid_to: Mapped[dt.date | None]
    limit_kind: Mapped[str | None] = mapped_column(String(2))
    limit_class: Mapped[str | None] = mapped_column(String(3))
    limit_valid_from: Mapped[dt.date | None]
    limit_valid_to: Mapped[dt.date | None]
    diseases: Mapped[list[Any] | None]
