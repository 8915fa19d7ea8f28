"""The operator's language and the four outcomes: Japanese by default, English with --lang en or
SHIKAKU_LANG=en, the stable codes unchanged; all loaded (0) / loaded with rejects (1) / refused
as a whole (2) / not all lines read (6) told apart by the summary and the exit code."""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

from hokensha_loader.client import UploadClient
from hokensha_loader.commands import load as load_command
from hokensha_loader.config import get_settings
from hokensha_loader.core import default_report_path
from hokensha_loader.messages import row_message
from hokensha_loader.status_codes import ExitCode
from schemas.insurer_files import RowError

from .helpers import Result, csv_text, row
from .test_loader_upload import FakeServer, Handler, StreamingTransport, answer, problem

Load = Callable[..., Result]


@pytest.fixture
def japanese(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: no SHIKAKU_LANG (the conftest sets en for the older tests)."""
    monkeypatch.delenv("SHIKAKU_LANG")
    get_settings.cache_clear()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], FakeServer]:
    def _serve(handler: Handler) -> FakeServer:
        fake = FakeServer(handler)
        monkeypatch.setattr(load_command, "UploadClient",
                            functools.partial(UploadClient, transport=StreamingTransport(fake)))
        return fake

    return _serve


def report_rows(path: Path) -> list[dict[str, str]]:
    with default_report_path(path).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(), row(number="2", sex="9"), row(number="3", birth_date="2024-13-40")),
                    encoding="utf-8")
    return path


@pytest.mark.usefixtures("japanese")
def test_japanese_is_the_default_with_the_codes_unchanged(tmp_path: Path, load: Load) -> None:
    path = bad_file(tmp_path)
    result = load("eligibility", path, "--dry-run")
    assert result.code == ExitCode.ROWS_REJECTED
    assert "受付 1 件、不備 2 件" in result.out
    assert "結果: 2 行に不備があります" in result.out
    sex = "性別（sex）が決められた値ではありません（1, 2, 3 のいずれか）"
    assert f"  3行目: sex: invalid_code: {sex}" in result.out
    assert "  4行目: birth_date: invalid_date: 生年月日（birth_date）が日付ではありません" in result.out
    assert [(r["line"], r["field"], r["code"]) for r in report_rows(path)] == [
        ("3", "sex", "invalid_code"), ("4", "birth_date", "invalid_date")]
    assert report_rows(path)[0]["message"] == sex


@pytest.mark.parametrize("how", ["option", "env"])
def test_english_with_lang_en_or_shikaku_lang(
    tmp_path: Path, load: Load, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = bad_file(tmp_path)
    if how == "option":
        monkeypatch.setenv("SHIKAKU_LANG", "ja")
        get_settings.cache_clear()
        result = load("eligibility", path, "--dry-run", "--lang", "en")
    else:
        result = load("eligibility", path, "--dry-run")  # the conftest sets SHIKAKU_LANG=en
    assert result.code == ExitCode.ROWS_REJECTED
    assert "accepted 1, rejected 2" in result.out
    assert "result: 2 row(s) would be rejected" in result.out
    assert "  line 3: sex: invalid_code: sex is not one of 1, 2, 3" in result.out
    assert report_rows(path)[0]["message"] == "sex is not one of 1, 2, 3"


@pytest.mark.usefixtures("japanese")
def test_all_loaded_exits_0(tmp_path: Path, load: Load, server: Callable[[Handler], FakeServer]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(), row(number="2")), encoding="utf-8")
    server(answer(accepted=1, unchanged=1))
    result = load("eligibility", path, "--token", "t")
    assert result.code == ExitCode.OK
    assert result.out.startswith(
        "eligibility: e.csv 取り込み、受付 1 件、不備 0 件、変更なし 1 件、同じファイルの再送: いいえ")
    assert result.out.rstrip().endswith("— 結果: すべて取り込みました")


@pytest.mark.usefixtures("japanese")
def test_loaded_with_rejects_exits_1(tmp_path: Path, load: Load, server: Callable[[Handler], FakeServer]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(), row(number="2")), encoding="utf-8")
    errors = [{"line": 3, "field": "valid_from", "code": "overlap",
               "message": "an eligibility period of this person already covers 2020-04-01"}]
    server(answer(accepted=1, rejected=1, errors=errors))
    result = load("eligibility", path, "--token", "t")
    assert result.code == ExitCode.ROWS_REJECTED
    assert "結果: 不備のある 1 行を除いて取り込みました" in result.out
    assert "3行目: valid_from: overlap: この方の資格期間がすでにある期間と重なります" in result.out
    (reject,) = report_rows(path)
    overlap = row_message(RowError(3, "valid_from", "overlap", ""), "ja")
    assert (reject["code"], reject["message"]) == ("overlap", overlap)


@pytest.mark.usefixtures("japanese")
def test_refused_as_a_whole_exits_2_locally_and_by_the_server(
    tmp_path: Path, load: Load, server: Callable[[Handler], FakeServer]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    local = load("eligibility", empty, "--dry-run")
    assert local.code == ExitCode.FILE_REFUSED
    assert local.err == (
        "hokensha-load: エラー: ファイル全体を受け付けませんでした: ファイルが空です（ヘッダー行がありません）\n")
    assert local.out == (
        "eligibility: empty.csv — 結果: ファイル全体を受け付けませんでした（何も取り込まれていません）\n")

    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")
    server(problem(413, "payload_too_large", "The file is larger than 10 bytes"))
    remote = load("eligibility", path, "--token", "t")
    assert remote.code == ExitCode.FILE_REFUSED
    assert "サーバーがファイル全体を受け付けませんでした: ファイルが大きすぎます" in remote.err
    assert "結果: ファイル全体を受け付けませんでした" in remote.out


@pytest.mark.usefixtures("japanese")
def test_not_all_lines_read_exits_6(tmp_path: Path, load: Load, server: Callable[[Handler], FakeServer]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(*(row(number=str(i)) for i in range(60))), encoding="utf-8")
    server(answer(accepted=4, rejected=7))  # the other 49 records were never accounted for
    result = load("eligibility", path, "--token", "t")
    assert result.code == ExitCode.LINES_UNREAD
    assert "結果: 読まれていない行があります（ファイルの 60 件のうち 11 件しか数えられていません）" in result.out

    english = load("eligibility", path, "--token", "t", "--lang", "en")
    assert english.code == ExitCode.LINES_UNREAD
    assert "result: not all lines were read (the server accounted for 11 of the file's 60 record(s))" in english.out


@pytest.mark.parametrize(
    "content",
    [
        csv_text(row(), row(number="2")) + "\n\n",  # blank lines are not records
        csv_text(row(), row(number="2", address='"東京都\n千代田区"')),  # one record over two lines
        csv_text(row(), row(number="2")).rstrip("\n"),  # no newline after the last line
    ],
)
def test_records_not_lines_are_compared(
    tmp_path: Path, load: Load, server: Callable[[Handler], FakeServer], content: str
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(content, encoding="utf-8")
    server(answer(accepted=2))
    result = load("eligibility", path, "--token", "t")
    assert result.code == ExitCode.OK, result.out
    assert "result: all loaded" in result.out


def test_a_duplicate_is_all_loaded(tmp_path: Path, load: Load, server: Callable[[Handler], FakeServer]) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(), row(number="2")), encoding="utf-8")
    server(answer(duplicate=True))
    result = load("eligibility", path, "--token", "t")
    assert result.code == ExitCode.OK
    assert "duplicate: yes" in result.out and "result: all loaded" in result.out


@pytest.mark.usefixtures("japanese")
def test_loader_errors_in_japanese(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row()), encoding="utf-8")
    no_token = load("eligibility", path)
    assert no_token.code == ExitCode.USAGE_ERROR
    assert no_token.err.startswith("hokensha-load: エラー: アップロード用トークンがありません")
    down = load("eligibility", path, "--token", "t", "--server", "http://127.0.0.1:9")
    assert down.code == ExitCode.SERVER_ERROR
    assert down.err.startswith("hokensha-load: エラー: http://127.0.0.1:9 のサーバーに接続できません")
    assert load("eligibility", path, "--token", "t", "--server", "http://127.0.0.1:9", "--lang", "en").err.startswith(
        "hokensha-load: error: cannot reach the server at http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("error", "japanese"),
    [
        (RowError(2, "systolic", "out_of_range", "systolic is out of range (40 to 300)"),
         "収縮期血圧（systolic）が範囲外です（40〜300）"),
        (RowError(2, "days", "out_of_range", "days is out of range (at least 1)"),
         "日数（days）が範囲外です（1 以上）"),
        (RowError(2, "birth_date", "my_number_detected", "birth_date holds a 12-digit individual number"),
         "生年月日（birth_date）に個人番号（マイナンバー）と思われる12桁の数字があります。個人番号は受け付けません"),
        (RowError(2, None, "malformed_csv", "a quoted field is not closed"),
         "CSV の形式が正しくありません（閉じていない「\"」など）。この行だけを不備とし、次の行から読み直しました"),
        (RowError(2, "colour", "some_new_code", "colour is odd"), "項目 colourに不備があります（some_new_code）"),
    ],
)
def test_row_messages_name_the_field_and_the_rule(error: RowError, japanese: str) -> None:
    assert row_message(error, "ja") == japanese
    assert row_message(error, "en") == error.message
