"""The eligibility history algebra: how an insurer's ``add``, ``change`` and ``loss`` records
change one person's list of periods (docs/uploads.md, "Eligibility actions and history").

Pure functions over in-memory state: the upload reads a person's current periods, applies the
file's records to them here in file order, and writes the differences (rows retired, rows new).
Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from schemas.identifiers import normalize_person_text
from schemas.insurer_files import CheckupRecord, EligibilityRecord, MedicationRecord
from shikaku_server.eligibility.rules import covers
from shikaku_server.eligibility.service import PERIOD_FIELDS

ONE_DAY = dt.timedelta(days=1)
Key = tuple[str, str, str, str]  # insurer_number, symbol_norm, number_norm, branch


def person_key(record: EligibilityRecord | MedicationRecord | CheckupRecord) -> Key:
    return (record.insurer_number, record.symbol_norm, record.number_norm, record.branch)


@dataclass(slots=True)
class Period:
    values: dict[str, Any]  # PERIOD_FIELDS (dates as dt.date, diseases as JSON-able list)
    row_id: int | None = None  # None: new in this upload
    line: int = 0

    @property
    def valid_from(self) -> dt.date:
        v: dt.date = self.values["valid_from"]
        return v

    @property
    def valid_to(self) -> dt.date | None:
        v: dt.date | None = self.values["valid_to"]
        return v

    def covers(self, day: dt.date) -> bool:
        return covers(self.valid_from, self.valid_to, day)


@dataclass
class KeyState:
    record: EligibilityRecord  # the first record seen: symbol/number as sent
    insured_id: int | None
    periods: list[Period]


class RecordError(Exception):
    def __init__(self, field: str | None, code: str, message: str) -> None:
        super().__init__(message)
        self.field, self.code, self.message = field, code, message


def diseases_json(record: EligibilityRecord) -> list[dict[str, Any]] | None:
    if record.diseases is None:
        return None
    return [
        {
            "category": d.category,
            "valid_from": d.valid_from.isoformat(),
            "valid_to": d.valid_to.isoformat() if d.valid_to else None,
            "self_pay": d.self_pay,
        }
        for d in record.diseases
    ]


def record_values(record: EligibilityRecord) -> dict[str, Any]:
    """The state fields a record sets (None: not given, carry over)."""
    values: dict[str, Any] = {
        "name": record.name,
        "name_kana": record.name_kana,
        "sex": record.sex,
        "birth_date": record.birth_date,
        "address": record.address,
        "post_number": record.post_number,
        "personal_family": record.personal_family,
        "card_classification": record.card_classification,
        "copay_ratio": record.copay_ratio,
        "elderly_ratio": record.elderly_ratio,
        "elderly_valid_from": record.elderly_valid_from,
        "elderly_valid_to": record.elderly_valid_to,
        "limit_kind": record.limit_kind,
        "limit_class": record.limit_class,
        "limit_valid_from": record.limit_valid_from,
        "limit_valid_to": record.limit_valid_to,
        "diseases": diseases_json(record),
    }
    if record.name is not None:
        values["name_norm"] = normalize_person_text(record.name)
    values["address_norm"] = None if record.address is None else normalize_person_text(record.address)
    return values


def apply_record(record: EligibilityRecord, state: KeyState, superseded: dict[int, Key]) -> bool:
    """Apply one record to its person's periods in place: True when the history changed, False
    when it already held the record (``unchanged``); ``RecordError`` for a reject (nothing
    changed). Stored rows it replaces are added to ``superseded`` (row id -> person)."""
    periods = state.periods
    if record.action == "add":
        assert record.valid_from is not None
        new = Period(
            record_values(record)
            | {
                "valid_from": record.valid_from,
                "valid_to": record.valid_to,
                "reason_of_loss": record.reason_of_loss,
            },
            line=record.line,
        )
        for p in periods:
            if p.values == new.values or already_applied(p, new):
                return False  # the same period again: nothing to do
        for p in periods:
            if overlaps(p, new.valid_from, new.valid_to):
                raise RecordError(
                    "valid_from",
                    "overlap",
                    f"an eligibility period of this person already covers {max(p.valid_from, new.valid_from)}"
                    " (use action change, or loss first)",
                )
        insert_sorted(periods, new)
        return True
    if record.action == "change":
        day = record.valid_from
        assert day is not None
        base = next((p for p in reversed(periods) if p.covers(day)), None)
        if base is None:
            raise RecordError(
                "valid_from",
                "not_found",
                f"no eligibility of this person covers {day}: a change needs an existing period",
            )
        overlay = {k: v for k, v in record_values(record).items() if v is not None}
        values = base.values | overlay | {"valid_from": day}
        if record.valid_to is not None:
            values["valid_to"] = record.valid_to
        if record.reason_of_loss is not None:
            values["reason_of_loss"] = record.reason_of_loss
        if values == base.values:
            return False
        new_end = values["valid_to"]
        for p in periods:
            if p is not base and overlaps(p, day, new_end):
                raise RecordError(
                    "valid_to", "overlap", f"the changed period would overlap the one from {p.valid_from}"
                )
        retire(state, base, superseded)
        if base.valid_from < day:
            insert_sorted(periods, Period(base.values | {"valid_to": day - ONE_DAY}, line=record.line))
        insert_sorted(periods, Period(values, line=record.line))
        return True
    # loss: valid_to is the last day covered
    last = record.valid_to
    assert last is not None
    base = next((p for p in reversed(periods) if p.valid_from <= last), None)
    if base is None:
        raise RecordError("valid_to", "not_found", f"no eligibility of this person starts on or before {last}")
    if base.valid_to is not None and base.valid_to < last:
        raise RecordError(
            "valid_to",
            "not_found",
            f"the eligibility of this person already ended on {base.valid_to}, before {last}",
        )
    values = base.values | {"valid_to": last, "reason_of_loss": record.reason_of_loss}
    if values == base.values:
        # the period already ends on that day for that reason: this loss was applied before
        # (a re-send), and any later period was added after it, so it stays
        return False
    later = [p for p in periods if p.valid_from > last]
    retire(state, base, superseded)
    for p in later:
        retire(state, p, superseded)
    insert_sorted(periods, Period(values, line=record.line))
    return True


def retire(state: KeyState, period: Period, superseded: dict[int, Key]) -> None:
    state.periods.remove(period)
    if period.row_id is not None:
        superseded[period.row_id] = person_key(state.record)


_END_FIELDS = ("valid_to", "reason_of_loss")


def already_applied(stored: Period, added: Period) -> bool:
    """Whether an ``add`` is already in the history, ended or split since: a stored period starts
    on its first day with the same facts, and ends no later than it does (a later ``loss``
    shortened it, or a later ``change`` split it there). A re-send of the same history is then
    ``unchanged`` instead of ``overlap``."""
    if stored.valid_from != added.valid_from:
        return False
    end, stored_end = added.valid_to, stored.valid_to
    if end is not None and (stored_end is None or stored_end > end):
        return False
    a, b = stored.values, added.values
    return all(a[k] == b[k] for k in PERIOD_FIELDS if k not in _END_FIELDS)


def overlaps(p: Period, start: dt.date, end: dt.date | None) -> bool:
    return (end is None or p.valid_from <= end) and (p.valid_to is None or start <= p.valid_to)


def insert_sorted(periods: list[Period], new: Period) -> None:
    periods.append(new)
    periods.sort(key=lambda p: p.valid_from)
