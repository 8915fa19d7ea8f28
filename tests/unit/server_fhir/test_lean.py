"""The lean request reader (``fhir.lean``) is a strict subset of the R4B model: whatever it
admits, ``fhir.resources`` admits too and the facade's profile reads the same query from both (or
refuses both the same way); whatever else it leaves to the R4B reader."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fhir.resources.R4B.coverageeligibilityrequest import CoverageEligibilityRequest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shikaku_server.fhir import codes as c
from shikaku_server.fhir import lean, mapping
from shikaku_server.fhir.mapping import InvalidResourceError
from tests.integration.fhir_helpers import eligibility_request


def profile_or_error(request: Any) -> Any:
    try:
        return mapping._profile(request)
    except InvalidResourceError as exc:
        return ("refused", exc.outcome)


def r4b(data: dict[str, Any]) -> CoverageEligibilityRequest:
    return CoverageEligibilityRequest.model_validate_json(orjson.dumps(data))


def assert_same_reading(data: dict[str, Any]) -> bool:
    """When the lean reader admits ``data``: R4B admits it and both read the same. True if admitted."""
    read = lean.lean_request(data)
    if read is None:
        return False
    assert profile_or_error(read) == profile_or_error(r4b(data))
    return True


# text of every kind: ideographic spaces, control characters, whitespace only, emoji, …
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_anything = (
    st.sampled_from(["123", "４５６７", "00", "01130012", "1980-04-01", "#pat", "a b", " x ", "受付\u3000番号"]) | _text
)
_dates = st.one_of(
    st.just("1980-04-01"),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["1980-02-30", "1980", "1980-04", "0000-01-01", "1980-04-01T00:00:00", "1980-4-1", " 1980-04-01"]),
    _text,
)
_datetimes = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2025-01-01T09:00:00+09:00",
            "2025-01-01T09:00:00Z",
            "2025-01-01T09:00:00",
            "2025-01-01",
            "2025-01-01T24:00:00Z",
            "2025-01-01T09:00:60Z",
            "2025-01-01T09:00:00+15:00",
            "2025-02-30T09:00:00Z",
            "2025-01-01T09:00:00.1234567Z",
        ]
    ),
    _text,
)


def _sometimes(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 9)) == 0


def _mostly(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 3).flatmap(lambda n: other if n == 0 else st.just(value))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """The ordinary request with some of its values drawn, elements dropped or added."""
    body = eligibility_request(
        insurer_number=draw(_mostly("01130012", st.sampled_from(["06130012", "0113001", "12345678"]) | _text)),
        symbol=draw(_mostly("123", st.none() | _anything)),
        number=draw(_mostly("4567", _anything)),
        branch=draw(_mostly("00", st.none() | _anything)),
        birth_date=draw(_mostly("1980-04-01", _dates)),
        as_of=draw(_mostly(None, _dates)),
        include_limit_certificate=draw(st.booleans()),
        insurer_in=draw(st.sampled_from(["payor", "insurer", "identifier", "display"])),
    )
    if _sometimes(draw):
        body["created"] = draw(_datetimes)
    if _sometimes(draw):
        body["identifier"] = [
            draw(st.fixed_dictionaries({"value": _anything}, optional={"system": _anything, "use": _anything}))
        ]
    elif _sometimes(draw):
        del body["identifier"]
    if _sometimes(draw):
        body["status"] = draw(st.sampled_from(["active", "cancelled", "draft", "entered-in-error", "open", ""]))
    if _sometimes(draw):
        body["purpose"] = draw(st.lists(st.sampled_from(["validation", "benefits", "discovery", "x"]), max_size=3))
    contained = body["contained"]
    for resource in contained:
        if _sometimes(draw):
            resource["id"] = draw(_anything)
    if _sometimes(draw):
        contained.reverse()
    if _sometimes(draw):
        body["patient"] = {"reference": draw(_anything)}
    if _sometimes(draw):
        contained.append(dict(contained[0]))  # a duplicate id
    if _sometimes(draw):
        name, value = draw(
            st.sampled_from(
                [
                    ("meta", {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"]}),
                    ("_created", {"extension": [{"url": "urn:x", "valueString": "x"}]}),
                    ("text", {"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'>x</div>"}),
                    ("unknownElement", 1),
                    ("servicedPeriod", {"start": "2025-01-01"}),
                    ("item", []),
                    ("insurance", []),
                    ("contained", []),
                ]
            )
        )
        body[name] = value
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_what_the_lean_reader_admits_r4b_admits_and_reads_the_same(data: dict[str, Any]) -> None:
    event("read lean" if assert_same_reading(data) else "left to R4B")


def test_the_ordinary_requests_are_read_lean() -> None:
    """The requests of docs/fhir.md (and bench/fhir_bench.py) take the lean path."""
    from bench.fhir_bench import fhir_request

    query = {"insurer_number": "06130012", "symbol": "1", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
    ordinary = [
        eligibility_request(),
        eligibility_request(symbol=None, branch=None, as_of="2025-01-01", include_limit_certificate=True),
        eligibility_request(insurer_in="insurer"),
        eligibility_request(insurer_in="identifier"),
        fhir_request(query),
    ]
    for data in ordinary:
        assert assert_same_reading(data), data


@pytest.mark.parametrize(
    "change",
    [
        {"meta": {"profile": ["urn:x"]}},
        {"_status": {"extension": [{"url": "urn:x", "valueString": "x"}]}},
        {"servicedPeriod": {"start": "2025-01-01"}},
        {"created": "2025-01-01"},  # a valid dateTime the lean reader leaves to R4B
        {"identifier": [{"system": "urn:x", "value": "x", "use": "official"}]},
        {"status": "nonsense"},
        {"purpose": []},
    ],
)
def test_anything_else_is_left_to_the_r4b_reader(change: dict[str, Any]) -> None:
    data = {**eligibility_request(), **change}
    assert lean.lean_request(data) is None
    try:
        expected = profile_or_error(r4b(data))
    except ValueError:  # not valid R4B: read_request refuses it with the R4B reader's outcome
        with pytest.raises(InvalidResourceError) as refused:
            mapping.read_request(data, orjson.dumps(data))
        assert refused.value.outcome is not None
        assert refused.value.outcome["issue"][0]["details"]["coding"][0]["system"] == c.ERROR_SYSTEM
        return
    assert profile_or_error_read(data) == expected


def profile_or_error_read(data: dict[str, Any]) -> Any:
    try:
        return mapping.read_request(data, orjson.dumps(data))
    except InvalidResourceError as exc:
        return ("refused", exc.outcome)
