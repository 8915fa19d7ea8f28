"""The reception side: today's checks (memory only), by-number checks, 一括照会, drug/checkup history.

Nothing here touches the disk: the board forgets everything when the (Japanese) day changes or
the process stops.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from pydantic import ValidationError

from clinic_terminal.client import ServerError
from clinic_terminal.kiosk.flow import SERVER_UNAVAILABLE, CheckRecord
from clinic_terminal.kiosk.messages import VALIDITY
from schemas.card import Checkups, Medications
from schemas.eligibility import BatchCreated, BatchResult, ByNumberQuery, EligibilityResult

logger = logging.getLogger(__name__)

JST: Final = dt.timezone(dt.timedelta(hours=9), "JST")
Role = Literal["reception", "physician", "dentist", "pharmacist"]

REASON_OF_LOSS: Final = {"01": "死亡", "02": "生活保護", "03": "他保険加入", "99": "その他"}
LIMIT_CLASS: Final = {
    "A01": "ア", "A02": "イ", "A03": "ウ", "A04": "エ", "A05": "オ", "A06": "オ（境）",
    "B01": "現役並みⅢ", "B02": "現役並みⅡ", "B03": "現役並みⅠ", "B04": "一般Ⅱ", "B05": "一般Ⅰ",
    "B06": "低所得Ⅱ", "B07": "低所得Ⅰ", "B08": "低所得Ⅰ（老福）", "B09": "低所得Ⅰ（境）", "B10": "一般Ⅰ（境）",
}
DISEASE: Final = {"1": "人工透析", "2": "血友病", "3": "血液製剤によるHIV感染症"}
SEX: Final = {"1": "男", "2": "女", "3": ""}
PERSONAL_FAMILY: Final = {"1": "本人", "2": "家族"}

#: CSV headers accepted for 一括照会 (English as in the contract, or the usual Japanese ones).
BATCH_COLUMNS: Final = {
    "insurer_number": "insurer_number", "保険者番号": "insurer_number",
    "symbol": "symbol", "記号": "symbol",
    "number": "number", "番号": "number",
    "branch": "branch", "枝番": "branch",
    "birth_date": "birth_date", "生年月日": "birth_date",
    "as_of": "as_of", "照会日": "as_of",
}


class StaffServer(Protocol):
    def by_number(self, query: ByNumberQuery) -> EligibilityResult: ...

    def create_batch(self, queries: list[ByNumberQuery], label: str | None = None) -> BatchCreated: ...

    def get_batch(self, batch_id: str) -> BatchResult: ...

    def medications(self, visit_id: str) -> Medications: ...

    def checkups(self, visit_id: str) -> Checkups: ...


class CheckJournaled(Exception):
    """The server could not be reached: the by-number check was journalled for a later re-check."""

    def __init__(self, entry: Any) -> None:
        super().__init__("the check was journalled for a re-check")
        self.entry = entry


class BatchInputError(ValueError):
    """Rows of a 一括照会 that cannot be sent; ``problems`` lists them (row number, message)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"{row}行目: {text}" for row, text in problems))
        self.problems = problems


@dataclass(frozen=True)
class BatchEntry:
    batch_id: str
    label: str | None
    count: int
    created_at: dt.datetime


