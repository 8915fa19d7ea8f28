"""The fast path of eligibility CSV reading (``schemas.insurer_files.fast_eligibility``) gives
the very records and errors of the full path (csv reader + ``validate_eligibility``)."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from pathlib import Path

import pytest

import schemas.insurer_files as files
from schemas.insurer_files import Checked, FileReader, check_rows
from testbed.population import ELIGIBILITY_HEADER, iter_people, write_eligibility_csv

TEMPLATE = {
    "action": "add",
    "insurer_number": "06139992",
    "symbol": "1000",
    "number": "0000001",
    "branch": "00",
    "name": "佐藤　幹",
    "name_kana": "ｻﾄｳ　ﾐｷ",
    "sex": "2",
    "birth_date": "1991-07-17",
    "address": "東京都千代田区1丁目3番6号",
    "post_number": "100-0001",
    "personal_family": "1",
    "card_classification": "01",
    "valid_from": "2020-02-18",
    "valid_to": "",
    "copay_ratio": "30",
    "reason_of_loss": "",
}
# values that each take a field off the fast path, or sit right at its edges
TRICKY: dict[str, list[str]] = {
    "action": ["ADD", " add", "change", "loss", "", "ad"],
    "insurer_number": ["06139998", "０６１３９９９２", "139998", "06139992 ", "0613999", "061399920"],
    "symbol": ["", "１０００", "１２37", "１" * 11, "１" * 12, "ＡＢ1", "10 00", "A-1", "x" * 11, "x" * 12, "記号"],
    "number": ["", "１", "１２３４５６７８９０１", "1２３４５６７８９０１8", "0000001 ", "x" * 11, "x" * 41,
               "123456789018"],
    "branch": ["0", "０１", "001", "ab", ""],
    "name": ["", " 佐藤", "佐藤 ", "x" * 200, "x" * 201, "a\tb", "山田123456789012", "山田12345678901",
             "1234-5678-9018", "ヴ", "カ\u3099", "佐藤\u3000\u3099幹", "\u3000佐藤"],
    "name_kana": ["", "ｶﾞｸ", "サトウ　ミキ", " ｻﾄｳ", "ｻﾄｳ\u3000", "カ\u3000\u3099", "x" * 201, "ﾍﾟ\u3000ｰ"],
    "sex": ["1", "3", "4", "１", "", " 1"],
    "birth_date": ["19910717", "1991-02-29", "19910230", "1991/07/17", "１９９１-07-17", "2020-02-19", "",
                   "1991-7-17", "2020-02-18"],
    "address": ["", " 東京", "東京 ", "x" * 200, "x" * 201, "電話 0312345678 と 123456789018",
                "1234567890１２", "12345678901"],
    "post_number": ["1000001", "100-001", "１００-０００１", " 100-0001", "100 0001", ""],
    "personal_family": ["2", "3", "", "１"],
    "card_classification": ["1", "A1", "a1", "05", "08", "", "０１"],
    "valid_from": ["20200218", "2020-02-30", "", "2020-2-18", "1990-01-01"],
    "valid_to": ["2020-02-17", "2020-02-18", "20991231", "2020-13-01", " "],
    "copay_ratio": ["10", "20", "15", "030", "30.0", "", "３０"],
    "reason_of_loss": ["01", "1", "99", "98", " "],
    "elderly_ratio": ["20", "10", "30", "", " ", "２０", "15", "020"],
    "elderly_valid_from": ["2023-12-01", "20231201", "", "2023-13-01", " 2023-12-01", "2019-01-01"],
    "elderly_valid_to": ["2024-11-30", "2023-11-30", "2023-12-01", "", "2024-02-30", "２０２４-11-30"],
    "limit_kind": ["01", "02", "03", "1", "04", "", "０１"],
    "limit_class": ["A03", "B10", "a03", "A00", "", "Ａ03"],
    "limit_valid_from": ["2024-04-01", "20240401", "", "2024-04-31"],
    "limit_valid_to": ["2025-03-31", "2024-03-31", "", "2025/03/31"],
    "disease_category": ["1", "1|2", ""],
    "disease_valid_from": ["2021-01-01", ""],
}


def _full_path(monkeypatch: pytest.MonkeyPatch, data: bytes) -> list[Checked]:
    with monkeypatch.context() as m:
        m.setattr(files, "fast_eligibility", lambda columns: None)
        return list(check_rows(FileReader("eligibility", [data])))


def _same(monkeypatch: pytest.MonkeyPatch, data: bytes) -> list[Checked]:
    fast = list(check_rows(FileReader("eligibility", [data[i : i + 4096] for i in range(0, len(data), 4096)])))
    full = _full_path(monkeypatch, data)
    assert [(c.line, c.record, c.errors) for c in fast] == [(c.line, c.record, c.errors) for c in full]
    return fast


def _csv_line(values: dict[str, str], header: tuple[str, ...]) -> str:
    out = []
    for c in header:
        v = values.get(c, "")
        if any(ch in v for ch in ',"\n\r'):
            v = '"' + v.replace('"', '""') + '"'
        out.append(v)
    return ",".join(out)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_generated_files_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    path = tmp_path / "e.csv"
    write_eligibility_csv(path, iter_people(1500, 3, today=dt.date(2026, 11, 28)), encoding=encoding)
    checked = _same(monkeypatch, path.read_bytes())
    assert sum(1 for c in checked if c.record is not None) == len(checked)


def test_tricky_values_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    header = ELIGIBILITY_HEADER
    lines = [",".join(header)]
    for column, values in TRICKY.items():
        for value in values:
            lines.append(_csv_line({**TEMPLATE, column: value}, header))
    rnd = random.Random(7)
    pool = list(TRICKY.items())
    for _ in range(400):  # a few fields at once
        mixed = dict(TEMPLATE)
        for column, choices in rnd.sample(pool, 3):
            mixed[column] = rnd.choice(choices)
        lines.append(_csv_line(mixed, header))
    lines.append('add,06139992,1000,1,00,"佐藤,幹",サトウ,1,1990-01-01,,,1,01,2020-01-01,,30,' + "," * 10)
    lines.append('add,06139992,1000,2,00,"佐藤\n幹",サトウ,1,1990-01-01,,,1,01,2020-01-01,,30,' + "," * 10)
    lines.append("add,06139992,1000,3,00,佐藤\x00,サトウ,1,1990-01-01,,,1,01,2020-01-01,,30," + "," * 10)
    lines.append("add,06139992,1000,4,00,佐藤,サトウ,1,1990-01-01,,,1,01,2020-01-01,,30," + "," * 9)  # one short
    lines.append("")
    lines.append("add,06139992,1000,5,00,佐藤,サトウ,1,1990-01-01,,,1,01,2020-01-01,,30," + "," * 10)
    checked = _same(monkeypatch, ("\r\n".join(lines)).encode("utf-8"))
    fast_rows = sum(1 for c in checked if c.record is not None)
    assert 0 < fast_rows < len(checked)


def test_other_column_orders_and_subsets_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    header = tuple(reversed(files.ELIGIBILITY_COLUMNS))  # required columns only, another order
    lines = [",".join(header), _csv_line(TEMPLATE, header), _csv_line({**TEMPLATE, "post_number": "1000001"}, header)]
    checked = _same(monkeypatch, "\n".join(lines).encode())
    assert all(c.record is not None for c in checked)


def test_undecodable_lines_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    header = ",".join(ELIGIBILITY_HEADER).encode()
    good = _csv_line(TEMPLATE, ELIGIBILITY_HEADER).encode("cp932")
    data = b"\n".join([header, good, good.replace(b"01", b"\x81\x0a", 1), good, b"\xff\xfe" + good, good])
    checked = _same(monkeypatch, data)
    assert any(e.code == "encoding" for c in checked for e in c.errors)


GROUPS = {
    "elderly": ("elderly_ratio", "elderly_valid_from", "elderly_valid_to"),
    "limit": ("limit_kind", "limit_class", "limit_valid_from", "limit_valid_to"),
}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_mix_of_an_optional_group_agrees(monkeypatch: pytest.MonkeyPatch, group: str) -> None:
    """高齢受給者 and 限度額: every combination of the tricky values of the group's columns (whole,
    partial, empty, out of order, malformed) gives the full path's record or errors; the whole and
    valid groups are taken by the fast path itself."""
    header = ELIGIBILITY_HEADER
    columns = GROUPS[group]
    rows = [dict(zip(columns, values, strict=True)) for values in itertools.product(*(TRICKY[c] for c in columns))]
    lines = [_csv_line({**TEMPLATE, **row}, header) for row in rows]
    _same(monkeypatch, "\n".join([",".join(header), *lines]).encode())
    fast = files.fast_eligibility(list(header))
    assert fast is not None
    whole = {
        "elderly": {"elderly_ratio": "20", "elderly_valid_from": "2023-12-01", "elderly_valid_to": "2024-11-30"},
        "limit": {"limit_kind": "01", "limit_class": "A03", "limit_valid_from": "2024-04-01",
                  "limit_valid_to": "2025-03-31"},
    }[group]
    record = fast(2, _csv_line({**TEMPLATE, **whole}, header) + "\n")
    assert record is not None
    assert [getattr(record, c) for c in columns] == [
        int(v) if c.endswith("ratio") else dt.date.fromisoformat(v) if "valid" in c else v
        for c, v in whole.items()
    ]
    taken = sum(fast(i, line + "\n") is not None for i, line in enumerate(lines, 2))
    assert 0 < taken < len(lines)


def test_full_width_digits_in_the_key_take_the_fast_path_with_their_folded_form() -> None:
    header = ELIGIBILITY_HEADER
    fast = files.fast_eligibility(list(header))
    assert fast is not None
    record = fast(2, _csv_line({**TEMPLATE, "symbol": "１２37", "number": "０００１"}, header) + "\n")
    assert record is not None
    stored = (record.symbol, record.number, record.symbol_norm, record.number_norm)
    assert stored == ("１２37", "０００１", "1237", "0001")
