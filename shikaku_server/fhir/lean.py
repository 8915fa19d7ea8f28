"""The ordinary CoverageEligibilityRequest, read without the full R4B model.

``fhir.resources``' R4B model costs about a millisecond per request (its Python validators run on
every element). Almost every EHR sends the same small shape (docs/fhir.md, "Eligibility: the
request"); this module reads exactly that shape with a plain pydantic model of the elements the
facade reads and nothing else. It is a *strict subset* of the R4B model:

- every element it admits, the R4B model admits too, with the same value (no element is
  admitted that R4B would refuse: unknown elements, primitive extensions (``_birthDate``),
  ``meta``, ``text``, other value types, partial dates, leap seconds, … are not admitted here);
- whatever it does not admit is not refused here: ``lean_request`` answers ``None`` and the
  caller reads the resource with the full R4B model, which gives the OperationOutcome.

So a request gets the same answer, or the same error, whichever reader read it
(``mapping.read_request`` applies the facade's profile to either). The property tests in
tests/unit/fhir/test_lean.py check both halves against ``fhir.resources``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# FHIR primitive types, each narrower than fhir_core's (anchored patterns, no whitespace-only
# values, bounded lengths). The patterns run in pydantic's Rust regex engine, as fhir_core's do.
Text = Annotated[str, StringConstraints(pattern=r"^[ \r\n\t\S]*\S[ \r\n\t\S]*$", max_length=4096)]
Uri = Annotated[str, StringConstraints(pattern=r"^\S+$", max_length=1024)]
Code = Annotated[str, StringConstraints(pattern=r"^[^\s]+(\s[^\s]+)*$", max_length=256)]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-.]+$", max_length=64)]
_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_ZONE = r"(Z|[+\-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"


def _calendar_date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)  # 1980-02-30 or year 0000: refused (the full reader answers)


def _calendar_instant(value: str) -> str:
    dt.datetime.fromisoformat(value)
    return value


# a full date, as the R4B model gives it (``datetime.date``)
FullDate = Annotated[str, StringConstraints(pattern=rf"^{_DATE}$"), AfterValidator(_calendar_date)]
# a dateTime to the second with its zone (no partial dateTime, no leap second)
DateTimeText = Annotated[
    str,
    StringConstraints(pattern=rf"^{_DATE}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,6}})?{_ZONE}$"),
    AfterValidator(_calendar_instant),
]


class _Element(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# FHIR has no empty arrays; the bounds keep the shape ordinary
_SOME = Field(min_length=1, max_length=20)


class Identifier(_Element):
    system: Uri | None = None
    value: Text


class Reference(_Element):
    reference: Text | None = None
    identifier: Identifier | None = None
    display: Text | None = None


class Coding(_Element):
    system: Uri
    code: Code
    display: Text | None = None


class CodeableConcept(_Element):
    coding: Annotated[list[Coding], _SOME]
    text: Text | None = None


class Extension(_Element):
    url: Uri
    valueString: Text


class _Contained(_Element):
    kind: ClassVar[str]

    def get_resource_type(self) -> str:  # as the R4B models name themselves
        return self.kind


class Patient(_Contained):
    kind = "Patient"
    resourceType: Literal["Patient"]
    id: Id
    birthDate: FullDate | None = None


class Organization(_Contained):
    kind = "Organization"
    resourceType: Literal["Organization"]
    id: Id
    identifier: Annotated[list[Identifier], _SOME] | None = None
    name: Text | None = None


class Coverage(_Contained):
    kind = "Coverage"
    resourceType: Literal["Coverage"]
    id: Id
    extension: Annotated[list[Extension], _SOME] | None = None
    status: Literal["active", "cancelled", "draft", "entered-in-error"]
    beneficiary: Reference
    payor: Annotated[list[Reference], _SOME]


class Insurance(_Element):
    coverage: Reference


class Item(_Element):
    category: CodeableConcept


Contained = Annotated[Patient | Organization | Coverage, Field(discriminator="resourceType")]


class CoverageEligibilityRequest(_Element):
    resourceType: Literal["CoverageEligibilityRequest"]
    id: Id | None = None
    identifier: Annotated[list[Identifier], _SOME] | None = None
    contained: Annotated[list[Contained], _SOME] | None = None
    status: Literal["active", "cancelled", "draft", "entered-in-error"]
    purpose: Annotated[list[Literal["auth-requirements", "benefits", "discovery", "validation"]], _SOME]
    patient: Reference
    servicedDate: FullDate | None = None
    servicedPeriod: None = None  # not admitted here: the full reader refuses it with its message
    created: DateTimeText
    insurer: Reference
    insurance: Annotated[list[Insurance], _SOME] | None = None
    item: Annotated[list[Item], _SOME] | None = None


def lean_request(data: Any) -> CoverageEligibilityRequest | None:
    """The request (parsed JSON) in the ordinary shape, or ``None``: read it with the R4B model."""
    if not isinstance(data, dict):
        return None
    try:
        return CoverageEligibilityRequest.model_validate(data)
    except ValidationError:
        return None