class ReceptionBoard:
    """Today's checks in memory; cleared when the Japanese calendar day changes."""

    def __init__(self, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._day = self._today()
        self._records: list[CheckRecord] = []
        self._batches: list[BatchEntry] = []
        self._ids = itertools.count(100_000)

    def _today(self) -> dt.date:
        return self._now().astimezone(JST).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._records, self._batches = today, [], []

    def add(self, record: CheckRecord) -> None:
        with self._lock:
            self._roll()
            self._records.append(record)

    def add_number_check(self, result: EligibilityResult) -> CheckRecord:
        record = CheckRecord(id=next(self._ids), at=self._now(), method="number", result=result)
        self.add(record)
        return record

    def records(self) -> list[CheckRecord]:
        with self._lock:
            self._roll()
            return list(reversed(self._records))

    def visit(self, visit_id: str) -> CheckRecord | None:
        with self._lock:
            self._roll()
            return next((r for r in self._records if r.result.visit_id == visit_id), None)

    def add_batch(self, entry: BatchEntry) -> None:
        with self._lock:
            self._roll()
            self._batches.append(entry)

    def batches(self) -> list[BatchEntry]:
        with self._lock:
            self._roll()
            return list(reversed(self._batches))

    def clear(self) -> None:
        with self._lock:
            self._records, self._batches = [], []


class StaffService:
    """What the reception screen can do, over the server client and the board."""

    def __init__(
        self, server: StaffServer, board: ReceptionBoard, *, role: Role = "reception",
        outage: Callable[[ByNumberQuery], Any] | None = None,
    ) -> None:
        self._server = server
        self._board = board
        self.role: Role = role
        self._outage = outage  # journals a by-number check the server cannot answer (outage mode)

    @property
    def can_see_medications(self) -> bool:
        return self.role in ("physician", "dentist", "pharmacist")

    @property
    def can_see_checkups(self) -> bool:
        return self.role in ("physician", "dentist")

    def by_number(self, query: ByNumberQuery) -> CheckRecord:
        """Ask the server; when it cannot be reached, journal the check (raises ``CheckJournaled``)."""
        try:
            result = self._server.by_number(query)
        except ServerError as exc:
            if exc.code != SERVER_UNAVAILABLE or self._outage is None:
                raise
            try:
                entry = self._outage(query)
            except Exception:  # the journal cannot take it: the desk sees the server error as before
                logger.exception("staff: the unanswered by-number check could not be journalled")
                raise exc from None
            raise CheckJournaled(entry) from exc
        return self._board.add_number_check(result)

    def create_batch(self, queries: list[ByNumberQuery], label: str | None) -> BatchEntry:
        created = self._server.create_batch(queries, label)
        entry = BatchEntry(created.batch_id, label, created.count, dt.datetime.now(dt.UTC))
        self._board.add_batch(entry)
        return entry

    def batch(self, batch_id: str) -> BatchResult:
        return self._server.get_batch(batch_id)

    def medications(self, visit_id: str) -> Medications:
        return self._server.medications(visit_id)

    def checkups(self, visit_id: str) -> Checkups:
        return self._server.checkups(visit_id)


def parse_batch_csv(text: str, *, default_as_of: dt.date | None = None) -> list[ByNumberQuery]:
    """Rows of a small CSV (header required) -> queries; raises ``BatchInputError`` listing bad rows."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows = [row for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise BatchInputError([(1, "データがありません")])
    header = [BATCH_COLUMNS.get(cell.strip()) for cell in rows[0]]
    unknown = [cell for cell, name in zip(rows[0], header, strict=True) if name is None]
    if unknown:
        raise BatchInputError([(1, f"不明な列: {', '.join(unknown)}")])
    dicts = [
        {name: cell.strip() for name, cell in zip(header, row, strict=False) if name is not None}
        for row in rows[1:]
    ]
    return queries_from_rows(dicts, default_as_of=default_as_of, first_row=2)


def queries_from_rows(
    rows: Iterable[dict[str, Any]], *, default_as_of: dt.date | None = None, first_row: int = 1
) -> list[ByNumberQuery]:
    queries: list[ByNumberQuery] = []
    problems: list[tuple[int, str]] = []
    for index, row in enumerate(rows, start=first_row):
        values = {k: v for k, v in row.items() if v not in (None, "")}
        if default_as_of is not None and "as_of" not in values:
            values["as_of"] = default_as_of
        birth = values.get("birth_date")
        if isinstance(birth, str) and len(birth) == 8 and birth.isdigit():
            values["birth_date"] = f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"
        try:
            queries.append(ByNumberQuery.model_validate(values))
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            problems.append((index, f"入力に誤りがあります（{fields or '形式'}）"))
    if problems:
        raise BatchInputError(problems)
    if not queries:
        raise BatchInputError([(first_row, "データがありません")])
    return queries


# --- JSON for the staff screen ------------------------------------------------------------------


def _d(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def result_json(result: EligibilityResult) -> dict[str, Any]:
    """An eligibility result with labels the reception staff read (validity reason, classes)."""
    insured = result.insured
    out: dict[str, Any] = {
        "usable": result.usable,
        "validity": result.validity,
        "validity_label": VALIDITY.get(result.validity, str(result.validity)),
        "processing": result.processing.model_dump(),
        "as_of": _d(result.as_of),
        "visit_id": result.visit_id,
        "certificate_notice": result.certificate_notice,
        "insured": None,
        "elderly": None,
        "limit_certificate": None,
        "specific_diseases": [
            {"category": d.category, "label": DISEASE.get(d.category, d.category), "valid_from": _d(d.valid_from),
             "valid_to": _d(d.valid_to), "self_pay": d.self_pay}
            for d in result.specific_diseases
        ],
    }
    if insured is not None:
        out["insured"] = {
            "name": insured.name, "name_kana": insured.name_kana,
            "insurer_number": insured.insurer_number, "insurer_name": insured.insurer_name,
            "symbol": insured.symbol, "number": insured.number, "branch": insured.branch,
            "card_classification": insured.card_classification,
            "personal_family": PERSONAL_FAMILY.get(insured.personal_family, insured.personal_family),
            "sex": SEX.get(insured.sex, ""), "birth_date": _d(insured.birth_date),
            "valid_from": _d(insured.valid_from), "valid_to": _d(insured.valid_to),
            "reason_of_loss": insured.reason_of_loss,
            "reason_of_loss_label": REASON_OF_LOSS.get(insured.reason_of_loss or "", None),
            "copay_ratio": insured.copay_ratio,
        }
    if result.elderly is not None:
        e = result.elderly
        out["elderly"] = {"copay_ratio": e.copay_ratio, "valid_from": _d(e.valid_from), "valid_to": _d(e.valid_to),
                          "certificate_date": _d(e.certificate_date)}
    if result.limit_certificate is not None:
        lc = result.limit_certificate
        out["limit_certificate"] = {
            "kind": lc.kind, "classification": lc.classification,
            "classification_label": LIMIT_CLASS.get(lc.classification, lc.classification),
            "valid_from": _d(lc.valid_from), "valid_to": _d(lc.valid_to),
        }
    return out


def record_json(record: CheckRecord) -> dict[str, Any]:
    consent = record.consent
    return {
        "id": record.id,
        "at": record.at.astimezone(JST).strftime("%H:%M:%S"),
        "method": record.method,
        "result": result_json(record.result),
        "consent": None if consent is None else {
            "drug": consent.drug, "checkup": consent.checkup, "clinical": consent.clinical,
            "limit_certificate": consent.limit_certificate, "setting": consent.setting,
            "expires_at": consent.expires_at.isoformat() if consent.expires_at else None,
        },
        "consent_note": record.consent_note,
    }
