"""Check digits of the domain's identifiers (docs/domain.md), as plain functions and pydantic types.

Expected digits are worked out by hand in the comments (not with the code under test), and every
single-digit change of a valid number must be refused: a check that accepted one would not be a
check digit at all.
"""

from __future__ import annotations

import random
import unicodedata

import pytest
from pydantic import BaseModel, ValidationError

from schemas.identifiers import (
    Branch,
    FacilityCode,
    InsurerNumber,
    facility_code_problem,
    insurer_number_problem,
    is_my_number,
    luhn_check_digit,
    normalize_person_text,
)

# 01130012 (協会けんぽ 東京): 0113001 from the right, weights 2,1,…: 2+0+0+3+2+1+0 = 8 -> 10-8 = 2
KYOKAI_TOKYO = "01130012"
# 138057 (千代田区 国保): 13805 from the right: 5·2=10→1, 0, 8·2=16→7, 3, 1·2=2 -> 13 -> 7
KOKUHO_CHIYODA = "138057"
# 0110113719: 011011371 from the right: 2+7+6+1+2+0+2+1+0 = 21 -> 9; third digit 1 医科
FACILITY = "0110113719"
# 123456789018: Σ P(n)·Q(n) = 1·2+0·3+9·4+8·5+7·6+6·7+5·2+4·3+3·4+2·5+1·6 = 212, 212 mod 11 = 3 -> 8
MY_NUMBER = "123456789018"


def _one_digit_changes(number: str) -> list[str]:
    return [number[:i] + d + number[i + 1 :] for i in range(len(number)) for d in "0123456789" if d != number[i]]


def _adjacent_swaps(number: str) -> list[str]:
    swaps = []
    for i in range(len(number) - 1):
        a, b = number[i], number[i + 1]
        if a != b and {a, b} != {"0", "9"}:  # 09 <-> 90 is the one swap Luhn cannot see
            swaps.append(number[:i] + b + a + number[i + 2 :])
    return swaps


@pytest.mark.parametrize(
    ("digits", "check"),
    [("0113001", 2), ("13805", 7), ("011011371", 9), ("", 0), ("0", 0), ("5", 9), ("9", 1), ("18", 2)],
)
def test_luhn_check_digit(digits: str, check: int) -> None:
    # "5": 5·2 = 10 -> 1 -> 9; "9": 9·2 = 18 -> 9 -> 1; "18": 8·2 = 16 -> 7, + 1 = 8 -> 2
    assert luhn_check_digit(digits) == check


@pytest.mark.parametrize("number", [KYOKAI_TOKYO, KOKUHO_CHIYODA])
def test_valid_insurer_numbers(number: str) -> None:
    assert insurer_number_problem(number) is None


@pytest.mark.parametrize("number", [KYOKAI_TOKYO, KOKUHO_CHIYODA])
def test_every_single_digit_error_and_adjacent_swap_of_an_insurer_number_is_refused(number: str) -> None:
    for wrong in _one_digit_changes(number) + _adjacent_swaps(number):
        assert insurer_number_problem(wrong) == "check digit does not match", wrong


@pytest.mark.parametrize(
    "value", ["0113001", "011300122", "1380", "", "0113001a", "０１１３００１２", "01130012 ", "-1130012", "٠١١٣٠٠١٢"]
)
def test_insurer_number_shape(value: str) -> None:
    assert insurer_number_problem(value) == "must be 8 digits (6 for 国民健康保険)"


def test_a_refused_insurer_number_stays_refused_when_asked_again() -> None:
    # valid numbers are remembered (a file holds few distinct ones); refusals must not be
    wrong = KYOKAI_TOKYO[:-1] + "3"
    assert insurer_number_problem(wrong) is not None
    assert insurer_number_problem(KYOKAI_TOKYO) is None
    assert insurer_number_problem(wrong) is not None
    assert insurer_number_problem(KYOKAI_TOKYO) is None


def test_valid_facility_code() -> None:
    assert facility_code_problem(FACILITY) is None
    # 歯科 and 調剤 codes with their own check digits: 013011371 -> 2+7+6+1+2+0+6+1+0 = 25 -> 5
    assert facility_code_problem("0130113715") is None
    # 014011371 -> 2+7+6+1+2+0+8+1+0 = 27 -> 3
    assert facility_code_problem("0140113713") is None


def test_every_single_digit_error_of_a_facility_code_is_refused() -> None:
    for wrong in _one_digit_changes(FACILITY):
        assert facility_code_problem(wrong) is not None, wrong


