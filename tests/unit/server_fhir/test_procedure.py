"""診療・手術 as FHIR (``mapping.procedure``) and the ``date`` search of ``GET /fhir/R4/Procedure``
(``mapping.date_criterion``): FHIR's ranges for a year, a month and a day, each prefix, and the
shapes refused."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from fhir.resources.R4B.procedure import Procedure

from shikaku_server.errors import ValidationFailedError
from shikaku_server.fhir import codes as c
from shikaku_server.fhir import mapping


def item(**over: object) -> dict[str, object]:
    return {
        "performed_on": "2025-04-01",
        "facility_code": "0110113719",
        "procedure_code": "150060010",
        "procedure_name": "虫垂切除術（虫垂周囲膿瘍を伴わないもの）",
        "kind": "手術",
        "inpatient": True,
    } | over


def test_a_surgery_is_a_valid_jp_procedure() -> None:
    body = mapping.procedure(item())
    Procedure.model_validate_json(mapping.render(body))
    assert [x["system"] for x in body["code"]["coding"]] == [c.PROCEDURE_CODE_SYSTEM, c.PROCEDURE_CLAIM_CODE_SYSTEM]
    assert {x["code"] for x in body["category"]["coding"]} == {"手術", "387713003"}
    assert body["extension"] == [{"url": c.INPATIENT_EXTENSION, "valueBoolean": True}]


def test_a_code_that_is_not_medical_is_not_claimed_for_the_medical_master() -> None:
    body = mapping.procedure(item(procedure_code="301000110", procedure_name="初診料（歯科）", kind="診療",
                                  inpatient=False))
    Procedure.model_validate_json(orjson.dumps(body))
    assert body["code"]["coding"] == [{"system": c.PROCEDURE_CLAIM_CODE_SYSTEM, "code": "301000110"}]
    assert body["category"]["coding"] == [{"system": c.PROCEDURE_KIND_SYSTEM, "code": "診療", "display": "診療"}]


@pytest.mark.parametrize(
    ("value", "start", "end", "prefix"),
    [
        ("2025", dt.date(2025, 1, 1), dt.date(2025, 12, 31), "eq"),
        ("ge2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 29), "ge"),  # a leap February
        ("lt2025-02", dt.date(2025, 2, 1), dt.date(2025, 2, 28), "lt"),
        ("ne2025-04-01", dt.date(2025, 4, 1), dt.date(2025, 4, 1), "ne"),
        ("le2025-12", dt.date(2025, 12, 1), dt.date(2025, 12, 31), "le"),
    ],
)
def test_date_values_are_ranges(value: str, start: dt.date, end: dt.date, prefix: str) -> None:
    assert mapping.date_criterion(value) == mapping.DateCriterion(prefix, start, end)


@pytest.mark.parametrize(
    ("value", "inside", "outside"),
    [
        ("2025-04", [dt.date(2025, 4, 1), dt.date(2025, 4, 30)], [dt.date(2025, 3, 31), dt.date(2025, 5, 1)]),
        ("ne2025-04", [dt.date(2025, 3, 31), dt.date(2025, 5, 1)], [dt.date(2025, 4, 15)]),
        ("gt2025-04", [dt.date(2025, 5, 1)], [dt.date(2025, 4, 30)]),
        ("ge2025-04", [dt.date(2025, 4, 1)], [dt.date(2025, 3, 31)]),
        ("lt2025-04", [dt.date(2025, 3, 31)], [dt.date(2025, 4, 1)]),
        ("le2025-04", [dt.date(2025, 4, 30)], [dt.date(2025, 5, 1)]),
    ],
)
def test_prefixes_match_as_fhir_says(value: str, inside: list[dt.date], outside: list[dt.date]) -> None:
    criterion = mapping.date_criterion(value)
    assert all(criterion.matches(d) for d in inside)
    assert not any(criterion.matches(d) for d in outside)


@pytest.mark.parametrize(
    "value",
    ["", "25", "2025-4", "2025-13", "2025-02-29", "2025-00-10", "0000", "sa2025", "eb2025", "2025-01-01T00:00:00Z",
     "ge", "２０２５", "2025-01-01 ", "ge2024,le2025", "EQ2025"],
)
def test_other_shapes_are_refused(value: str) -> None:
    with pytest.raises(ValidationFailedError):
        mapping.date_criterion(value)
