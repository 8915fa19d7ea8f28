"""Claim-derived drug history and health-checkup results, loaded by insurers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base


class Medication(Base):
    __tablename__ = "medication"
    __table_args__ = (UniqueConstraint("insured_id", "dispensed_on", "facility_code", "drug_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    upload_id: Mapped[str] = mapped_column(String(36))
    dispensed_on: Mapped[dt.date]
    facility_code: Mapped[str] = mapped_column(String(10))
    drug_code: Mapped[str] = mapped_column(String(20))
    drug_name: Mapped[str]
    quantity: Mapped[float]
    unit: Mapped[str] = mapped_column(String(20))
    days: Mapped[int]


class Checkup(Base):
    __tablename__ = "checkup"
    __table_args__ = (UniqueConstraint("insured_id", "checked_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    upload_id: Mapped[str] = mapped_column(String(36))
    checked_on: Mapped[dt.date]
    results: Mapped[dict[str, Any]]
    urine_protein: Mapped[str | None] = mapped_column(String(4))


class Procedure(Base):
    """One 診療行為 (or 手術) of a claim: what was done to the person, where and when."""

    __tablename__ = "procedure"
    __table_args__ = (UniqueConstraint("insured_id", "performed_on", "facility_code", "procedure_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    upload_id: Mapped[str] = mapped_column(String(36))
    performed_on: Mapped[dt.date]
    facility_code: Mapped[str] = mapped_column(String(10))
    procedure_code: Mapped[str] = mapped_column(String(9))
    procedure_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(4))  # 診療 / 手術
    inpatient: Mapped[bool]