@pytest.mark.parametrize("third", "0256789")
def test_facility_code_third_digit_is_the_fee_table(third: str) -> None:
    digits = FACILITY[:2] + third + FACILITY[3:9]
    code = digits + str(luhn_check_digit(digits))  # the check digit is right: only the 点数表 is wrong
    assert facility_code_problem(code) == "third digit (点数表) must be 1 医科, 3 歯科 or 4 調剤"


@pytest.mark.parametrize("value", ["011011371", "01101137190", "011011371a", "０１１０１１３７１９", ""])
def test_facility_code_shape(value: str) -> None:
    assert facility_code_problem(value) == "must be 10 digits"


def test_my_number_check_digit() -> None:
    assert is_my_number(MY_NUMBER)
    # remainder 0 or 1 gives check digit 0: eleven zeros (Σ = 0), and a 2 at P(5) (Q = 6: Σ = 12 ≡ 1)
    assert is_my_number("000000000000")
    assert is_my_number("000000200000")
    assert not is_my_number("000000200001")


def test_every_single_digit_error_of_a_my_number_is_refused() -> None:
    # modulus 11 with weights 2..7 finds every single-digit error
    for wrong in _one_digit_changes(MY_NUMBER):
        assert not is_my_number(wrong), wrong


@pytest.mark.parametrize("value", ["12345678901", "1234567890180", "12345678901a", "１２３４５６７８９０１８", ""])
def test_my_number_shape(value: str) -> None:
    assert not is_my_number(value)


class _Wire(BaseModel):
    insurer: InsurerNumber
    facility: FacilityCode | None = None
    branch: Branch | None = None


def test_wire_types_accept_and_normalise() -> None:
    model = _Wire.model_validate({"insurer": f"  {KOKUHO_CHIYODA} ", "facility": FACILITY, "branch": "０１"})
    assert (model.insurer, model.facility, model.branch) == (KOKUHO_CHIYODA, FACILITY, "01")
    assert _Wire.model_validate({"insurer": int(KOKUHO_CHIYODA), "branch": 12}).branch == "12"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"insurer": int(KYOKAI_TOKYO)}, "insurer number must be 8 digits"),  # a number loses its leading 0
        ({"insurer": KYOKAI_TOKYO[:-1] + "3"}, "insurer number check digit does not match"),
        ({"insurer": KYOKAI_TOKYO, "facility": FACILITY[:-1] + "0"}, "facility code check digit does not match"),
        ({"insurer": KYOKAI_TOKYO, "branch": "123"}, "branch (枝番) must be 2 digits"),
    ],
)
def test_wire_types_name_the_rule_never_the_value(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _Wire.model_validate(data)
    (error,) = caught.value.errors(include_input=False)
    assert message in error["msg"]
    for value in data.values():
        assert str(value) not in error["msg"]


# names and addresses as compared (card linking, "newer eligibility"): written down here as the
# plain definition, against which the one implementation (it takes shortcuts) is checked
_HYPHEN_FORMS = "‐‑‒–—―−ーｰ－"


def _person_text_by_definition(value: str) -> str:
    folded = "".join(c for c in unicodedata.normalize("NFKC", value) if not c.isspace())
    return folded.translate(str.maketrans(_HYPHEN_FORMS, "-" * len(_HYPHEN_FORMS)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("山田　太郎", "山田太郎"),  # the full-width space between family and given name
        ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダタロウ"),  # half-width kana composed with its voiced mark
        ("東京都千代田区霞が関１－２－２", "東京都千代田区霞が関1-2-2"),
        ("霞が関1ー2―2\t\u00a0\u2003", "霞が関1-2-2"),  # every hyphen form, every kind of space
        ("㈱しかく", "(株)しかく"),
        ("", ""),
    ],
)
def test_normalize_person_text(value: str, expected: str) -> None:
    assert normalize_person_text(value) == expected
    assert _person_text_by_definition(value) == expected


def test_normalize_person_text_is_its_definition_on_mixed_text() -> None:
    pool = "佐藤幹 \u3000\t\u00a0\u2003\u205f\n\u1680ｻﾄｳﾐｷカ\u3099\u309bﾞー－ｰ‐-―12１２Ａa\u0301é㈱"
    rnd = random.Random(11)
    samples = ["佐藤　幹", "山口県江東区中川崎19丁目3番6号", "東京都 1-2-3", "ｻﾄｳ　ﾐｷ", "カ\u3000\u3099"]
    samples += ["".join(rnd.choice(pool) for _ in range(rnd.randint(1, 12))) for _ in range(5000)]
    for s in samples:
        assert normalize_person_text(s) == _person_text_by_definition(s), repr(s)
