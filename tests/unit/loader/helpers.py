"""Helpers shared by the loader's tests (a uniquely named module: ``conftest`` names collide)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from schemas.insurer_files import ELIGIBILITY_COLUMNS

TODAY = dt.date(2026, 11, 28)
HEADER = ",".join(ELIGIBILITY_COLUMNS)
GOOD_ROW = {
    "action": "add", "insurer_number": "33120015", "symbol": "12", "number": "3456", "branch": "00",
    "name": "山田　太郎", "name_kana": "ヤマダ　タロウ", "sex": "1", "birth_date": "1980-01-02",
    "address": "東京都千代田区丸の内1-1-1", "post_number": "100-0005", "personal_family": "1",
    "card_classification": "01", "valid_from": "2020-04-01", "valid_to": "", "copay_ratio": "30",
    "reason_of_loss": "",
}
MY_NUMBER = "123456789018"  # 12 digits with a valid individual-number check digit


def csv_text(*rows: dict[str, str], header: str = HEADER) -> str:
    columns = header.split(",")
    lines = [header] + [",".join(row.get(c, "") for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def row(**changes: str) -> dict[str, str]:
    return {**GOOD_ROW, **changes}


@dataclass
class Result:
    code: int
    out: str
    err: str
