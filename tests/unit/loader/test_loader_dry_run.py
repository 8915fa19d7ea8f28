"""``hokensha-load KIND FILE --dry-run``: local validation, summary, reject report, exit codes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hokensha_loader.core import default_report_path, validate_file
from hokensha_loader.status_codes import ExitCode
from schemas.insurer_files import EligibilityRecord, FileReader, check_rows
from testbed.population import (
    Population,
    write_checkups_csv,
    write_eligibility_csv,
    write_eligibility_ndjson,
    write_medications_csv,
)

from .helpers import MY_NUMBER, TODAY, Result, csv_text, row

Load = Callable[..., Result]


def read_report(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "the report is UTF-8 with BOM so Excel opens it"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


def test_good_generated_files_pass_with_exit_0(tmp_path: Path, population: Population, load: Load) -> None:
    files = {
        "eligibility": tmp_path / "e.csv", "medications": tmp_path / "m.csv", "checkups": tmp_path / "c.csv",
    }
    rows = {
        "eligibility": write_eligibility_csv(files["eligibility"], population.people),
        "medications": write_medications_csv(files["medications"], population.people, seed=1, today=TODAY),
        "checkups": write_checkups_csv(files["checkups"], population.people, seed=1, today=TODAY),
    }
    for kind, path in files.items():
        result = load(kind, path, "--dry-run")
        assert result.code == ExitCode.OK, result.out + result.err
        assert f"accepted {rows[kind]:,}, rejected 0" in result.out
        # the generated 𠮷/髙 names are warnings (docs/uploads.md), the only lines of the report
        report = default_report_path(path)
        assert not report.exists() or {r["code"] for r in read_report(report)} == {"outside_jis_x0208"}


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"insurer_number": "33120016"}, "insurer_number", "check_digit"),
        ({"sex": "4"}, "sex", "invalid_code"),
        ({"valid_from": "2024-04-01", "valid_to": "2024-03-31"}, "valid_to", "date_order"),
        ({"branch": "0"}, "branch", "invalid_format"),
        ({"branch": "001"}, "branch", "invalid_format"),
        ({"name": f"山田　{MY_NUMBER}"}, "name", "my_number_detected"),
        ({"address": f"東京都 {MY_NUMBER[:4]}-{MY_NUMBER[4:8]}-{MY_NUMBER[8:]}"}, "address",
         "my_number_detected"),
        ({"action": "loss", "valid_to": "2025-03-31", "reason_of_loss": ""}, "reason_of_loss", "required"),
    ],
)
def test_bad_row_is_rejected_with_line_and_field_in_report(
    tmp_path: Path, load: Load, changes: dict[str, str], field: str, code: str
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(), row(number="2", **changes), row(number="3")), encoding="utf-8")

    result = load("eligibility", path, "--dry-run")

    assert result.code == ExitCode.ROWS_REJECTED
    assert "accepted 2, rejected 1" in result.out
    report = read_report(default_report_path(path))
    assert [(r["line"], r["field"], r["code"]) for r in report] == [("3", field, code)]
    assert f"line 3: {field}: {code}" in result.out
    assert MY_NUMBER not in report[0]["message"], "the report never repeats a My Number"


def test_report_lines_are_physical_lines_of_the_file(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    # a quoted address spanning two lines: the next row starts on physical line 4
    text = csv_text(row(address='"東京都\n千代田区"'), row(number="2", sex="9"))
    path.write_text(text, encoding="utf-8")

    result = load("eligibility", path, "--dry-run", "--report", tmp_path / "out" / "r.csv")

    assert result.code == ExitCode.ROWS_REJECTED
    report = read_report(tmp_path / "out" / "r.csv")
    assert [(r["line"], r["field"]) for r in report] == [("4", "sex")]
    assert not default_report_path(path).exists()


def test_every_error_of_a_row_is_reported(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(insurer_number="33120016", sex="4", branch="0")), encoding="utf-8")

    assert load("eligibility", path, "--dry-run").code == ExitCode.ROWS_REJECTED
    fields = {r["field"] for r in read_report(default_report_path(path))}
    assert fields == {"insurer_number", "sex", "branch"}


@pytest.mark.parametrize("column", ["my_number", "個人番号", "マイナンバー", "MyNumber"])
def test_my_number_column_refuses_the_whole_file(tmp_path: Path, load: Load, column: str) -> None:
    path = tmp_path / "e.csv"
    header = "action,insurer_number,symbol,number,branch," + column
    path.write_text(f"{header}\nadd,33120015,1,2,00,{MY_NUMBER}\n", encoding="utf-8")

    result = load("eligibility", path, "--dry-run")

    assert result.code == ExitCode.FILE_REFUSED
    assert "My Number" in result.err
    assert "line 1" in result.err
    assert MY_NUMBER not in result.err + result.out
    assert not default_report_path(path).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"action,insurer_number,symbol,number,branch,colour\n", "unknown column"),
        (b"action,insurer_number,symbol,number,branch\n", "missing column"),
    ],
)
def test_file_level_problems_exit_2(tmp_path: Path, load: Load, content: bytes, message: str) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.FILE_REFUSED
    assert message in result.err
    assert result.out.splitlines() == ["eligibility: e.csv — result: the file was refused as a whole (nothing loaded)"]


def test_wrong_kind_for_the_file_is_refused(tmp_path: Path, population: Population, load: Load) -> None:
    path = tmp_path / "m.csv"
    write_medications_csv(path, population.people, today=TODAY)
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.FILE_REFUSED
    assert "unknown column" in result.err


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_encodings_are_detected(tmp_path: Path, load: Load, encoding: str) -> None:
    path = tmp_path / "e.csv"
    rows = [row(name="髙橋　一郎", name_kana="タカハシ　イチロウ"),
            row(number="2", address="大阪府大阪市北区梅田１丁目")]
    path.write_bytes(csv_text(*rows).encode(encoding))

    summary = validate_file(path, "eligibility", "csv", report_path=default_report_path(path))

    assert (summary.accepted, summary.rejected) == (2, 0)
    assert summary.encoding == encoding


def test_half_width_kana_is_accepted_and_normalised(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(csv_text(row(name_kana="ﾔﾏﾀﾞ ﾀﾛｳ")).encode("cp932"))

    assert load("eligibility", path, "--dry-run").code == ExitCode.OK
    checked = list(check_rows(FileReader("eligibility", [path.read_bytes()])))
    record = checked[0].record
    assert isinstance(record, EligibilityRecord)
    assert record.name_kana == "ヤマダ タロウ"


def test_ndjson_by_extension_and_by_option(tmp_path: Path, population: Population, load: Load) -> None:
    good = tmp_path / "e.ndjson"
    n = write_eligibility_ndjson(good, population.people)
    result = load("eligibility", good, "--dry-run")
    assert result.code == ExitCode.OK
    assert f"accepted {n:,}" in result.out

    bad = tmp_path / "e.txt"
    lines = [json.dumps(row()), "{not json", json.dumps(row(number="2", sex="7"))]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load("eligibility", bad, "--dry-run", "--format", "ndjson")
    assert result.code == ExitCode.ROWS_REJECTED
    report = read_report(default_report_path(bad))
    assert [(r["line"], r["field"], r["code"]) for r in report] == [
        ("2", "", "malformed_json"), ("3", "sex", "invalid_code"),
    ]


def test_ndjson_my_number_key_refuses_the_file(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps({**row(), "個人番号": MY_NUMBER}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.FILE_REFUSED
    assert "My Number" in result.err


def test_clean_run_removes_a_stale_report_but_not_other_files(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(sex="9")), encoding="utf-8")
    assert load("eligibility", path, "--dry-run").code == ExitCode.ROWS_REJECTED
    assert default_report_path(path).exists()

    path.write_text(csv_text(row()), encoding="utf-8")
    assert load("eligibility", path, "--dry-run").code == ExitCode.OK
    assert not default_report_path(path).exists()

    other = tmp_path / "notes.csv"
    other.write_text("mine\n", encoding="utf-8")
    assert load("eligibility", path, "--dry-run", "--report", other).code == ExitCode.OK
    assert other.read_text(encoding="utf-8") == "mine\n"


def test_quiet_prints_only_the_summary_line(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(sex="9")), encoding="utf-8")
    result = load("eligibility", path, "--dry-run", "--quiet")
    assert result.code == ExitCode.ROWS_REJECTED
    assert result.out.count("\n") == 1
    assert result.out.startswith("eligibility: e.csv checked, accepted 0, rejected 1")
    assert "rows/s" in result.out
    assert result.err == ""


def test_undecodable_line_is_a_row_error_not_a_crash(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    good = csv_text(row(), row(number="3")).encode("cp932").splitlines(keepends=True)
    broken = csv_text(row(number="2")).encode("cp932").splitlines(keepends=True)[1]
    broken = broken.replace("山田".encode("cp932"), b"\x81\x20")  # not a CP932 character
    path.write_bytes(good[0] + good[1] + broken + good[2])

    result = load("eligibility", path, "--dry-run")

    assert result.code == ExitCode.ROWS_REJECTED
    assert "accepted 2, rejected 1" in result.out
    report = read_report(default_report_path(path))
    assert [(r["line"], r["code"]) for r in report] == [("3", "encoding")]


def test_ndjson_unknown_key_later_in_the_file_names_its_line(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.ndjson"
    lines = [json.dumps(row(), ensure_ascii=False), json.dumps({**row(number="2"), "colour": "red"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.FILE_REFUSED
    assert "file refused (line 2): unknown column(s) 'colour'" in result.err
