"""The patient's medical expenses (医療費通知情報) of a calendar year, and their export for the
医療費控除: the 国税庁's 医療費集計フォーム (.xlsx) and CSV (docs/expenses.md).

The caller has already proven the patient by the card (``/v1/me/...``) and passes the proven
person's ``insured_id``; nothing here looks at any other person. Every read is logged first
(``what="expenses"`` or ``"expenses_export"``, role ``patient``, no facility): when the entry
cannot be written the read is refused with 503 ``unavailable`` and no data, as for the clinical
reads. The caller's request commits the entry."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from schemas.codes import CARE_KINDS
from schemas.expenses import ExpenseItem, Expenses, ExpenseTotal, ExportFormat, FacilityTotal, MonthTotal
from shikaku_server.access_log import service as access_log
from shikaku_server.eligibility.models import EligibilityPeriod
from shikaku_server.errors import UnavailableError
from shikaku_server.expenses.models import Expense

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
PATIENT_ROLE = "patient"

# 医療費集計フォーム (docs/expenses.md): the header row, the first data row and the columns
FORM_TITLE = "医療費集計フォーム"
FORM_HEADER_ROW = 8
FORM_FIRST_ROW = 9
FORM_COLUMNS = (
    "No.",
    "医療を受けた人",
    "病院・薬局などの支払先の名称",
    "診療・治療",
    "医薬品購入",
    "介護保険サービス",
    "その他の医療費",
    "支払った医療費の金額",
    "左のうち、補填される金額",
    "支払年月日",
)
FORM_TOTAL_CELL = "C3"  # 支払った医療費の合計
FORM_COVERED_CELL = "C4"  # 補填される金額の合計
APPLIES = "該当する"
# the 医療費の区分 column (D..G) of each kind of care: a prescription filled at a pharmacy is a
# 医薬品購入; every other kind is 診療・治療 (医療費通知情報 never holds 介護保険 or other costs)
_FORM_CATEGORY = {"1": "D", "2": "D", "3": "D", "4": "E", "5": "D"}
CSV_COLUMNS = ("診療年月", "医療機関等コード", "医療機関等名称", "診療区分", "日数", "医療費の総額", "窓口負担相当額")
DETAIL_SHEET = "医療費通知情報"


def expenses_of_year(session: Session, insured_id: int, year: int) -> Expenses:
    """The person's 医療費通知情報 of calendar ``year`` (service months January to December):
    one item per month, facility and kind of care (ordered so), with the totals of each month,
    of each facility and of the year. Logs the read first (``what="expenses"``); raises
    ``UnavailableError`` when the log cannot be written."""
    _log_read(session, insured_id, "expenses")
    return _year(session, insured_id, year)


def export_year(session: Session, insured_id: int, year: int, fmt: ExportFormat) -> tuple[bytes, str, str]:
    """The person's expenses of ``year`` as a file to download: ``(content, media type, file
    name)``. ``xlsx`` is the 医療費集計フォーム layout (docs/expenses.md) plus a sheet of the
    monthly rows; ``csv`` is the monthly rows, UTF-8 with a BOM (Excel opens it as such) and a
    total line. Logs the read first (``what="expenses_export"``)."""
    _log_read(session, insured_id, "expenses_export")
    expenses = _year(session, insured_id, year)
    if fmt == "csv":
        return expenses_csv(expenses), CSV_MEDIA_TYPE, f"iryouhi_{year}.csv"
    return expenses_xlsx(expenses, _name_of(session, insured_id)), XLSX_MEDIA_TYPE, f"iryouhi_{year}.xlsx"


def _log_read(session: Session, insured_id: int, what: str) -> None:
    access_log.record(session, insured_id=insured_id, facility_code=None, role=PATIENT_ROLE, what=what,
                      query_kind="self")  # as every /v1/me read (docs/patient.md)
    try:
        session.flush()  # the entry is written before the data is read
    except SQLAlchemyError as exc:
        raise UnavailableError("the access log could not be written: no data is served without it") from exc


def _year(session: Session, insured_id: int, year: int) -> Expenses:
    rows = session.execute(
        select(Expense)
        .where(
            Expense.insured_id == insured_id,
            Expense.service_month >= dt.date(year, 1, 1),
            Expense.service_month <= dt.date(year, 12, 1),
        )
        .order_by(Expense.service_month, Expense.facility_code, Expense.care_kind)
    ).scalars()
    items = [
        ExpenseItem(
            service_month=e.service_month.strftime("%Y-%m"),
            facility_code=e.facility_code,
            facility_name=e.facility_name,
            care_kind=e.care_kind,
            care_kind_name=CARE_KINDS.get(e.care_kind, e.care_kind),
            days=e.days,
            total_cost=e.total_cost,
            patient_paid=e.patient_paid,
        )
        for e in rows
    ]
    months: dict[str, list[ExpenseItem]] = defaultdict(list)
    facilities: dict[str, list[ExpenseItem]] = defaultdict(list)
    for item in items:
        months[item.service_month].append(item)
        facilities[item.facility_code].append(item)
    return Expenses(
        year=year,
        items=items,
        months=[MonthTotal(service_month=m, **_sum(group)) for m, group in months.items()],
        facilities=[
            # the name of the facility's latest row (a facility may have been renamed in the year)
            FacilityTotal(facility_code=code, facility_name=group[-1].facility_name, **_sum(group))
            for code, group in sorted(facilities.items())
        ],
        total=ExpenseTotal(**_sum(items)),
    )


def _sum(items: Iterable[ExpenseItem]) -> dict[str, int]:
    days = cost = paid = 0
    for i in items:
        days, cost, paid = days + i.days, cost + i.total_cost, paid + i.patient_paid
    return {"days": days, "total_cost": cost, "patient_paid": paid}


def _name_of(session: Session, insured_id: int) -> str:
    """The person's name on their current eligibility (the form's 医療を受けた人)."""
    name = session.execute(
        select(EligibilityPeriod.name)
        .where(EligibilityPeriod.insured_id == insured_id, EligibilityPeriod.superseded_by.is_(None))
        .order_by(EligibilityPeriod.valid_from.desc())
        .limit(1)
    ).scalar_one_or_none()
    return name or ""


def _text(value: str) -> str:
    """A text cell that a spreadsheet never runs as a formula (CSV/formula injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def form_rows(expenses: Expenses) -> list[tuple[str, str, str, int]]:
    """The 医療費集計フォーム's rows: one per facility and 区分 column (``D`` 診療・治療 or ``E``
    医薬品購入), the year's ``patient_paid`` summed, in facility-code order:
    ``(facility_code, facility_name, column, amount)``. Facilities whose year cost the patient
    nothing are left out (the form is for what was paid)."""
    paid: dict[tuple[str, str], int] = defaultdict(int)
    names: dict[str, str] = {}
    for item in expenses.items:
        paid[(item.facility_code, _FORM_CATEGORY[item.care_kind])] += item.patient_paid
        names[item.facility_code] = item.facility_name
    return [(code, names[code], column, amount) for (code, column), amount in sorted(paid.items()) if amount]


def expenses_xlsx(expenses: Expenses, patient_name: str) -> bytes:
    workbook = Workbook()
    form = workbook.active
    assert isinstance(form, Worksheet)
    form.title = FORM_TITLE
    form["A1"] = FORM_TITLE
    form["A1"].font = Font(bold=True, size=14)
    form["E1"] = f"{expenses.year}年分（医療費通知情報から作成）"
    form["B3"] = "支払った医療費の合計"
    form["B4"] = "補填される金額の合計"
    rows = form_rows(expenses)
    # the sums as values, not formulas: a reader that does not compute (openpyxl, an importer)
    # sees the same figure as Excel
    form[FORM_TOTAL_CELL] = sum(amount for *_, amount in rows)
    form[FORM_COVERED_CELL] = 0
    form["D7"] = "医療費の区分"
    form.merge_cells("D7:G7")
    for col, title in enumerate(FORM_COLUMNS, start=1):
        cell = form.cell(row=FORM_HEADER_ROW, column=col, value=title)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, horizontal="center")
    for n, (_code, name, column, amount) in enumerate(rows, start=1):
        r = FORM_FIRST_ROW + n - 1
        form.cell(row=r, column=1, value=n)
        form.cell(row=r, column=2, value=_text(patient_name))
        form.cell(row=r, column=3, value=_text(name))
        form[f"{column}{r}"] = APPLIES
        form.cell(row=r, column=8, value=amount).number_format = "#,##0"
        form.cell(row=r, column=9, value=0).number_format = "#,##0"
    for letter, width in zip("ABCDEFGHIJ", (5, 16, 30, 10, 10, 12, 12, 16, 16, 12), strict=True):
        form.column_dimensions[letter].width = width
    _detail_sheet(workbook.create_sheet(DETAIL_SHEET), expenses)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _detail_sheet(sheet: Worksheet, expenses: Expenses) -> None:
    """The monthly rows as the 医療費通知 lists them, with the figures that the 医療費控除の明細書's
    「医療費通知に関する事項」 asks for."""
    sheet["A1"] = f"{expenses.year}年分 医療費通知情報"
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A2"] = "医療費通知に記載された医療費の額（自己負担額）"
    sheet["E2"] = expenses.total.patient_paid
    sheet.append([])
    sheet.append(list(CSV_COLUMNS))
    for item in expenses.items:
        sheet.append(_detail_row(item))
    total = expenses.total
    sheet.append(["合計", "", "", "", total.days, total.total_cost, total.patient_paid])


def _detail_row(item: ExpenseItem) -> list[str | int]:
    return [
        item.service_month,
        item.facility_code,
        _text(item.facility_name),
        item.care_kind_name,
        item.days,
        item.total_cost,
        item.patient_paid,
    ]


def expenses_csv(expenses: Expenses) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in expenses.items:
        writer.writerow(_detail_row(item))
    total = expenses.total
    writer.writerow(["合計", "", "", "", total.days, total.total_cost, total.patient_paid])
    return out.getvalue().encode("utf-8-sig")
