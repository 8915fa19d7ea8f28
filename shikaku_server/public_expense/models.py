"""公費負担医療 (難病, 小児慢性, 自立支援, municipal programs): the 受給者証 of insured persons,
loaded by the prefecture or municipality (docs/assistance.md)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base


class PublicExpense(Base):
    __tablename__ = "public_expense"
    __table_args__ = (UniqueConstraint("insured_id", "payer_number", "recipient_number", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"), index=True)
    upload_id: Mapped[str] = mapped_column(String(36))
    payer_number: Mapped[str] = mapped_column(String(8))
    recipient_number: Mapped[str] = mapped_column(String(7))
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]
    monthly_cap: Mapped[int]  # 自己負担上限額, yen a month
