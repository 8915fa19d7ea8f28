"""Test data builders: insurer file rows with valid check digits."""

from __future__ import annotations

import csv
import io
from typing import Any

from schemas.identifiers import luhn_check_digit
from schemas.insurer_files import ELIGIBILITY_COLUMNS, ELIGIBILITY_OPTIONAL


def with_check(digits: str) -> str:
    return digits + str(luhn_check_digit(digits))


INSURER_A = with_check("0113001")  # 協会けんぽ-like, 8 digits
INSURER_B = with_check("0627001")  # 組合-like
INSURER_KOKUHO = with_check("13805")  # 国保, 6 digits


def person(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "action": "add",
        "insurer_number": INSURER_A,
        "symbol": "１２３",
        "number": "４５６７",
        "branch": "00",
        "name": "山田 太郎",
        "name_kana": "ヤマダ タロウ",
        "sex": "1",
        "birth_date": "1980-04-01",
        "address": "東京都千代田区霞が関1-2-2",
        "post_number": "100-8916",
        "personal_family": "1",
        "card_classification": "01",
        "valid_from": "2024-04-01",
        "valid_to": "",
        "copay_ratio": "30",
        "reason_of_loss": "",
    }
    row.update(over)
    return row


def family_member(**over: Any) -> dict[str, Any]:
    """山田 花子: on 山田 太郎's card (``person()``) as his family (branch 01)."""
    return person(
        **{
            "branch": "01",
            "name": "山田 花子",
            "name_kana": "ヤマダ ハナコ",
            "sex": "2",
            "birth_date": "1982-02-02",
            "personal_family": "2",
            **over,
        }
    )


def change(**over: Any) -> dict[str, Any]:
    """A ``change`` row that carries only what changes: the person's facts left empty are kept."""
    blank = dict.fromkeys(("name", "name_kana", "sex", "birth_date", "personal_family", "card_classification"), "")
    return person(action="change", **{**blank, **over})


def eligibility_csv(rows: list[dict[str, Any]], *, optional: bool = False, encoding: str = "utf-8") -> bytes:
    columns = list(ELIGIBILITY_COLUMNS) + (list(ELIGIBILITY_OPTIONAL) if optional else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue().encode(encoding)


def csv_bytes(columns: list[str], rows: list[dict[str, Any]], errors: str = "strict") -> bytes:
    """The rows as CSV (UTF-8; ``errors="surrogatepass"`` writes a lone surrogate as its bytes)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue().encode("utf-8", errors)
