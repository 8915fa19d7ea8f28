"""Japanese eras (元号) and the shape of 照合番号B.

照合番号B = birth date as era-year ``YYMMDD`` + the card's expiry year (4 digits, western) +
the 4-digit security code printed on the card front: 14 digits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from clinic_terminal.ocr.errors import CollationOcrError


@dataclass(frozen=True, slots=True)
class Era:
    name: str
    first_day: dt.date
    last_day: dt.date | None  # None: the current era


#: Newest first. Each era's last day is the day before the next era's first day.
ERAS: Final[tuple[Era, ...]] = (
    Era("令和", dt.date(2019, 5, 1), None),
    Era("平成", dt.date(1989, 1, 8), dt.date(2019, 4, 30)),
    Era("昭和", dt.date(1926, 12, 25), dt.date(1989, 1, 7)),
    Era("大正", dt.date(1912, 7, 30), dt.date(1926, 12, 24)),
    Era("明治", dt.date(1868, 1, 25), dt.date(1912, 7, 29)),
)

MIN_EXPIRY_YEAR: Final = 2015  # the first cards were issued in 2016
MAX_EXPIRY_YEAR: Final = 2100


def era_of(day: dt.date) -> tuple[Era, int]:
    """The era of ``day`` and the year within it (元年 = 1)."""
    for era in ERAS:
        if day >= era.first_day:
            return era, day.year - era.first_day.year + 1
    raise ValueError(f"{day.isoformat()} is before the 明治 era")


def era_yymmdd(day: dt.date) -> str:
    """Birth date as era-year ``YYMMDD`` (1980-04-01 → 昭和55年 → ``550401``)."""
    _, year = era_of(day)
    if year > 99:
        raise ValueError("the era year does not fit in two digits")
    return f"{year:02d}{day.month:02d}{day.day:02d}"


def collation_b(birth_date: dt.date, expiry_year: int, security_code: str) -> str:
    """照合番号B from its parts, validated."""
    return validate_collation_b(f"{era_yymmdd(birth_date)}{expiry_year:04d}{security_code}")


def validate_collation_b(code: str) -> str:
    """``code`` when it has the shape of 照合番号B, else :class:`CollationOcrError` (``implausible``)."""
    if len(code) != 14 or not code.isascii() or not code.isdigit():
        raise CollationOcrError("implausible", "照合番号B has 14 digits")
    year, month, day = int(code[0:2]), int(code[2:4]), int(code[4:6])
    expiry = int(code[6:10])
    if not 1 <= year <= 64:  # 昭和 has the most years (64); 明治 45, 大正 15, 平成 31
        raise CollationOcrError("implausible", "the era year is out of range")
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise CollationOcrError("implausible", "the birth month or day is out of range")
    if not MIN_EXPIRY_YEAR <= expiry <= MAX_EXPIRY_YEAR:
        raise CollationOcrError("implausible", "the expiry year is out of range")
    return code
