"""Wire models of the patient's medical expenses (医療費通知情報; contract "Patient side",
``POST /v1/me/expenses``; docs/expenses.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.base import ResponseModel
from schemas.card import AccessLogRequest

Year = Annotated[int, Field(ge=2000, le=2100)]
ExportFormat = Literal["xlsx", "csv"]


class ExpensesRequest(AccessLogRequest):
    """``POST /v1/me/expenses``: the card's proof (``schemas.me.CardProof``) and the calendar year."""

    year: Year


class ExpensesExportRequest(ExpensesRequest):
    format: ExportFormat = "xlsx"


class ExpenseItem(ResponseModel):
    """One month at one facility for one kind of care, as the insurer's 医療費通知 lists it."""

    service_month: Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]
    facility_code: str
    facility_name: str
    care_kind: str  # 1 医科入院, 2 医科外来, 3 歯科, 4 調剤, 5 訪問看護
    care_kind_name: str
    days: int
    total_cost: int  # yen, the whole cost of the care
    patient_paid: int  # yen, what the patient paid at the counter


class ExpenseTotal(ResponseModel):
    days: int
    total_cost: int
    patient_paid: int


class MonthTotal(ExpenseTotal):
    service_month: str


class FacilityTotal(ExpenseTotal):
    facility_code: str
    facility_name: str


class Expenses(ResponseModel):
    """A calendar year of one person's expenses: the rows by month and facility, the totals of
    each month, of each facility and of the year."""

    year: int
    items: list[ExpenseItem]
    months: list[MonthTotal]
    facilities: list[FacilityTotal]
    total: ExpenseTotal
