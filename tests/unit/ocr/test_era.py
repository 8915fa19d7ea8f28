"""Era conversion for 照合番号B: boundaries of every era, and the shape check."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic_terminal.ocr import CollationOcrError, collation_b, era_of, era_yymmdd, validate_collation_b
from testbed import card_front


@pytest.mark.parametrize(
    ("day", "era", "year"),
    [
        (dt.date(1900, 1, 1), "明治", 33),
        (dt.date(1912, 7, 29), "明治", 45),
        (dt.date(1912, 7, 30), "大正", 1),
        (dt.date(1926, 12, 24), "大正", 15),
        (dt.date(1926, 12, 25), "昭和", 1),
        (dt.date(1980, 4, 1), "昭和", 55),
        (dt.date(1989, 1, 7), "昭和", 64),
        (dt.date(1989, 1, 8), "平成", 1),
        (dt.date(2019, 4, 30), "平成", 31),
        (dt.date(2019, 5, 1), "令和", 1),
        (dt.date(2026, 11, 28), "令和", 8),
    ],
)
def test_era_boundaries(day: dt.date, era: str, year: int) -> None:
    found, number = era_of(day)
    assert (found.name, number) == (era, year)
    assert found.first_day <= day and (found.last_day is None or day <= found.last_day)
    # the testbed's independent table (used to print era-style cards) agrees
    assert card_front.era_of(day) == (era, year)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(1980, 4, 1), "550401"),
        (dt.date(1912, 7, 29), "450729"),
        (dt.date(1912, 7, 30), "010730"),
        (dt.date(1926, 12, 24), "151224"),
        (dt.date(1926, 12, 25), "011225"),
        (dt.date(1989, 1, 7), "640107"),
        (dt.date(1989, 1, 8), "010108"),
        (dt.date(2019, 4, 30), "310430"),
        (dt.date(2019, 5, 1), "010501"),
    ],
)
def test_era_yymmdd(day: dt.date, expected: str) -> None:
    assert era_yymmdd(day) == expected


def test_before_meiji_is_refused() -> None:
    with pytest.raises(ValueError, match="明治"):
        era_of(dt.date(1868, 1, 24))


def test_collation_b_from_parts() -> None:
    assert collation_b(dt.date(1980, 4, 1), 2034, "1234") == "55040120341234"


@pytest.mark.parametrize(
    "code",
    [
        "5504012034123",  # 13 digits
        "550401203412345",  # 15 digits
        "5504012034123a",
        "５５０４０１２０３４１２３４",  # full-width digits
        "00040120341234",  # era year 0
        "65040120341234",  # era year 65: no era that long
        "55130120341234",  # month 13
        "55040020341234",  # day 0
        "55043220341234",  # day 32
        "55040119991234",  # expiry before the first cards
        "55040121011234",  # expiry too far
    ],
)
def test_validate_refuses_implausible(code: str) -> None:
    with pytest.raises(CollationOcrError) as info:
        validate_collation_b(code)
    assert info.value.reason == "implausible"


def test_validate_accepts() -> None:
    assert validate_collation_b("01050120300000") == "01050120300000"
