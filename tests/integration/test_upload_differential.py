"""The upload pipeline against its oracle (both backends): a generated eligibility file with every
kind of bad row, then a file of changes and losses on top, uploaded through the API, must give
what the plain row-wise rules give — every line through the csv reader and
``validate_eligibility`` (no fast path), every record through the history algebra in file order,
in memory, one record at a time (``apply_record``; no batches, no bulk shortcut, no COPY). Same
counts, same rejects (line, field, code, message), same warnings, and the same current periods
and persons in the database, whatever the batch size.

The oracle lives only here: production has one path, and this test is what keeps it equal to the
rules it implements."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import schemas.insurer_files as insurer_files
import shikaku_server.upload.service as service
from schemas.insurer_files import MAX_LINE, EligibilityRecord, FileReader, RowError, check_rows
from shikaku_server.auth.service import add_insurer
from shikaku_server.database import transaction
from shikaku_server.eligibility.history import Key, KeyState, RecordError, apply_record, person_key
from shikaku_server.eligibility.service import PERIOD_FIELDS
from testbed.population import ELIGIBILITY_HEADER, default_insurers, eligibility_rows, iter_people
from tests.conftest import auth

MY_NUMBER = "123456789018"  # 12 digits with a valid individual-number check digit
TODAY = dt.date(2026, 11, 28)
INSURERS = [i.number for i in default_insurers()]
PERMITTED = frozenset(INSURERS[:-1])  # the token may not write the last insurer's persons
# the reject codes each file must show (so the comparison is not of two empty lists)
CODES = {"invalid_date", "invalid_code", "check_digit", "required", "date_order", "my_number_detected",
         "invalid_character", "line_too_long", "malformed_csv", "column_count", "overlap", "not_found",
         "insurer_not_permitted", "invalid_format"}


def _line(cells: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(cells.get(c, "")) for c in ELIGIBILITY_HEADER])
    return buf.getvalue()


def _cell(value: Any) -> str:
    return "|".join(value) if isinstance(value, list) else str(value)


def _hostile(base: list[dict[str, Any]], rng: random.Random) -> list[bytes]:
    """Lines (bytes, each with its line end) of every kind the rules treat apart, built from
    good rows of ``base``."""
    good = [r for r in base if r["action"] == "add"]

    def some(**over: Any) -> dict[str, Any]:
        return {**rng.choice(good), **over}

    fresh = iter(range(900_000, 999_999))

    def new(**over: Any) -> dict[str, Any]:
        return some(**{"number": str(next(fresh)), "valid_to": "", "reason_of_loss": "", **over})

    twin = new()
    lines = [
        # field errors, one or several per row (the validator's own order)
        _line(some(birth_date="1980-13-01")),
        _line(some(sex="9", card_classification="77")),
        _line(some(insurer_number="01130010")),  # wrong check digit
        _line(some(name="", name_kana="")),
        _line(new(valid_from="2024-04-01", valid_to="2024-03-31")),  # date order
        _line(new(birth_date="2025-01-01", valid_from="2024-04-01")),  # starts before birth
        _line(some(copay_ratio="25")),
        _line(some(action="move")),
        _line(some(post_number="12-345")),
        _line(some(branch="1x")),
        _line(new(elderly_ratio="20", elderly_valid_from="")),
        _line(new(limit_kind="01", limit_class="", limit_valid_from="2024-04-01")),
        _line(new(disease_category="9", disease_valid_from="2024-04-01")),
        _line(new(disease_category="1|2", disease_valid_from="2024-04-01")),  # a list one entry short
        # a My Number anywhere: refused without the value
        _line(some(name=f"山田{MY_NUMBER}")),
        _line(some(address=f"東京都 {MY_NUMBER[:4]}-{MY_NUMBER[4:8]}-{MY_NUMBER[8:]}")),
        _line(some(symbol=MY_NUMBER)),
        # lines that cannot be read
        _line(some()).replace("add", "add\x00", 1),
        "add," + "x" * (MAX_LINE + 10) + "\n",  # too long
        _line(some()).replace(",", ',"', 3),  # a quote never closed
        "add,01130012,1,2\n",  # too few columns
        "\n",  # blank: not a record
        # good rows the fast path does not take
        _line(new(address="東京都千代田区,丸の内1-1-1")),  # a quoted comma
        _line(new(address="東京都千代田区\n丸の内1-1-1")),  # a quoted line break: two physical lines
        _line(new(number="９８７６５")),  # full-width digits (NFKC)
        _line(new(name_kana="ﾔﾏﾀﾞ ﾀﾛｳ")),  # half-width kana
        _line(new(name="𠮷田 髙子")),  # outside JIS X 0208: accepted with a warning
        _line(new(valid_from="20240401", birth_date="19800102", card_classification="1")),
        _line(new(elderly_ratio="20", elderly_valid_from="2024-04-01", elderly_valid_to="2025-03-31")),
        _line(new(disease_category="1|3", disease_valid_from="2024-04-01|2025-04-01", disease_self_pay="10000|")),
        # the history: overlaps, re-sends, changes and losses that find nothing
        _line(twin),
        _line(twin),  # the same add twice: unchanged
        _line({**twin, "valid_from": "2024-06-01", "name": "別人"}),  # overlaps the twin
        _line({**twin, "action": "change", "valid_from": "2025-06-01", "copay_ratio": "20"}),
        _line({**twin, "action": "change", "valid_from": "1990-01-01"}),  # before it starts: not_found
        _line(new(action="change", valid_from="2025-01-01")),  # a person with no period
        _line(new(action="loss", valid_to="2025-01-01", reason_of_loss="01")),
        _line(some(insurer_number=INSURERS[-1])),  # not this token's insurer
    ]
    return [line if isinstance(line, bytes) else line.encode("utf-8") for line in lines]


HEADER_LINE = ",".join(ELIGIBILITY_HEADER).encode() + b"\n"


def _file(base: list[dict[str, Any]], rng: random.Random) -> bytes:
    body = [_line(r).encode("utf-8") for r in base]
    for bad in _hostile(base, rng):
        body.insert(rng.randrange(len(body) + 1), bad)
    # (no line that is not UTF-8: the encoding is told from the head of the body, which here may
    # be all of it, and would make the whole file CP932; tests/unit/loader covers that line)
    return HEADER_LINE + b"".join(body)


def _changes(first: list[dict[str, Any]], seed: int) -> bytes:
    """Changes, losses and re-sends of the persons of ``first``, with bad rows among them."""
    rng = random.Random(seed)
    rows = [r for r in first if r["action"] == "add"]
    keep = ("insurer_number", "symbol", "number", "branch")
    out: list[dict[str, Any]] = []
    for r in rng.sample(rows, min(len(rows), 120)):
        pick = rng.random()
        key = {k: r[k] for k in keep}
        if pick < 0.4:
            out.append({**key, "action": "change", "valid_from": "2026-10-01", "address": "大阪府大阪市北区1-1"})
        elif pick < 0.6:
            out.append({**key, "action": "loss", "valid_to": "2026-09-30", "reason_of_loss": "03"})
        elif pick < 0.75:
            out.append(r)  # the same add again: unchanged (or overlap, when a change split it)
        elif pick < 0.85:
            out.append({**key, "action": "change", "valid_from": "1900-01-01", "copay_ratio": "20"})
        else:
            out.append({**key, "action": "loss", "valid_to": "1900-01-01", "reason_of_loss": "01"})
    return _file(out, rng)


# ---------------------------------------------------------------- the oracle


class Oracle:
    """The rules, row by row: what the upload of each file must answer and leave stored."""

    def __init__(self) -> None:
        self.states: dict[Key, KeyState] = {}

    def upload(self, body: bytes, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        accepted = rejected = unchanged = 0
        errors: list[RowError] = []
        warnings: list[RowError] = []
        with monkeypatch.context() as m:
            m.setattr(insurer_files, "fast_eligibility", lambda columns: None)  # the csv reader for every line
            checked = list(check_rows(FileReader("eligibility", [body], "csv")))
        superseded: dict[int, Key] = {}
        for c in checked:
            record = c.record
            if c.errors or not isinstance(record, EligibilityRecord):
                rejected += 1
                errors += c.errors
                continue
            if record.insurer_number not in PERMITTED:
                rejected += 1
                errors.append(service._not_permitted(c.line, "insurer_number", record.insurer_number))
                continue
            warnings += c.warnings
            key = person_key(record)
            state = self.states.get(key) or KeyState(record, None, [])
            try:
                changed = apply_record(record, state, superseded)
            except RecordError as exc:
                rejected += 1
                errors.append(RowError(record.line, exc.field, exc.code, exc.message))
                continue
            if key not in self.states and state.periods:
                self.states[key] = state
            accepted += changed
            unchanged += not changed
        return {
            "counts": (accepted, rejected, unchanged),
            "errors": _by_line([e.as_dict() for e in errors]),
            "warnings": _by_line([w.as_dict() for w in warnings]),
        }

    def stored(self) -> list[tuple[Any, ...]]:
        return sorted(
            (
                (*key, s.record.symbol, s.record.number, p.line, *(_plain(p.values[f]) for f in PERIOD_FIELDS))
                for key, s in self.states.items()
                for p in s.periods
            ),
            key=repr,
        )


def _by_line(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # the answer lists a batch's read rejects before its records' rejects: compare in line order
    # (a stable sort: the errors of one line keep the validator's order)
    return sorted(items, key=lambda e: e["line"])


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def stored(session_factory: Any) -> list[tuple[Any, ...]]:
    columns = ", ".join(f"p.{f}" for f in PERIOD_FIELDS)
    with session_factory() as s:
        rows = s.execute(
            sa.text(
                "SELECT i.insurer_number, i.symbol_norm, i.number_norm, i.branch, i.symbol, i.number, p.line, "
                f"{columns} "
                "FROM eligibility_period p JOIN insured i ON i.id = p.insured_id WHERE p.superseded_by IS NULL"
            )
        ).all()
    return sorted((tuple(_plain(_json(v)) for v in r) for r in rows), key=repr)


def _json(value: Any) -> Any:
    # SQLite hands JSON back as its text ("null" for None), PostgreSQL parsed
    if isinstance(value, str) and (value.startswith("[{") or value == "null"):
        return json.loads(value)
    return value


@pytest.mark.parametrize("batch", [7, 10000])
def test_the_pipeline_answers_and_stores_what_the_rules_say(
    client: TestClient,
    session_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
) -> None:
    monkeypatch.setattr(service, "BATCH", batch)
    with transaction(session_factory) as s:
        token = add_insurer(s, numbers=sorted(PERMITTED), name="differential")
    oracle = Oracle()
    base = list(eligibility_rows(iter_people(400, 13, today=TODAY)))
    for body in (_file(base, random.Random(13)), _changes(base, seed=14)):
        expected = oracle.upload(body, monkeypatch)
        headers = {**auth(token), "Content-Type": "text/csv"}
        r = client.post("/v1/uploads?kind=eligibility", content=body, headers=headers)
        assert r.status_code == 200, r.text
        out = r.json()
        assert not out["errors_truncated"]
        assert (out["accepted"], out["rejected"], out["unchanged"]) == expected["counts"]
        assert _by_line(out["errors"]) == expected["errors"]
        assert _by_line(out["warnings"]) == expected["warnings"]
        assert out["warning_count"] == len(expected["warnings"])
        assert stored(session_factory) == oracle.stored()
        assert expected["counts"][0] > 30 and len(expected["errors"]) > 30, "the file exercises the rules"
        assert {e["code"] for e in expected["errors"]} >= CODES
