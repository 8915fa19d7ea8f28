"""Identifiers of the domain and their check digits (see docs/domain.md).

Plain functions first (fast, used by the bulk loader on millions of rows), pydantic
annotated types on top of them for the wire models.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_SPACES = re.compile(r"\s+")


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


# characters that may stand between the digit groups of a written-out number: spaces, hyphens
# and dashes, dots, slashes, bars, commas, underscores, colons, middle dots (after NFKC, so the
# full-width forms are among them)
_SEPARATOR_CHARS = " \t\u3000-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70.\u3002/|,_:\u30fb\u00b7"
_DIGIT_CHAIN = re.compile("[0-9]+(?:[" + re.escape(_SEPARATOR_CHARS) + "]{1,3}[0-9]+)*")
_ASCII_DIGIT_RUN = re.compile(r"[0-9]+")
_AT_LEAST_12_ASCII_DIGITS = re.compile(r"(?:[^0-9]*[0-9]){12}", re.DOTALL)
# 12 digits in a row with at most three separators between two of them: what every candidate
# below is (consecutive groups of one chain holding 12 digits), found by one scan in C. Text
# without it (base64 of a certificate or a signature: many digits, few such runs) is done at once.
_TWELVE_DIGITS_WRITTEN = re.compile("[0-9](?:[" + re.escape(_SEPARATOR_CHARS) + "]{0,3}[0-9]){11}")


SPECIAL_DIGITS = (
    "\u00b2-\u00b3\u00b9\u00bc-\u00be\u1369-\u1371\u19da\u2070\u2074-\u2079\u2080-\u2089\u2150-\u215f"
    "\u2189\u2460-\u249b\u24ea\u24f5-\u24fd\u24ff\u2776-\u277e\u2780-\u2788\u278a-\u2792\u3251-\u325f"
    "\u32b1-\u32cb\u3358-\u3370\u3378-\u3379\u339f-\u33a6\u33a8\u33af\u33e0-\u33fe"
    "\U00010a40-\U00010a43\U00010e60-\U00010e68\U00011052-\U0001105a\U0001f100-\U0001f10a"
)
"""A character class (for ``re``) of the characters that are digits, or turn into digits under
NFKC, without being decimal digits (``\\d``) themselves: superscripts, fractions, circled ⑳,
the telegraph ㏾ … (tests/unit/wire_models checks it against ``unicodedata``). Such a
character may stand for two digits."""
_SPECIAL = re.compile(f"[{SPECIAL_DIGITS}]")


@functools.cache
def _digit_table() -> dict[int, str]:
    """Every non-ASCII character that is a digit in some script (Arabic-Indic, Devanagari,
    full-width, mathematical …: ``unicodedata.digit``) → its ASCII digit. Built once, on the
    first text that needs it (every digit is below U+20000)."""
    table: dict[int, str] = {}
    for cp in range(0x80, 0x20000):
        d = unicodedata.digit(chr(cp), None)
        if d is not None:
            table[cp] = str(d)
    return table


_AT_LEAST_12_DIGITS = re.compile(r"(?:\D*\d){12}")  # decimal digits of any script


def _ascii_digits(text: str) -> str:
    """NFKC, then every other character that is a digit in some script as its ASCII digit."""
    folded = unicodedata.normalize("NFKC", text)
    return folded if folded.isascii() else folded.translate(_digit_table())


def _text_has_my_number(text: str) -> bool:
    if text.isascii():
        if len(text) < 12:
            return False
        folded = text
    else:
        if not _AT_LEAST_12_DIGITS.match(text) and not _SPECIAL.search(text):
            return False  # the common case for names and addresses: few digits, none special
        folded = _ascii_digits(text)
    if not _AT_LEAST_12_ASCII_DIGITS.match(folded):
        return False  # the common case: fewer than 12 digits in all
    if not _TWELVE_DIGITS_WRITTEN.search(folded):
        return False  # no 12 digits written together anywhere
    for chain in _DIGIT_CHAIN.findall(folded):
        groups = _ASCII_DIGIT_RUN.findall(chain)
        # every run of consecutive groups holding exactly 12 digits: "dddddddddddd",
        # "dddd dddd dddd", "tel 03-dddd.dddd.dddd" … (d a digit)
        for i in range(len(groups)):
            total = 0
            for j in range(i, len(groups)):
                total += len(groups[j])
                if total >= 12:
                    if total == 12 and is_my_number("".join(groups[i : j + 1])):
                        return True
                    break
    return False


def my_number_in(value: object) -> bool:
    """THE My Number detector (every check of the code base calls this one).

    True when ``value`` — a string, a number, or a list / dict of them (keys included, at any
    depth) — holds 12 digits with a valid individual-number check digit: written as one run,
    or as groups with up to three separators between them (spaces, hyphens, dots, slashes,
    ``|``, commas … in their full-width forms too), in any digit script (NFKC and
    ``unicodedata.digit``). A longer run of digits is not a My Number. Refusing the rare phone
    number that happens to pass the check is the price of never storing a real one."""
    pending = [value]  # a stack, not recursion: any depth of nesting (a hostile body) is scanned
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _text_has_my_number(item):
                return True
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int | float):
            if _text_has_my_number(str(item)) or _text_has_my_number(f"{item:.0f}"):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
    return False


contains_my_number = my_number_in  # the name the free-text checks used
WITHHELD = "(message withheld: it held a 12-digit individual number)"


def withhold_my_number(text: str) -> str:
    """``text``, or a fixed placeholder when it holds a My Number: the last guard of anything
    printed or written from messages that came from elsewhere (another server's answer)."""
    return WITHHELD if my_number_in(text) else text


MY_NUMBER_MESSAGE = "my_number_detected: a 12-digit individual number (My Number) is never accepted"


def text_problem(value: str) -> str | None:
    """Why a text value cannot be stored (PostgreSQL text refuses NUL; UTF-8 refuses an unpaired
    surrogate), or None. Names the rule, never the value."""
    if "\x00" in value:
        return "must not contain a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain an unpaired surrogate (not valid Unicode text)"
    return None


def storable_problem(value: object, depth: int = 0) -> str | None:
    """``text_problem`` over a parsed JSON value (keys included), or None."""
    if isinstance(value, str):
        return text_problem(value)
    if depth > 64:
        return "is nested too deeply"
    if isinstance(value, dict):
        for k, v in value.items():
            problem = storable_problem(k, depth + 1) or storable_problem(v, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list | tuple):
        for v in value:
            problem = storable_problem(v, depth + 1)
            if problem:
                return problem
    return None


def normalize_key_text(value: str) -> str:
    """記号・番号 as compared: NFKC (full-width digits → ASCII), trimmed, inner spaces removed."""
    if value.isascii() and value.isalnum():
        return value  # the common case: nothing to fold, no space to remove
    return _SPACES.sub("", value if value.isascii() else unicodedata.normalize("NFKC", value))


_HYPHENS = str.maketrans(dict.fromkeys("‐‑‒–—―−ーｰ－", "-"))
_HYPHEN = re.compile("[" + re.escape("".join(map(chr, _HYPHENS))) + "]")


def normalize_person_text(value: str) -> str:
    """Names and addresses as compared for card linking: NFKC, no spaces, one hyphen form.

    Run on every name and address of a bulk upload, so the usual case is made cheap: U+3000 (the
    full-width space between family and given name) becomes a space first, which NFKC would do
    anyway, so that NFKC's quick check sees an already normalised string; the regular
    expressions run only when another space or a hyphen form is left."""
    folded = unicodedata.normalize("NFKC", value.replace("\u3000", " ")).replace(" ", "")
    if _SPACES.search(folded) is not None:
        folded = _SPACES.sub("", folded)
    return folded.translate(_HYPHENS) if _HYPHEN.search(folded) is not None else folded


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
    if my_number_in(value):
        raise ValueError(MY_NUMBER_MESSAGE)
    return value


def _str_or_number(value: object) -> object:
    return str(value) if isinstance(value, int) else value


InsurerNumber = Annotated[str, BeforeValidator(_str_or_number), AfterValidator(_check_insurer_number)]
FacilityCode = Annotated[str, AfterValidator(_check_facility_code)]
Branch = Annotated[str, BeforeValidator(_str_or_number), AfterValidator(_check_branch)]
FreeText = Annotated[str, AfterValidator(_check_free_text)]
