"""The one My Number detector (``schemas.identifiers.my_number_in``) and the request screen
every wire model applies: any field, any key, any depth; NUL and lone surrogates refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.card import BasicFacts, ByCardQuery, ConsentRequest, Registration
from schemas.eligibility import BatchCreate, ByNumberQuery
from schemas.identifiers import is_my_number, my_number_in

MY_NUMBER = "123456789018"
ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in MY_NUMBER)
FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in MY_NUMBER)
DEVANAGARI = "".join(chr(0x0966 + int(d)) for d in MY_NUMBER)

HIDDEN = [
    MY_NUMBER,
    "1234 5678 9018",
    "1234-5678-9018",
    "1234.5678.9018",
    "1234/5678/9018",
    "1234|5678|9018",
    "123456|789018",
    "1234\u30005678\u30009018",  # ideographic spaces
    "１２３４－５６７８－９０１８",  # full-width digits and hyphen
    FULL_WIDTH,
    ARABIC_INDIC,
    DEVANAGARI,
    f"{ARABIC_INDIC[:4]}.{ARABIC_INDIC[4:8]}.{ARABIC_INDIC[8:]}",
    "番号:1234 - 5678 - 9018です",
    "tel 03-1234-5678-9018",  # the number at the end of a longer chain of groups
]


def test_the_sample_is_a_valid_my_number() -> None:
    assert is_my_number(MY_NUMBER)
    assert not is_my_number("123456789017")


@pytest.mark.parametrize("text", HIDDEN)
def test_hidden_forms_are_found(text: str) -> None:
    assert my_number_in(text)


@pytest.mark.parametrize(
    "value",
    [
        "123456789017",  # check digit does not match
        "1234567890181",  # 13 digits: not a My Number
        "東京都千代田区丸の内1-1-1",
        "2020-01-01",
        "03-1234-5678",
        "",
        None,
        True,
        12345678901,
    ],
)
def test_ordinary_values_pass(value: object) -> None:
    assert not my_number_in(value)


@pytest.mark.parametrize(
    "value",
    [123456789018, 123456789018.0, [MY_NUMBER], {"a": {"b": [1, "1234.5678.9018"]}}, {MY_NUMBER: "x"}],
)
def test_numbers_lists_and_keys_are_searched(value: object) -> None:
    assert my_number_in(value)


def _query(**over: Any) -> dict[str, Any]:
    return {"insurer_number": "33120015", "symbol": "12", "number": "3456", "birth_date": "1980-01-02", **over}


def _facts(**over: Any) -> dict[str, Any]:
    return {"name": "山田太郎", "birth_date": "1980-01-02", "sex": "1", "address": "東京都", **over}


def _registration(**over: Any) -> dict[str, Any]:
    return {"challenge_id": "c", "certificate": "AA==", "signature": "AA==", "basic_facts": _facts(), **over}


CASES: list[tuple[type[Any], dict[str, Any]]] = [
    *[(ByNumberQuery, _query(**{f: "1234.5678.9018"})) for f in ("insurer_number", "symbol", "number", "branch")],
    *[(ByNumberQuery, _query(**{f: MY_NUMBER})) for f in ("birth_date", "as_of", "include_limit_certificate")],
    (ByNumberQuery, _query(insurer_number=123456789018)),
    (ByNumberQuery, _query(**{MY_NUMBER: "1"})),  # as a key
    (BatchCreate, {"queries": [_query()], "label": MY_NUMBER}),
    (BatchCreate, {"queries": [_query()], "label": ARABIC_INDIC}),
    (BatchCreate, {"queries": [_query(), _query(number="1234 5678 9018")]}),
    (ConsentRequest, {"visit_id": MY_NUMBER}),
    (ConsentRequest, {"visit_id": "v", "setting": "1234/5678/9018"}),
    *[(BasicFacts, _facts(**{f: "123456|789018"})) for f in ("name", "birth_date", "sex", "address")],
    (Registration, _registration(challenge_id=FULL_WIDTH)),
    (Registration, _registration(basic_facts=_facts(**{f"x{MY_NUMBER}": 1}))),
    (ByCardQuery, {"challenge_id": "c", "certificate": "AA==", "auth_method": "pin", "attestation": MY_NUMBER}),
]


@pytest.mark.parametrize(("model", "data"), CASES)
def test_every_request_field_and_key_is_screened(model: type[Any], data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    errors = info.value.errors(include_input=False, include_url=False)
    assert any("my_number_detected" in e["msg"] for e in errors)
    shown = str([(e["loc"], e["msg"]) for e in errors])
    assert not my_number_in(shown), "the error names the rule, never the value or the key"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (ByNumberQuery, _query(symbol="a\x00b")),
        (ByNumberQuery, _query(number="3\x00")),
        (ConsentRequest, {"visit_id": "a\x00b"}),
        (BasicFacts, _facts(name="山\x00田")),
        (BasicFacts, _facts(address="\ud800")),
        (BatchCreate, {"queries": [_query()], "label": "x\x00"}),
        (BatchCreate, {"queries": [_query(symbol="\udfff")]}),
    ],
)
def test_nul_and_lone_surrogates_are_refused(model: type[Any], data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert "NUL" in str(info.value) or "surrogate" in str(info.value)


def test_an_ordinary_query_still_validates() -> None:
    q = ByNumberQuery.model_validate(_query(branch="01"))
    assert q.birth_date == dt.date(1980, 1, 2)


def test_the_special_digit_class_holds_every_character_that_turns_into_digits() -> None:
    import re
    import unicodedata

    from schemas.identifiers import SPECIAL_DIGITS

    special = re.compile(f"[{SPECIAL_DIGITS}]")
    for cp in range(0x80, 0x20000):
        ch = chr(cp)
        if unicodedata.category(ch) == "Nd":
            continue
        if unicodedata.digit(ch, None) is not None or any(c.isdigit() for c in unicodedata.normalize("NFKC", ch)):
            assert special.fullmatch(ch), hex(cp)


@pytest.mark.parametrize("text", ["⑫③④⑤⑥⑦⑧⑨⓪①⑧", "¹²³⁴⁵⁶⁷⁸⁹⁰¹⁸", "⑫-３４５６-７８９０１８"])
def test_characters_that_nfkc_turns_into_digits_count(text: str) -> None:
    assert my_number_in(text)


def test_deep_nesting_is_scanned_without_recursion() -> None:
    # found by the hostile-bytes properties: 500 levels of lists were a RecursionError (a 500)
    deep: object = ["123456789018"]
    clean: object = ["x"]
    for _ in range(50_000):
        deep, clean = [deep], {"k": clean}
    assert my_number_in(deep)
    assert not my_number_in(clean)
    assert my_number_in({"a": [1, {"123456789018": None}]})
