"""The reception side: today's checks (memory only), by-number checks, 一括照会, drug/checkup history.

Nothing here touches the disk: the board forgets everything when the (Japanese) day changes or
the process stops.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
import logging
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


#: the query's fields as the form labels them
FIELD_LABELS: Final = {
    "insurer_number": "保険者番号", "symbol": "記号", "number": "番号", "branch": "枝番",
    "birth_date": "生年月日", "as_of": "照会日", "include_limit_certificate": "限度額情報",
}


@dataclass(frozen=True)
class FieldProblem:
    """One field of one row that cannot be sent: which field and what is wrong (never its value)."""

    row: int
    field: str | None  # None: the row (or the file) as a whole
    message: str

    @property
    def text(self) -> str:
        label = FIELD_LABELS.get(self.field or "", self.field)
        return f"{label}: {self.message}" if label else self.message


class BatchInputError(ValueError):
    """Rows of a 一括照会 that cannot be sent; ``problems`` lists them (row number, message) and
    ``fields`` the same per field."""

    def __init__(self, problems: list[tuple[int, str]] | list[FieldProblem]) -> None:
        fields = [p if isinstance(p, FieldProblem) else FieldProblem(p[0], None, p[1]) for p in problems]
        super().__init__("; ".join(f"{p.row}行目: {p.text}" for p in fields))
        self.fields = fields
        self.problems = [(p.row, p.text) for p in fields]


def field_problem(name: str, error: Any) -> str:
    """What is wrong with one field, in the form's words (pydantic's error → Japanese)."""
    kind, text = str(error.get("type", "")), str(error.get("msg", ""))
    if kind == "missing":
        return "入力してください"
    if "my_number" in text or "My Number" in text:
        return "個人番号（マイナンバー）は入力できません。保険証・資格確認書の番号を入力してください"
    if name == "insurer_number":
        if "check digit" in text:
            return "検証番号（最後の1桁）が合いません。番号をお確かめください"
        return "8桁の数字で入力してください（国民健康保険は6桁）"
    if name == "branch":
        return "2桁の数字で入力してください（例: 00）"
    if name in ("birth_date", "as_of"):
        return "日付を入力してください（例: 1980-04-01）"
    if kind == "string_too_long":
        return "長すぎます（40文字まで）"
    if kind == "string_too_short":
        return "入力してください"
    if kind == "extra_forbidden":
        return "この項目は使えません"
    return "形式が正しくありません"


@dataclass(frozen=True)
class BatchEntry:
    batch_id: str
    label: str | None
    count: int
    created_at: dt.datetime


class ReceptionBoard:
    """Today's checks in memory; cleared when the Japanese calendar day changes.

    Beside the day's checks it keeps, also in memory only, the last check of each person seen on
    this terminal (keyed by a hash of kana name, birth date and sex; at most ``PREVIOUS_MAX``), so
    a check can say what changed since the person's previous one — a new insurer, a loss, another
    copay — even when that was on an earlier day. A restart forgets it.
    """

    PREVIOUS_MAX: Final = 5000

    def __init__(self, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._day = self._today()
        self._records: list[CheckRecord] = []
        self._batches: list[BatchEntry] = []
        self._ids = itertools.count(100_000)
        self._previous: OrderedDict[str, tuple[dt.datetime, EligibilityResult]] = OrderedDict()
        self._changes: dict[int, Changes] = {}
        self._searched: dict[int, ByNumberQuery] = {}

    def _today(self) -> dt.date:
        return self._now().astimezone(JST).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._records, self._batches = today, [], []
            self._changes, self._searched = {}, {}

    def add(self, record: CheckRecord) -> None:
        with self._lock:
            self._roll()
            self._records.append(record)
            key = person_key(record.result)
            if key is None:
                return
            previous = self._previous.pop(key, None)
            if previous is not None:
                self._changes[record.id] = Changes(previous[0], changes_between(previous[1], record.result))
            self._previous[key] = (record.at, record.result)
            while len(self._previous) > self.PREVIOUS_MAX:
                self._previous.popitem(last=False)

    def add_number_check(self, result: EligibilityResult, query: ByNumberQuery | None = None) -> CheckRecord:
        record = CheckRecord(id=next(self._ids), at=self._now(), method="number", result=result)
        if query is not None:
            with self._lock:
                self._searched[record.id] = query
        self.add(record)
        return record

    def changes(self, record_id: int) -> Changes | None:
        """What changed since the previous check of the same person (None: the first one seen)."""
        with self._lock:
            return self._changes.get(record_id)

    def searched(self, record_id: int) -> ByNumberQuery | None:
        """What the desk keyed for a by-number check."""
        with self._lock:
            return self._searched.get(record_id)

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
            self._previous, self._changes, self._searched = OrderedDict(), {}, {}


@dataclass(frozen=True)
class Changes:
    previous_at: dt.datetime
    items: list[str] = field(default_factory=list)


def person_key(result: EligibilityResult) -> str | None:
    """The same person across checks, whatever their insurer: kana name, birth date and sex
    (hashed: the map holds no name)."""
    insured = result.insured
    if insured is None:
        return None
    kana = "".join(unicodedata.normalize("NFKC", insured.name_kana).split())
    raw = f"{kana}|{insured.birth_date.isoformat()}|{insured.sex}"
    return hashlib.sha256(raw.encode()).hexdigest()


def copay_of(result: EligibilityResult) -> int | None:
    """The copay that applies (高齢受給者's when there is one), in percent."""
    if result.elderly is not None:
        return result.elderly.copay_ratio
    return None if result.insured is None else result.insured.copay_ratio


def wari(percent: int | None) -> str:
    """30 → 「3割」: one unit for every copay on the screen."""
    if percent is None:
        return "—"
    return f"{percent // 10}割" if percent % 10 == 0 else f"{percent / 10:g}割"


def changes_between(before: EligibilityResult, after: EligibilityResult) -> list[str]:
    """What the desk must notice since the person's previous check, in its words."""
    a, b = before.insured, after.insured
    out: list[str] = []
    if a is None or b is None:
        return out
    if a.insurer_number != b.insurer_number:
        old = a.insurer_name or a.insurer_number
        new = b.insurer_name or b.insurer_number
        out.append(f"保険者が変わりました（{old} → {new}）")
    elif (a.symbol, a.number, a.branch) != (b.symbol, b.number, b.branch):
        out.append("記号・番号が変わりました")
    if before.usable and not after.usable:
        out.append("資格を喪失しています（前回は有効）")
    elif not before.usable and after.usable:
        out.append("資格が有効になりました（前回は無効）")
    if copay_of(before) != copay_of(after):
        out.append(f"負担割合が変わりました（{wari(copay_of(before))} → {wari(copay_of(after))}）")
    la, lb = before.limit_certificate, after.limit_certificate
    if (la and la.classification) != (lb and lb.classification) and la is not None and lb is not None:
        out.append(f"限度額区分が変わりました（{LIMIT_CLASS.get(la.classification, la.classification)} → "
                   f"{LIMIT_CLASS.get(lb.classification, lb.classification)}）")
    return out


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
        return self._board.add_number_check(result, query)

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
    problems: list[FieldProblem] = []
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
            seen: set[str] = set()
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else None
                if name in seen:
                    continue
                seen.add(name or "")
                problems.append(FieldProblem(index, name, field_problem(name or "", error)))
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
            "copay_label": wari(insured.copay_ratio),
        }
    out["copay_label"] = wari(copay_of(result))
    if result.elderly is not None:
        e = result.elderly
        out["elderly"] = {"copay_ratio": e.copay_ratio, "copay_label": wari(e.copay_ratio),
                          "valid_from": _d(e.valid_from), "valid_to": _d(e.valid_to),
                          "certificate_date": _d(e.certificate_date)}
    if result.limit_certificate is not None:
        lc = result.limit_certificate
        out["limit_certificate"] = {
            "kind": lc.kind, "classification": lc.classification,
            "classification_label": LIMIT_CLASS.get(lc.classification, lc.classification),
            "valid_from": _d(lc.valid_from), "valid_to": _d(lc.valid_to),
        }
    return out


