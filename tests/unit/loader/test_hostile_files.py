"""Hostile insurer files through the shared reader and ``hokensha-load --dry-run``: a My Number in
any column, never echoed; bad bytes as per-line rejects; a line-length limit in linear time; and
summaries that always add up to the file's records."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hokensha_loader.core import default_report_path
from schemas.identifiers import my_number_in
from schemas.insurer_files import (
    CHECKUP_COLUMNS,
    ELIGIBILITY_COLUMNS,
    MAX_LINE,
    MEDICATION_COLUMNS,
    FileFormatError,
    FileReader,
    check_rows,
)

from .helpers import GOOD_ROW, HEADER, MY_NUMBER, Result, csv_text, row

Load = Callable[..., Result]
HOSTILE = ["123456789018", "1234.5678.9018", "1234/5678/9018", "1234|5678|9018", "１２３４ ５６７８ ９０１８",
           "".join(chr(0x0660 + int(d)) for d in MY_NUMBER)]
MEDICATION = {
    "insurer_number": "33120015", "symbol": "12", "number": "3456", "branch": "00", "dispensed_on": "2025-01-10",
    "facility_code": "1312345679", "drug_code": "620000001", "drug_name": "ロキソニン錠60mg", "quantity": "3",
    "unit": "錠", "days": "5",
}
CHECKUP = {"insurer_number": "33120015", "symbol": "12", "number": "3456", "branch": "00", "checked_on": "2025-04-01",
           "height_cm": "170", "weight_kg": "60", "hba1c": "5.5", "urine_protein": "-"}
KINDS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "eligibility": (ELIGIBILITY_COLUMNS, GOOD_ROW),
    "medications": (MEDICATION_COLUMNS, MEDICATION),
    "checkups": ((*CHECKUP_COLUMNS, "height_cm", "weight_kg", "hba1c", "urine_protein"), CHECKUP),
}


def read(kind: str, data: bytes, fmt: str = "csv") -> list[tuple[int, list[tuple[str | None, str, str]]]]:
    reader = FileReader(kind, [data], fmt)  # type: ignore[arg-type]
    return [(c.line, [(e.field, e.code, e.message) for e in c.errors]) for c in check_rows(reader)]


def kind_csv(kind: str, *rows: dict[str, str]) -> bytes:
    columns, _ = KINDS[kind]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def all_output(result: Result, path: Path) -> str:
    report = default_report_path(path)
    return result.out + result.err + (report.read_text("utf-8-sig") if report.exists() else "")


def hidden(text: str, value: str) -> bool:
    return value not in text and not my_number_in(text)


# ---------------------------------------------------------------- item 4: My Number in any column


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_my_number_in_any_column_is_refused_and_never_echoed(kind: str, tmp_path: Path, load: Load) -> None:
    columns, good = KINDS[kind]
    rows = [dict(good) for _ in columns]
    for i, (column, value) in enumerate(zip(columns, HOSTILE * len(columns), strict=False)):
        rows[i][column] = value
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(kind_csv(kind, *rows))
    lines = read(kind, path.read_bytes())
    assert len(lines) == len(columns)
    for (line, errors), column in zip(lines, columns, strict=True):
        assert (column, "my_number_detected") in [(f, c) for f, c, _ in errors], (line, column, errors)
    result = load(kind, path, "--dry-run")
    assert f"rejected {len(columns)}" in result.out
    text = all_output(result, path)
    assert "my_number_detected" in text
    for value in HOSTILE:
        assert hidden(text, value), "no summary line or report line carries the value"


@pytest.mark.parametrize("kind", list(KINDS))
def test_ndjson_columns_are_screened_too(kind: str) -> None:
    columns, good = KINDS[kind]
    lines = []
    for column in columns:
        value: Any = int(MY_NUMBER) if column in ("days", "height_cm", "quantity") else "1234 5678 9018"
        lines.append(json.dumps({**good, column: value}, ensure_ascii=False))
    result = read(kind, ("\n".join(lines) + "\n").encode(), "ndjson")
    for (_, errors), column in zip(result, columns, strict=True):
        assert (column, "my_number_detected") in [(f, c) for f, c, _ in errors]
        assert all(not my_number_in(m) for _, _, m in errors)


def test_messages_name_the_field_and_rule_never_the_value() -> None:
    secret = "秘密の値X9"
    bad = row(birth_date=secret, sex=secret, post_number=secret, copay_ratio=secret, card_classification=secret,
              branch=secret, insurer_number=secret)
    errors = read("eligibility", csv_text(bad).encode())[0][1]
    assert {f for f, _, _ in errors} >= {"birth_date", "sex", "post_number", "copay_ratio", "branch",
                                         "insurer_number", "card_classification"}
    for _, _, message in errors:
        assert secret not in message and "X9" not in message
    meds = read("medications", kind_csv("medications", {**MEDICATION, "days": "99999", "facility_code": secret,
                                                        "dispensed_on": secret, "quantity": secret}))[0][1]
    assert {c for _, c, _ in meds} >= {"out_of_range", "invalid_format", "invalid_date", "invalid_number"}
    assert all(secret not in m and "99999" not in m for _, _, m in meds)


def test_a_list_or_object_where_text_is_expected_is_a_type_error_not_a_joined_name() -> None:
    lines = [
        json.dumps({**GOOD_ROW, "name": ["123456", "789018"]}),
        json.dumps({**GOOD_ROW, "address": {"a": "b"}}),
        json.dumps({**GOOD_ROW, "number": ["3456"]}),
        json.dumps(GOOD_ROW),
    ]
    result = read("eligibility", ("\n".join(lines) + "\n").encode(), "ndjson")
    assert [(line, [(f, c) for f, c, _ in e]) for line, e in result] == [
        (1, [("name", "invalid_format")]),
        (2, [("address", "invalid_format")]),
        (3, [("number", "invalid_format")]),
        (4, []),
    ]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("column", [MY_NUMBER, "x_1234-5678-9018", "番号123456789018"])
def test_a_my_number_as_a_column_name_refuses_the_file_without_echo(fmt: str, column: str) -> None:
    if fmt == "csv":
        data = (HEADER + "," + column + "\n").encode()
    else:
        data = (json.dumps({**GOOD_ROW, column: "1"}, ensure_ascii=False) + "\n").encode()
    with pytest.raises(FileFormatError) as info:
        read("eligibility", data, fmt)
    assert info.value.code == "my_number_detected"
    assert not my_number_in(info.value.message)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_an_unknown_column_that_is_not_a_plain_name_is_named_by_position(fmt: str) -> None:
    odd = "山田 太郎 様"
    if fmt == "csv":
        data = (HEADER + ",extra_col," + odd + "\n").encode()
    else:
        data = (json.dumps({**GOOD_ROW, odd: "1"}, ensure_ascii=False) + "\n").encode()
    with pytest.raises(FileFormatError) as info:
        read("eligibility", data, fmt)
    assert info.value.code == "unknown_column"
    assert odd not in info.value.message and "太郎" not in info.value.message
    if fmt == "csv":
        assert "'extra_col'" in info.value.message and f"column {len(ELIGIBILITY_COLUMNS) + 2}" in info.value.message


# ---------------------------------------------------------------- item 8: bad bytes are per-line rejects


def test_nul_surrogate_and_deep_nesting_in_ndjson_are_per_line_rejects() -> None:
    good = json.dumps(GOOD_ROW)
    lines = [
        good,
        json.dumps({**GOOD_ROW, "name": "山\u0000田"}),  # an escaped NUL
        good.replace('"number": "3456"', '"number": "34\\ud800"'),  # a lone surrogate
        "[" * 100_000 + "]" * 100_000,  # nested 100,000 deep (longer than a line may be)
        "[" * 30_000 + "]" * 30_000,  # nested 30,000 deep, within the line limit
        good.replace("3456", "34\x0056"),  # a raw NUL byte
        good,
    ]
    result = read("eligibility", ("\n".join(lines) + "\n").encode(), "ndjson")
    assert [(line, [c for _, c, _ in e]) for line, e in result] == [
        (1, []),
        (2, ["invalid_character"]),
        (3, ["invalid_character"]),
        (4, ["line_too_long"]),
        (5, ["malformed_json"]),
        (6, ["invalid_character"]),
        (7, []),
    ]


def test_a_nul_in_a_csv_line_rejects_that_line_only(tmp_path: Path, load: Load) -> None:
    text = csv_text(row(number="1"), row(number="2", name="山\x00田"), row(number="3"))
    assert [(line, [c for _, c, _ in e]) for line, e in read("eligibility", text.encode())] == [
        (2, []), (3, ["invalid_character"]), (4, []),
    ]
    path = tmp_path / "nul.csv"
    path.write_text(text, encoding="utf-8")
    assert "accepted 2, rejected 1" in load("eligibility", path, "--dry-run").out


def test_a_nul_in_the_header_refuses_the_file() -> None:
    with pytest.raises(FileFormatError) as info:
        read("eligibility", (HEADER.replace("name,", "na\x00me,") + "\n").encode())
    assert (info.value.code, info.value.line) == ("invalid_character", 1)


# ---------------------------------------------------------------- item 13: line-length limit, linear time


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_multi_mib_line_is_refused_quickly_and_the_rest_is_read(fmt: str) -> None:
    long = "x" * (8 * 1024 * 1024)
    if fmt == "csv":
        data = csv_text(row(number="1"), row(number="2", address=long), row(number="3")).encode()
    else:
        data = "\n".join(json.dumps({**GOOD_ROW, "number": n, "address": a})
                         for n, a in (("1", "a"), ("2", long), ("3", "b"))).encode() + b"\n"
    chunks = [data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)]
    started = time.perf_counter()
    reader = FileReader("eligibility", chunks, fmt)  # type: ignore[arg-type]
    result = [(c.line, [e.code for e in c.errors]) for c in check_rows(reader)]
    elapsed = time.perf_counter() - started
    first = 2 if fmt == "csv" else 1
    assert result == [(first, []), (first + 1, ["line_too_long"]), (first + 2, [])]
    assert elapsed < 2.0, elapsed


def test_reading_a_body_without_newlines_is_linear() -> None:
    def timed(size: int) -> float:
        data = (HEADER + "\n").encode() + b"a" * size
        chunks = [data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)]
        started = time.perf_counter()
        rows = [(c.line, [e.code for e in c.errors]) for c in check_rows(FileReader("eligibility", chunks))]
        assert rows == [(2, ["line_too_long"])]
        return time.perf_counter() - started

    small, big = timed(16 * 1024 * 1024), timed(64 * 1024 * 1024)
    assert big < 3.0, big  # was 2.9 s at 64 MiB, 18 s at 128 MiB (quadratic)
    assert big < 8 * small + 0.2, (small, big)  # 4x the bytes, far from 16x the time


def test_a_line_just_within_the_limit_is_read() -> None:
    address = "丸" * (MAX_LINE - len(csv_text(row()).splitlines()[1]) - 10)
    result = read("eligibility", csv_text(row(address=address)).encode())
    assert result == [(2, [("address", "too_long", "address is longer than 200 characters")])]


def test_a_header_longer_than_the_limit_refuses_the_file() -> None:
    with pytest.raises(FileFormatError) as info:
        read("eligibility", (HEADER + "," + "x" * (MAX_LINE + 1) + "\n" + "a\n").encode())
    assert (info.value.code, info.value.line) == ("line_too_long", 1)


# ---------------------------------------------------------------- item 15: the summary adds up


def sixty(malformed: dict[int, str]) -> str:
    """A 60-row eligibility CSV (lines 2..61) with some physical lines replaced."""
    lines = csv_text(*[row(number=str(1000 + i)) for i in range(60)]).splitlines()
    for number, text in malformed.items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n"


GOOD_LINE = csv_text(row(number="9999")).splitlines()[1]
MALFORMED: dict[str, tuple[dict[int, str], set[int]]] = {
    # name: (replaced lines, the lines that must be rejected)
    "stray quote at the start of a field": ({12: GOOD_LINE.replace("山田", '"山田')}, {12}),
    "stray quote inside a field": ({12: GOOD_LINE.replace("山田", '山"田')}, set()),
    # the '"' inside an unquoted field on line 30 is a plain character (CSV): that line is good
    "two stray quotes pairing over lines": (
        {12: GOOD_LINE.replace("山田", '"山田'), 30: GOOD_LINE.replace("山田", '山田"')}, {12}
    ),
    "unclosed quote on the last line": ({61: GOOD_LINE.replace("山田", '"山田')}, {61}),
    "quote then text": ({5: GOOD_LINE.replace("山田", '"山"田')}, {5}),
    "too few columns and a stray quote": ({7: 'add,"33120015', 8: "add,33120015,1,2"}, {7, 8}),
    "a closed quote then junk": ({20: GOOD_LINE.replace("add,", '"add"x,')}, {20}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_counts_add_up_on_malformed_files(case: str, tmp_path: Path, load: Load) -> None:
    replaced, rejected = MALFORMED[case]
    text = sixty(replaced)
    result = read("eligibility", text.encode())
    assert [line for line, _ in result] == list(range(2, 62)), "every line is accounted for, once, in order"
    assert {line for line, errors in result if errors} == rejected
    path = tmp_path / "sixty.csv"
    path.write_text(text, encoding="utf-8")
    out = load("eligibility", path, "--dry-run").out
    assert f"accepted {60 - len(rejected)}, rejected {len(rejected)}" in out


def test_a_quoted_line_break_is_still_one_record() -> None:
    quoted = GOOD_LINE.replace("東京都千代田区丸の内1-1-1", '"東京都千代田区\n丸の内1-1-1"')
    text = csv_text(row(number="1")) + quoted + "\n" + csv_text(row(number="2")).splitlines()[1] + "\n"
    reader = FileReader("eligibility", [text.encode()])
    checked = list(check_rows(reader))
    assert [(c.line, c.errors) for c in checked] == [(2, []), (3, []), (5, [])]
    assert reader.rows_read == 3



DEVANAGARI = "".join(chr(0x0966 + int(d)) for d in MY_NUMBER)


@pytest.mark.parametrize("name", ["⑫③④⑤⑥⑦⑧⑨⓪①⑧", "１２３４５６７８９０１８", "x" + DEVANAGARI])
def test_the_fast_path_never_accepts_digits_in_other_forms(name: str) -> None:
    """Plain ``add`` rows take the reader's fast path: a name of circled, full-width or
    Devanagari digits must still reach the My Number check."""
    assert read("eligibility", csv_text(row(name=name)).encode()) == [
        (2, [("name", "my_number_detected", "name holds a 12-digit individual number (My Number): never accepted")])
    ]


def test_dates_side_by_side_in_a_list_column_are_not_a_my_number() -> None:
    """Two 特定疾病 entries: the digits of "2024-04-01|2025-04-01" read as "202404012025" taken
    together, which passes the check digit; dates are not a My Number, and a number split by the
    list separator still is."""
    assert my_number_in("2024-04-01|2025-04-01")  # why the list column needs its own screen
    good = {**GOOD_ROW, "disease_category": "1|2", "disease_valid_from": "2024-04-01|2025-04-01",
            "disease_valid_to": "|", "disease_self_pay": "10000|20000"}
    hostile = {**good, "disease_valid_from": "1234|5678|9018"}
    columns = (*ELIGIBILITY_COLUMNS, "disease_category", "disease_valid_from", "disease_valid_to", "disease_self_pay")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows([good, hostile])
    (_, accepted), (_, refused) = read("eligibility", buf.getvalue().encode())
    assert accepted == []
    assert ("disease_valid_from", "my_number_detected") in [(f, c) for f, c, _ in refused]
