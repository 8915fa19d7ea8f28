"""``hokensha-load expenses FILE --dry-run``: the generator's files pass; bad rows are reported
with their line, field and code, in Japanese by default."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from hokensha_loader.core import default_report_path
from hokensha_loader.status_codes import ExitCode
from schemas.insurer_files import EXPENSE_COLUMNS
from testbed.population import Population, write_expenses_csv, write_expenses_ndjson

from .helpers import TODAY, Result

Load = Callable[..., Result]


def _csv(*rows: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPENSE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _row(**over: str) -> dict[str, str]:
    row = {"insurer_number": "01130012", "symbol": "12", "number": "34", "branch": "00", "service_month": "2026-03",
           "facility_code": "0110113719", "facility_name": "しかく内科", "care_kind": "2", "days": "1",
           "total_cost": "5000", "patient_paid": "1500"}
    row.update(over)
    return row


@pytest.mark.parametrize("encoding", ["utf-8", "cp932"])
def test_generated_expenses_files_pass(tmp_path: Path, population: Population, load: Load, encoding: str) -> None:
    path = tmp_path / "x.csv"
    n = write_expenses_csv(path, population.people, encoding, seed=1, today=TODAY)
    assert n > 50
    result = load("expenses", path, "--dry-run")
    assert result.code == ExitCode.OK, result.out + result.err
    assert f"accepted {n:,}, rejected 0" in result.out
    ndjson = tmp_path / "x.ndjson"
    assert write_expenses_ndjson(ndjson, population.people, seed=1, today=TODAY) == n
    assert load("expenses", ndjson, "--dry-run").code == ExitCode.OK


def test_bad_rows_are_reported_in_japanese(tmp_path: Path, load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIKAKU_LANG")
    path = tmp_path / "x.csv"
    path.write_text(_csv(_row(), _row(patient_paid="9000"), _row(service_month="2026/03"), _row(care_kind="6"),
                         _row(facility_code="0110113718")), encoding="utf-8")
    result = load("expenses", path, "--dry-run")
    assert result.code == ExitCode.ROWS_REJECTED
    assert "窓口負担相当額（patient_paid）が医療費の総額（total_cost）を超えています" in result.out
    assert "診療年月（service_month）が年月ではありません（YYYY-MM）" in result.out
    assert "診療区分（care_kind）が決められた値ではありません（1, 2, 3, 4, 5 のいずれか）" in result.out
    assert "医療機関等コード（facility_code）の検査数字（チェックディジット）が合いません" in result.out
    with default_report_path(path).open(encoding="utf-8-sig") as fh:
        report = [(r["line"], r["field"], r["code"]) for r in csv.DictReader(fh)]
    assert report == [("3", "patient_paid", "exceeds_total"), ("4", "service_month", "invalid_month"),
                      ("5", "care_kind", "invalid_code"), ("6", "facility_code", "check_digit")]


def test_an_unknown_column_refuses_the_file(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "x.csv"
    path.write_text(_csv(_row()).replace("patient_paid", "paid_by_patient"), encoding="utf-8")
    result = load("expenses", path, "--dry-run")
    assert result.code == ExitCode.FILE_REFUSED
    assert "unknown column(s) 'paid_by_patient' for a expenses file" in result.err