def query_json(query: ByNumberQuery) -> dict[str, Any]:
    """What the desk keyed (shown with a lookup that found nobody)."""
    return {"insurer_number": query.insurer_number, "symbol": query.symbol, "number": query.number,
            "branch": query.branch, "birth_date": query.birth_date.isoformat(),
            "as_of": _d(query.as_of)}


def attention_of(record: CheckRecord, changes: Changes | None) -> tuple[str, str]:
    """The board's one-word state of a check: who needs the desk, who can go on waiting."""
    if not record.result.usable:
        return "not_insured", "資格なし"
    if changes is not None and changes.items:
        return "changed", "変更あり"
    return "ok", "確認済み"


def record_json(record: CheckRecord, board: ReceptionBoard | None = None) -> dict[str, Any]:
    consent = record.consent
    changes = board.changes(record.id) if board is not None else None
    searched = board.searched(record.id) if board is not None else None
    attention, attention_label = attention_of(record, changes)
    return {
        "id": record.id,
        "at": record.at.astimezone(JST).strftime("%H:%M:%S"),
        "method": record.method,
        "result": result_json(record.result),
        "attention": attention,
        "attention_label": attention_label,
        "changes": None if changes is None else {
            "previous_at": changes.previous_at.astimezone(JST).strftime("%m/%d %H:%M"),
            "items": changes.items,
        },
        "searched": None if searched is None else query_json(searched),
        "consent": None if consent is None else {
            "drug": consent.drug, "checkup": consent.checkup, "clinical": consent.clinical,
            "limit_certificate": consent.limit_certificate, "setting": consent.setting,
            "expires_at": consent.expires_at.isoformat() if consent.expires_at else None,
        },
        "consent_note": record.consent_note,
    }
