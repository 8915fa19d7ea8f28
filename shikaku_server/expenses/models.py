"""医療費通知情報: what a person's care cost, per month, facility and kind of care (docs/expenses.md).

Loaded by insurers (upload kind ``expenses``); read by the patient for the 医療費控除."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base


class Expense(Base):
    __tablename__ = "expense"
    # one row per person, month, facility and kind of care (a hospital's 入院 and 外来 of one
    # month are two rows, as on the insurer's 医療費通知)
    __table_args__ = (UniqueConstraint("insured_id", "service_month", "facility_code", "care_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    upload_id: Mapped[str] = mapped_column(String(36))
    service_month: Mapped[dt.date]  # the first day of the month of care
    facility_code: Mapped[str] = mapped_column(String(10))
    facility_name: Mapped[str] = mapped_column(String(200))
    care_kind: Mapped[str] = mapped_column(String(1))
    days: Mapped[int]
    total_cost: Mapped[int]  # yen: the whole cost of the care (10割)
    patient_paid: Mapped[int]  # yen: what the patient paid at the counter (窓口負担相当額)
