"""Identifiers of the domain and their check digits (see docs/domain.md).

Plain functions first (fast, used by the bulk loader on millions of rows), pydantic
annotated types on top of them for the wire models.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_DIGITS = re.compile(r"[0-9]+")
_TWELVE_DIGITS = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")
_SPACES = re.compile(r"\s+")
_TWELVE_ANY_DIGITS = re.compile(r"(?:\D*\d){12}")  # 12 Unicode digits (full-width count too) anywhere


def luhn_check_digit(digits: str) -> int:
    """Check digit over ``digits``: weights 2,1,2,1,... from the rightmost digit, digit sums."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


_VALID_INSURERS: set[str] = set()  # numbers already checked: a file holds few distinct ones


def insurer_number_problem(value: str) -> str | None:
    """Why ``value`` is not an insurer number, or None when it is one.

    8 digits (法別番号 2 + 都道府県 2 + 保険者別 3 + check) or 6 digits for 国民健康保険;
    the last digit is the Luhn check digit over the others.
    """
    if value in _VALID_INSURERS:
        return None
    problem = _insurer_number_problem(value)
    if problem is None and len(_VALID_INSURERS) < 100_000:
        _VALID_INSURERS.add(value)
    return problem


def _insurer_number_problem(value: str) -> str | None:
    if len(value) not in (6, 8) or not value.isascii() or not value.isdigit():
        return "must be 8 digits (6 for 国民健康保険)"
    if luhn_check_digit(value[:-1]) != int(value[-1]):
        return "check digit does not match"
    return None


def facility_code_problem(value: str) -> str | None:
    """Why ``value`` is not a 10-digit 医療機関コード, or None."""
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return "must be 10 digits"
    if value[2] not in "134":
        return "third digit (点数表) must be 1 医科, 3 歯科 or 4 調剤"
    if luhn_check_digit(value[:9]) != int(value[9]):
        return "check digit does not match"
    return None


def is_my_number(digits: str) -> bool:
    """True when ``digits`` is 12 digits whose last is a valid individual-number check digit."""
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        return False
    # P(n): the n-th digit counting leftwards from the 11th; Q(n) = n+1 (n<=6), n-5 (7..11)
    total = sum(int(digits[11 - n]) * (n + 1 if n <= 6 else n - 5) for n in range(1, 12))
    r = total % 11
    return int(digits[11]) == (0 if r <= 1 else 11 - r)


def contains_my_number(text: str) -> bool:
    """True when free text holds a 12-digit run (after NFKC, ignoring spaces and hyphens
    between digits) that has a valid My Number check digit."""
    if len(text) < 12 or not _TWELVE_ANY_DIGITS.match(text):
        return False
    folded = unicodedata.normalize("NFKC", text)
    candidates = set(_TWELVE_DIGITS.findall(folded))
    # "1234 5678 9012" / "1234-5678-9012": digits separated by spaces or hyphens
    squeezed = re.sub(r"(?<=[0-9])[\s\-‐－ー―−]+(?=[0-9])", "", folded)
    candidates.update(_TWELVE_DIGITS.findall(squeezed))
    return any(is_my_number(c) for c in candidates)


def normalize_key_text(value: str) -> str:
    """記号・番号 as compared: NFKC (full-width digits → ASCII), trimmed, inner spaces removed."""
    if value.isascii() and value.isalnum():
        return value  # the common case: nothing to fold, no space to remove
    return _SPACES.sub("", value if value.isascii() else unicodedata.normalize("NFKC", value))


_HYPHENS = str.maketrans(dict.fromkeys("‐‑‒–—―−ーｰ－", "-"))


def normalize_person_text(value: str) -> str:
    """Names and addresses as compared for card linking: NFKC, no spaces, one hyphen form."""
    return _SPACES.sub("", unicodedata.normalize("NFKC", value)).translate(_HYPHENS)


def normalize_kana(value: str) -> str:
    """Half-width katakana → full-width (NFKC does exactly that), trimmed."""
    return unicodedata.normalize("NFKC", value).strip()


def _check_insurer_number(value: str) -> str:
    value = value.strip()
    problem = insurer_number_problem(value)
    if problem:
        raise ValueError(f"insurer number {problem}")
    return value


def _check_facility_code(value: str) -> str:
    problem = facility_code_problem(value)
    if problem:
        raise ValueError(f"facility code {problem}")
    return value


def _check_branch(value: str) -> str:
    value = unicodedata.normalize("NFKC", value).strip()
    if len(value) != 2 or not value.isdigit():
        raise ValueError("branch (枝番) must be 2 digits")
    return value


def _check_free_text(value: str) -> str:
    if contains_my_number(value):
        raise ValueError("my_number_detected: a 12-digit individual number is never accepted")
    return value


def _str_or_number(value: object) -> object:
    return str(value) if isinstance(value, int) else value


InsurerNumber = Annotated[str, BeforeValidator(_str_or_number), AfterValidator(_check_insurer_number)]
FacilityCode = Annotated[str, AfterValidator(_check_facility_code)]
Branch = Annotated[str, BeforeValidator(_str_or_number), AfterValidator(_check_branch)]
FreeText = Annotated[str, AfterValidator(_check_free_text)]
