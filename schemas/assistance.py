"""Wire models of 医療扶助 (public assistance) by-number queries (docs/assistance.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from schemas.base import RequestModel, ResponseModel

PayerNumber = Annotated[str, Field(pattern=r"^12[0-9]{6}$")]
RecipientNumber = Annotated[str, Field(pattern=r"^[0-9]{7}$")]
# valid: a ticket of the month for this facility covers the day; not_delegated (未委託): the
# recipient is known (a ticket of an earlier month, or of this month for another facility) but
# no ticket of this month for this facility covers the day; ended: this month's ticket for this
# facility ended before the day; not_found: no ticket of this recipient at all (or another birth date)
AssistanceStatus = Literal["valid", "not_delegated", "ended", "not_found"]


# the real result's 資格有効性 (OQSCD006) of each status: 6 「有効（未登録）」 is the 医療扶助-only
# code the real system answers for 未委託・未登録 (docs/assistance.md, sources)
VALIDITY_OF_STATUS: dict[str, int] = {"valid": 1, "ended": 2, "not_found": 4, "not_delegated": 6}


class AssistanceQuery(RequestModel):
    payer_number: PayerNumber  # 公費負担者番号 (法別番号 12)
    recipient_number: RecipientNumber  # 受給者番号
    birth_date: dt.date | None = None
    as_of: dt.date | None = None


class AssistanceTicket(ResponseModel):
    ticket_kind: Literal["1", "2"]  # 1 医療券, 2 調剤券
    month: Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]
    facility_code: str  # 指定医療機関
    valid_from: dt.date
    valid_to: dt.date | None
    self_pay: int | None  # 本人支払額, yen


class AssistanceRecipient(ResponseModel):
    office_code: str  # 福祉事務所
    payer_number: str
    recipient_number: str
    name: str
    name_kana: str
    birth_date: dt.date
    sex: str


class AssistanceResult(ResponseModel):
    status: AssistanceStatus
    validity: Annotated[int, Field(ge=1, le=6)]  # the real 資格有効性 of ``status`` (VALIDITY_OF_STATUS)
    as_of: dt.date
    recipient: AssistanceRecipient | None = None
    tickets: list[AssistanceTicket] = Field(default_factory=list)


class AssistanceMonthQuery(RequestModel):
    """A facility's 医療扶助 一括照会 for one 診療年月 (the XML family ``OQSmutic01``): every
    recipient with a ticket of ``month`` designating the querying facility."""

    month: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]  # MedicalTreatmentMonth, YYYY-MM


class AssistanceMonth(ResponseModel):
    month: str
    as_of: dt.date  # the day the statuses are of (docs/assistance.md, "by month")
    results: list[AssistanceResult]
