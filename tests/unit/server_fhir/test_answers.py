"""The validated response templates (``fhir.answers``): for every validity and every optional
part of an answer, and for any identifier and time the slots can take, a template's response is
byte for byte the one ``mapping.render`` validates and sends; templates are per answer, bounded,
and validated once per shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.identifier import Identifier as R4BIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.eligibility import EligibilityResult
from shikaku_server.fhir import answers, lean, mapping

INSURER = "01130012"


def insured(**over: Any) -> dict[str, Any]:
    base = {
        "insurer_number": INSURER,
        "insurer_name": "全国健康保険協会 東京支部",
        "symbol": "１２３",
        "number": "４５６７",
        "branch": "00",
        "card_classification": "01",
        "personal_family": "1",
        "name": "山田 太郎",
        "name_kana": "ヤマダ タロウ",
        "sex": "1",
        "birth_date": "1980-04-01",
        "address": "東京都千代田区霞が関1-2-2",
        "post_number": "100-8916",
        "valid_from": "2024-04-01",
        "valid_to": None,
        "reason_of_loss": None,
        "copay_ratio": 30,
    }
    return {**base, **over}


def result(validity: int, person: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    """An eligibility result as the JSON lookup answers it (checked against its model)."""
    out: dict[str, Any] = {
        "processing": {"status": "ok", "code": None, "message": None},
        "validity": validity,
        "query_kind": "number",
        "as_of": "2025-01-01",
        "visit_id": None,
        "insured": person,
        "elderly": None,
        "limit_certificate": None,
        "specific_diseases": [],
        "certificate_notice": None,
        "public_expenses": [],
    }
    out.update(over)
    assert EligibilityResult.model_validate(out).model_dump(mode="json") == out
    return out


ELDERLY = {"certificate_date": "2020-01-01", "valid_from": "2020-01-01", "valid_to": None, "copay_ratio": 20}
LIMIT = {"kind": "01", "classification": "A03", "valid_from": "2024-04-01", "valid_to": "2026-03-31"}
DISEASES = [
    {"category": "1", "valid_from": "2024-04-01", "valid_to": None, "self_pay": 10000},
    {"category": "2", "valid_from": "2024-04-01", "valid_to": "2024-12-31", "self_pay": None},
]
PUBLIC_EXPENSES = [  # 公費負担医療: 小児慢性 without an end and no self-pay, 難病 with a cap
    {"payer_number": "52130018", "recipient_number": "2000035", "monthly_cap": 0, "valid_from": "2024-04-01",
     "valid_to": None},
    {"payer_number": "54130016", "recipient_number": "1000015", "monthly_cap": 10000, "valid_from": "2024-04-01",
     "valid_to": "2025-03-31"},
]

# every validity, and each optional part of an answer present and absent
RESULTS = {
    "valid": result(1, insured()),
    "valid, elderly, limit, diseases": result(
        1, insured(), elderly=ELDERLY, limit_certificate=LIMIT, specific_diseases=DISEASES
    ),
    "valid, elderly without certificate date": result(1, insured(), elderly={**ELDERLY, "certificate_date": None}),
    "valid, family, no symbol, no address, no insurer name": result(
        1,
        insured(symbol="", personal_family="2", address=None, post_number=None, insurer_name=None, sex="3"),
    ),
    "valid, female, post number only": result(1, insured(sex="2", address=None)),
    "invalid (lost)": result(2, insured(valid_to="2024-09-30", reason_of_loss="01")),
    "invalid, newer eligibility exists": result(3, insured(valid_to="2024-09-30", reason_of_loss="03")),
    "valid, limit, public expenses": result(
        1, insured(), limit_certificate=LIMIT, public_expenses=PUBLIC_EXPENSES
    ),
    "invalid (lost), a public expense": result(
        2, insured(valid_to="2024-09-30", reason_of_loss="01"), public_expenses=PUBLIC_EXPENSES[1:]
    ),
    "no match": result(4),
    "several match": result(5),
}
IDENTIFIERS = [
    None,
    {"system": "urn:example:clinic-request", "value": "req-1"},
    {"value": "受付 0001"},
    # read by the R4B reader (not the lean one): whatever an R4B Identifier dumps
    R4BIdentifier.model_validate(
        {
            "use": "official",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "RI"}]},
            "system": "",
            "value": "x",
            "period": {"start": "2025-01-01T09:00:00+09:00"},
        }
    ).model_dump(mode="json", exclude_none=True),
]
CREATED = "2026-12-02T00:41:23+00:00"


def sent(answer: dict[str, Any], identifier: dict[str, Any] | None, created: str) -> bytes:
    """What the validated path sends for this answer (``mapping.render`` validates it or raises)."""
    response = mapping.eligibility_response(answer, {"insurer_number": INSURER}, identifier, created)
    return mapping.render(response)


@pytest.mark.parametrize("name", RESULTS)
@pytest.mark.parametrize("identifier", IDENTIFIERS, ids=["none", "system+value", "value", "r4b"])
def test_template_is_the_validated_response(name: str, identifier: dict[str, Any] | None) -> None:
    answer = RESULTS[name]
    template = answers.Template(answer, INSURER)
    body = template.render(identifier, CREATED)
    assert body == sent(answer, identifier, CREATED)
    CoverageEligibilityResponse.model_validate_json(body)
    assert orjson.loads(body)["created"] == CREATED


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)
_instants = st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(dt.UTC)
).map(mapping.instant)


def _lean_identifier(system: str | None, value: str) -> dict[str, Any] | None:
    """The identifier as the lean reader gives it, or None when it would not admit it."""
    data = {"value": value} if system is None else {"system": system, "value": value}
    try:
        return lean.Identifier.model_validate(data).model_dump(mode="json", exclude_none=True)
    except ValidationError:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(RESULTS)),
    system=st.none() | _text,
    value=_text,
    created=_instants,
    with_identifier=st.booleans(),
)
def test_filled_slots_never_break_validity(
    name: str, system: str | None, value: str, created: str, with_identifier: bool
) -> None:
    """A template validated once, then filled with any identifier a reader admits and any time:
    the very bytes the validated path would send (which validates them)."""
    answer = RESULTS[name]
    template = answers.Template(answer, INSURER)
    template.render(IDENTIFIERS[1], CREATED)  # validated with an identifier
    template.render(None, CREATED)  # and without
    identifier = _lean_identifier(system, value) if with_identifier else None
    assert template.render(identifier, created) == sent(answer, identifier, created)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=_text,
    kana=_text,
    address=st.none() | _text,
    post=st.none() | _text,
    symbol=st.just("") | _text,
    number=_text,
    insurer_name=st.none() | _text,
)
def test_any_answer_is_validated_before_it_is_sent(
    name: str,
    kana: str,
    address: str | None,
    post: str | None,
    symbol: str,
    number: str,
    insurer_name: str | None,
) -> None:
    """Whatever the insurer's text: the template's first response of each shape is validated, so
    it is exactly what the validated path sends, or it is refused the same way."""
    person = insured(
        name=name,
        name_kana=kana,
        address=address,
        post_number=post,
        symbol=symbol,
        number=number,
        insurer_name=insurer_name,
    )
    answer = result(1, person)
    try:
        expected = sent(answer, IDENTIFIERS[1], CREATED)
    except ValidationError:  # not valid FHIR: neither path sends it
        with pytest.raises(ValidationError):
            answers.Template(answer, INSURER).render(IDENTIFIERS[1], CREATED)
        return
    assert answers.Template(answer, INSURER).render(IDENTIFIERS[1], CREATED) == expected


def test_one_template_per_answer_validated_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers, "_TEMPLATES", type(answers._TEMPLATES)())
    calls: list[bytes] = []
    real = CoverageEligibilityResponse.model_validate_json

    def counting(body: bytes) -> Any:
        calls.append(body)
        return real(body)

    monkeypatch.setattr(CoverageEligibilityResponse, "model_validate_json", counting)
    valid = orjson.dumps(RESULTS["valid"])
    for i in range(5):
        answers.eligibility_body(valid, INSURER, {"value": f"req-{i}"})
        answers.eligibility_body(valid, INSURER, None)
    assert len(calls) == 2  # with an identifier, without
    assert answers.template(valid, INSURER) is answers.template(valid, INSURER)
    # another answer (another person, day, or the record changed by an upload): another template
    lost = orjson.dumps(RESULTS["invalid (lost)"])
    assert answers.template(lost, INSURER) is not answers.template(valid, INSURER)
    # the insurer number asked is part of the key (validity 4 and 5 answers do not carry it)
    none = orjson.dumps(RESULTS["no match"])
    other = answers.eligibility_body(none, "06130012", None).body
    assert orjson.loads(other)["contained"][0]["identifier"][0]["value"] == "06130012"
    assert (
        orjson.loads(answers.eligibility_body(none, INSURER, None).body)["contained"][0]["identifier"][0]["value"]
        == INSURER
    )


def test_templates_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers, "_TEMPLATES", type(answers._TEMPLATES)())
    monkeypatch.setattr(answers, "MAX_TEMPLATES", 3)
    bodies = [orjson.dumps(result(1, insured(number=str(n)))) for n in range(5)]
    first = answers.template(bodies[0], INSURER)
    for body in bodies[1:]:
        answers.template(body, INSURER)
    assert len(answers._TEMPLATES) == 3
    assert answers.template(bodies[0], INSURER) is not first  # the least recently used went first


def test_created_is_now_as_an_instant() -> None:
    body = answers.eligibility_body(orjson.dumps(RESULTS["valid"]), INSURER, None).body
    created = dt.datetime.fromisoformat(orjson.loads(body)["created"])
    assert created.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60
    with pytest.raises(ValueError, match="zone"):
        mapping.instant(dt.datetime(2025, 1, 1))
