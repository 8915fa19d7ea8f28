"""Between FHIR resources and the contract's own shapes: pure functions, no I/O.

Every resource the facade answers is built here as JSON values and validated by its
``fhir.resources.R4B`` model (``checked``) before it leaves; the validated values are what is
sent. Requests are read through the models too (``read_request``), so a resource that is not
valid FHIR is refused before any rule runs. See docs/fhir.md for the field-by-field mapping."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.coverageeligibilityrequest import CoverageEligibilityRequest
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from schemas.identifiers import MY_NUMBER_MESSAGE, my_number_in
from shikaku_server.errors import DomainError, ValidationFailedError
from shikaku_server.fhir import codes as c
from shikaku_server.fhir.lean import lean_request

MODELS: dict[str, type[Resource]] = {
    m.__name__: m
    for m in (
        AuditEvent,
        Bundle,
        CapabilityStatement,
        Consent,
        CoverageEligibilityRequest,
        CoverageEligibilityResponse,
        MedicationDispense,
        Observation,
        OperationOutcome,
        Procedure,
    )
}


@dataclass(frozen=True, slots=True)
class Validated:
    """The JSON of a resource that its R4B model has validated, or that is made only of validated
    pieces and values of their own types (``answers``); sent as it is."""

    body: bytes


def render(resource: dict[str, Any]) -> bytes:
    """The JSON of a resource the facade answers, once its R4B model has validated it (every
    answer goes through here: ``views.fhir_response``). Validated from the bytes that are sent, in
    pydantic's JSON mode (a third cheaper than from Python objects); nested resources (a Bundle's
    entries, contained resources) are validated by the enclosing model. A failure is a bug: it raises."""
    body = orjson.dumps(resource)
    MODELS[resource["resourceType"]].model_validate_json(body)
    return body


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        # FHIR has no empty values: an absent 記号 or address is an absent element
        return {k: _drop_none(v) for k, v in value.items() if v is not None and v not in ([], {}, "")}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """The resource without empty elements (FHIR has none)."""
    out: dict[str, Any] = _drop_none(body)
    return out


def instant(at: dt.datetime) -> str:
    """A FHIR ``instant`` (also a ``dateTime``): to the second, with the zone."""
    if at.tzinfo is None:
        raise ValueError("an instant needs its zone")
    return at.isoformat(timespec="seconds")


def now_instant() -> str:
    return instant(dt.datetime.now(dt.UTC))


# ---------------------------------------------------------------- errors


def operation_outcome(
    code: str, status: int, diagnostics: str, *, expression: list[str] | None = None
) -> dict[str, Any]:
    """An error as FHIR: the contract's code in ``details.coding`` (``urn:shikaku:error``)."""
    issue: dict[str, Any] = {
        "severity": "error",
        "code": c.ISSUE_TYPE_FOR_STATUS.get(status, "exception"),
        "details": {"coding": [{"system": c.ERROR_SYSTEM, "code": code}]},
        "diagnostics": diagnostics,
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_of(exc: DomainError) -> dict[str, Any]:
    return operation_outcome(exc.code, exc.status, exc.detail)


def validation_outcome(errors: Iterable[Mapping[str, Any]], where: str) -> tuple[str, dict[str, Any]]:
    """(code, OperationOutcome) for pydantic errors; messages name the field and the rule only."""
    issues = []
    code = "validation_error"
    for err in list(errors)[:20]:
        message = str(err.get("msg", ""))
        if "my_number_detected" in message:
            code = "my_number_detected"
        loc = ".".join(str(p) for p in err.get("loc", ()) if str(p) not in ("", "__root__"))
        issues.append((f"{where}.{loc}" if loc else where, message))
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "details": {"coding": [{"system": c.ERROR_SYSTEM, "code": code}]},
                "diagnostics": f"{path}: {message}",
                "expression": [path],
            }
            for path, message in issues
        ]
        or [
            {
                "severity": "error",
                "code": "invalid",
                "details": {"coding": [{"system": c.ERROR_SYSTEM, "code": code}]},
                "diagnostics": f"{where}: not valid",
            }
        ],
    }
    return code, (body)


class InvalidResourceError(ValidationFailedError):
    """A request resource that is not valid FHIR, or not what this interaction takes."""

    def __init__(self, detail: str, outcome: dict[str, Any] | None = None, *, my_number: bool = False) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.my_number = my_number


def _invalid(detail: str, expression: str) -> InvalidResourceError:
    return InvalidResourceError(
        detail, operation_outcome("validation_error", 422, f"{expression}: {detail}", expression=[expression])
    )


# ---------------------------------------------------------------- eligibility request


def read_request(data: Any, raw: bytes | None = None) -> dict[str, Any]:
    """A CoverageEligibilityRequest (parsed JSON) → the fields of the contract's by-number query.

    The resource is read by a model first — the ordinary shape by ``lean.lean_request`` (a strict
    subset of the R4B model, a fraction of its cost), anything else by its R4B model, which
    refuses what is not valid FHIR; then the facade's profile: purpose ``validation``, the
    contained Patient's birthDate, the contained JP_Coverage's 記号/番号/枝番 extensions and the
    payor Organization's 保険者番号."""
    if my_number_in(data):  # in any element: the answer echoes some (identifier, contained …)
        raise InvalidResourceError(
            MY_NUMBER_MESSAGE, operation_outcome("my_number_detected", 422, MY_NUMBER_MESSAGE), my_number=True
        )
    request: Any = lean_request(data)
    if request is None:
        request = _r4b_request(data, raw)
    return _profile(request)


def _r4b_request(data: Any, raw: bytes | None) -> CoverageEligibilityRequest:
    if not isinstance(data, dict) or data.get("resourceType") != "CoverageEligibilityRequest":
        raise _invalid("a CoverageEligibilityRequest is expected", "resourceType")
    try:
        # from the bytes when we have them: pydantic's JSON mode is a third cheaper
        return (
            CoverageEligibilityRequest.model_validate_json(raw)
            if raw is not None
            else CoverageEligibilityRequest.model_validate(data)
        )
    except ValidationError as exc:
        code, outcome = validation_outcome(exc.errors(include_input=False), "CoverageEligibilityRequest")
        raise InvalidResourceError(
            "not a valid CoverageEligibilityRequest", outcome, my_number=code != "validation_error"
        ) from None
    except (KeyError, TypeError):  # fhir.resources looks a contained resource's type up by name
        raise _invalid(
            "a contained resource of no known resourceType", "CoverageEligibilityRequest.contained"
        ) from None


def _profile(request: Any) -> dict[str, Any]:
    """The facade's profile over a request read by either model (the same attributes)."""
    if "validation" not in (request.purpose or []):
        raise _invalid("purpose must include validation", "CoverageEligibilityRequest.purpose")
    if request.servicedPeriod is not None:
        raise _invalid(
            "give the as-of date as servicedDate (a period is not supported)",
            "CoverageEligibilityRequest.servicedPeriod",
        )
    contained = {r.id: r for r in request.contained or () if getattr(r, "id", None)}

    def local(reference: Any, kind: str, where: str) -> Any:
        ref = getattr(reference, "reference", None) if reference is not None else None
        if not ref or not ref.startswith("#") or ref[1:] not in contained:
            return None
        target = contained[ref[1:]]
        if target.get_resource_type() != kind:
            raise _invalid(f"must refer to a contained {kind}", where)
        return target

    patient = local(request.patient, "Patient", "CoverageEligibilityRequest.patient")
    if patient is None or patient.birthDate is None:
        raise _invalid("a contained Patient with birthDate is required", "CoverageEligibilityRequest.patient")
    if len(request.insurance or []) != 1:
        raise _invalid(
            "exactly one insurance with a contained Coverage is required", "CoverageEligibilityRequest.insurance"
        )
    coverage = local(
        request.insurance[0].coverage if request.insurance else None,
        "Coverage",
        "CoverageEligibilityRequest.insurance.coverage",
    )
    if coverage is None:
        raise _invalid(
            "exactly one insurance with a contained Coverage is required", "CoverageEligibilityRequest.insurance"
        )
    extensions: dict[str, Any] = {}
    for ext in coverage.extension or ():
        if ext.url in (c.SYMBOL_EXTENSION, c.NUMBER_EXTENSION, c.SUBNUMBER_EXTENSION):
            if ext.url in extensions or ext.valueString is None:
                raise _invalid("each JP_Coverage extension once, as valueString", "Coverage.extension")
            extensions[ext.url] = ext.valueString
    if c.NUMBER_EXTENSION not in extensions:
        raise _invalid("the JP_Coverage_InsuredPersonNumber extension (番号) is required", "Coverage.extension")
    insurer_number = None
    candidates = [*(coverage.payor or ()), request.insurer]
    for reference in candidates:
        org = local(reference, "Organization", "Coverage.payor")
        identifiers = list(org.identifier or ()) if org is not None else []
        if getattr(reference, "identifier", None) is not None:
            identifiers.append(reference.identifier)
        for identifier in identifiers:
            if identifier.system == c.INSURER_NUMBER_SYSTEM and identifier.value:
                insurer_number = identifier.value
                break
        if insurer_number is not None:
            break
    if insurer_number is None:
        raise _invalid(
            f"the payor Organization needs an identifier of system {c.INSURER_NUMBER_SYSTEM} (保険者番号)",
            "Coverage.payor",
        )
    include_limit = any(
        coding.system == c.BENEFIT_CATEGORY_SYSTEM and coding.code == "limit-certificate"
        for item in request.item or ()
        if item.category is not None
        for coding in item.category.coding or ()
    )
    query: dict[str, Any] = {
        "insurer_number": insurer_number,
        "symbol": extensions.get(c.SYMBOL_EXTENSION, ""),
        "number": extensions[c.NUMBER_EXTENSION],
        "birth_date": patient.birthDate,
        "include_limit_certificate": include_limit,
    }
    if c.SUBNUMBER_EXTENSION in extensions:
        query["branch"] = extensions[c.SUBNUMBER_EXTENSION]
    if request.servicedDate is not None:
        query["as_of"] = request.servicedDate
    identifier = request.identifier[0].model_dump(mode="json", exclude_none=True) if request.identifier else None
    return {"query": query, "identifier": identifier}


# the contract's field → the FHIR element that carries it (for validation messages)
QUERY_PATHS = {
    "insurer_number": "Organization.identifier.value",
    "symbol": "Coverage.extension(JP_Coverage_InsuredPersonSymbol)",
    "number": "Coverage.extension(JP_Coverage_InsuredPersonNumber)",
    "branch": "Coverage.extension(JP_Coverage_InsuredPersonSubNumber)",
    "birth_date": "Patient.birthDate",
    "as_of": "CoverageEligibilityRequest.servicedDate",
    "include_limit_certificate": "CoverageEligibilityRequest.item",
}


def query_outcome(errors: Iterable[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Validation errors of the by-number query, named by the FHIR element of each field."""

    def element(loc: Any) -> str:
        field = str(loc[0]) if loc else ""  # a whole-body check (the My Number screen) has no field
        return QUERY_PATHS.get(field, field)

    renamed = [{**err, "loc": (element(err.get("loc", ())),)} for err in errors]
    code, outcome = validation_outcome(renamed, "CoverageEligibilityRequest")
    for issue in outcome["issue"]:  # the element path alone, not prefixed twice
        issue["expression"] = [issue["expression"][0].removeprefix("CoverageEligibilityRequest.")]
        issue["diagnostics"] = issue["diagnostics"].removeprefix("CoverageEligibilityRequest.")
    return code, (outcome)


# ---------------------------------------------------------------- eligibility response


def _coding(system: str, code: str | None, display: str | None = None) -> dict[str, Any] | None:
    if code is None:
        return None
    return {"system": system, "code": code, "display": display}


def _period(start: str | None, end: str | None) -> dict[str, Any] | None:
    if start is None and end is None:
        return None
    return {"start": start, "end": end}


def _item(category: str, **fields: Any) -> dict[str, Any]:
    return {"category": {"coding": [{"system": c.BENEFIT_CATEGORY_SYSTEM, "code": category}]}, **fields}


def _period_extension(start: str | None, end: str | None) -> list[dict[str, Any]]:
    return [{"url": c.CERTIFICATE_PERIOD_EXTENSION, "valuePeriod": _period(start, end)}]


def response_variables(identifier: dict[str, Any] | None, created: str) -> dict[str, Any]:
    """The elements of a CoverageEligibilityResponse that are not the eligibility answer's: the
    request's identifier (an R4B ``Identifier``, as read from the request) and the time of the
    answer (a FHIR ``dateTime`` from ``now_instant``). ``answers`` fills them into a validated
    answer; ``eligibility_response`` into a new one."""
    return {
        "identifier": [identifier] if identifier else None,
        "created": created,
        "request": {"identifier": identifier} if identifier else {"display": "CoverageEligibilityRequest"},
    }


def eligibility_response(
    result: Mapping[str, Any],
    query: Mapping[str, Any],
    identifier: dict[str, Any] | None,
    created: str | None = None,
) -> dict[str, Any]:
    """The contract's eligibility result (JSON values) as a CoverageEligibilityResponse."""
    variables = response_variables(identifier, created or now_instant())
    insured = result["insured"]
    validity = int(result["validity"])
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "id": "insurer",
        "meta": {"profile": [c.JP_PROFILE + "JP_Organization"]},
        "identifier": [{"system": c.INSURER_NUMBER_SYSTEM, "value": query["insurer_number"]}],
        "name": insured["insurer_name"] if insured else None,
    }
    contained: list[dict[str, Any]] = [organization]
    response: dict[str, Any] = {
        "resourceType": "CoverageEligibilityResponse",
        "contained": contained,
        "extension": [
            {
                "url": c.VALIDITY_EXTENSION,
                "valueCoding": _coding(c.VALIDITY_SYSTEM, str(validity), c.VALIDITY_DISPLAY[validity]),
            }
        ],
        "identifier": variables["identifier"],
        "status": "active",
        "purpose": ["validation"],
        "patient": {"display": "no matching insured person"},
        "servicedDate": result["as_of"],
        "created": variables["created"],
        "request": variables["request"],
        "outcome": "complete",
        "disposition": f"validity {validity}: {c.VALIDITY_DISPLAY[validity]}",
        "insurer": {"reference": "#insurer"},
    }
    if insured is not None:
        address = None
        if insured["address"] is not None or insured["post_number"] is not None:
            address = [{"text": insured["address"], "postalCode": insured["post_number"]}]
        contained.append(
            {
                "resourceType": "Patient",
                "id": "patient",
                "meta": {"profile": [c.JP_PROFILE + "JP_Patient"]},
                "name": [
                    {
                        "extension": [{"url": c.NAME_REPRESENTATION, "valueCode": "IDE"}],
                        "use": "official",
                        "text": insured["name"],
                    },
                    {
                        "extension": [{"url": c.NAME_REPRESENTATION, "valueCode": "SYL"}],
                        "use": "official",
                        "text": insured["name_kana"],
                    },
                ],
                "gender": c.GENDER.get(insured["sex"], "unknown"),
                "birthDate": insured["birth_date"],
                "address": address,
            }
        )
        family = insured["personal_family"]
        relationship = [_coding(c.PERSONAL_FAMILY_SYSTEM, family, "本人" if family == "1" else "家族")]
        if family == "1":
            relationship.insert(0, _coding(c.SUBSCRIBER_RELATIONSHIP, "self", "Self"))
        extensions = [
            {"url": url, "valueString": insured[key]}
            for url, key in (
                (c.SYMBOL_EXTENSION, "symbol"),
                (c.NUMBER_EXTENSION, "number"),
                (c.SUBNUMBER_EXTENSION, "branch"),
            )
            if insured[key]  # 後期高齢者 cards have no 記号: no extension
        ] + [
            {
                "url": c.CARD_CLASSIFICATION_EXTENSION,
                "valueCoding": _coding(c.CARD_CLASSIFICATION_SYSTEM, insured["card_classification"]),
            },
        ]
        if insured["reason_of_loss"] is not None:
            extensions.append(
                {
                    "url": c.REASON_OF_LOSS_EXTENSION,
                    "valueCoding": _coding(c.REASON_OF_LOSS_SYSTEM, insured["reason_of_loss"]),
                }
            )
        contained.append(
            {
                "resourceType": "Coverage",
                "id": "coverage",
                "meta": {"profile": [c.JP_PROFILE + "JP_Coverage"]},
                "extension": extensions,
                "status": "active" if validity == 1 else "cancelled",
                "beneficiary": {"reference": "#patient"},
                "relationship": {"coding": relationship},
                "period": _period(insured["valid_from"], insured["valid_to"]),
                "payor": [{"reference": "#insurer"}],
            }
        )
        response["patient"] = {"reference": "#patient"}
        items = [
            _item(
                "copay",
                benefit=[
                    {
                        "type": {"coding": [{"system": c.BENEFIT_TYPE, "code": "copay-percent"}]},
                        "allowedUnsignedInt": insured["copay_ratio"],
                    }
                ],
            )
        ]
        elderly = result["elderly"]
        if elderly is not None:
            extension = _period_extension(elderly["valid_from"], elderly["valid_to"])
            if elderly["certificate_date"] is not None:
                extension.append({"url": c.CERTIFICATE_DATE_EXTENSION, "valueDate": elderly["certificate_date"]})
            items.append(
                _item(
                    "elderly",
                    extension=extension,
                    benefit=[
                        {
                            "type": {"coding": [{"system": c.BENEFIT_TYPE, "code": "copay-percent"}]},
                            "allowedUnsignedInt": elderly["copay_ratio"],
                        }
                    ],
                )
            )
        limit = result["limit_certificate"]
        if limit is not None:
            items.append(
                _item(
                    "limit-certificate",
                    extension=_period_extension(limit["valid_from"], limit["valid_to"]),
                    productOrService={"coding": [_coding(c.LIMIT_CLASSIFICATION_SYSTEM, limit["classification"])]},
                    modifier=[{"coding": [_coding(c.LIMIT_KIND_SYSTEM, limit["kind"])]}],
                )
            )
        for disease in result["specific_diseases"]:
            benefit = None
            if disease["self_pay"] is not None:
                benefit = [
                    {
                        "type": {"coding": [{"system": c.BENEFIT_TYPE, "code": "copay-maximum"}]},
                        "allowedMoney": {"value": disease["self_pay"], "currency": "JPY"},
                    }
                ]
            items.append(
                _item(
                    "specific-disease",
                    extension=_period_extension(disease["valid_from"], disease["valid_to"]),
                    productOrService={"coding": [_coding(c.DISEASE_CATEGORY_SYSTEM, disease["category"])]},
                    benefit=benefit,
                )
            )
        response["insurance"] = [
            {
                "coverage": {"reference": "#coverage"},
                "inforce": validity == 1,
                "benefitPeriod": _period(insured["valid_from"], insured["valid_to"]),
                "item": items,
            }
        ]
        for n, expense in enumerate(result.get("public_expenses") or (), start=1):
            payer, coverage, insurance = public_expense_coverage(expense, n)
            contained += [payer, coverage]
            response["insurance"].append(insurance)
    return clean(response)


def public_expense_coverage(
    expense: Mapping[str, Any], n: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A 公費負担医療受給者証 of the answer (``public_expenses[n-1]``, shown under the 限度額 consent):
    its payer Organization (JP_Organization, 公費負担者番号), its own Coverage (JP_Coverage of 保険種別
    ``8`` 公費: 受給者番号 as ``subscriberId`` and identifier, 上限額 as ``costToBeneficiary``) and the
    ``insurance`` entry that points at it (in force: the answer lists certificates in force only)."""
    payer_id, coverage_id = f"public-payer-{n}", f"public-expense-{n}"
    period = _period(expense["valid_from"], expense["valid_to"])
    cap = {"value": expense["monthly_cap"], "currency": "JPY"}
    payer = {
        "resourceType": "Organization",
        "id": payer_id,
        "meta": {"profile": [c.JP_PROFILE + "JP_Organization"]},
        "identifier": [{"system": c.PUBLIC_PAYER_NUMBER_SYSTEM, "value": expense["payer_number"]}],
    }
    coverage = {
        "resourceType": "Coverage",
        "id": coverage_id,
        "meta": {"profile": [c.JP_PROFILE + "JP_Coverage"]},
        "identifier": [{"system": c.PUBLIC_RECIPIENT_NUMBER_SYSTEM, "value": expense["recipient_number"]}],
        "status": "active",
        "type": {"coding": [{"system": c.INSURANCE_CATEGORY_SYSTEM, "code": "8", "display": "公費"}]},
        "subscriberId": expense["recipient_number"],
        "beneficiary": {"reference": "#patient"},
        "period": period,
        "payor": [{"reference": f"#{payer_id}"}],
        "costToBeneficiary": [
            {
                "type": {
                    "coding": [{"system": c.COPAY_TYPE, "code": "maxoutofpocket", "display": "自己負担上限額（月額）"}]
                },
                "valueMoney": cap,
            }
        ],
    }
    insurance = {
        "coverage": {"reference": f"#{coverage_id}"},
        "inforce": True,
        "benefitPeriod": period,
        "item": [
            _item(
                "public-expense",
                benefit=[
                    {
                        "type": {"coding": [{"system": c.BENEFIT_TYPE, "code": "copay-maximum"}]},
                        "allowedMoney": cap,
                    }
                ],
            )
        ],
    }
    return payer, coverage, insurance


# ---------------------------------------------------------------- bundles


def fresh_id() -> str:
    """A new resource / entry id: a UUID, drawn again in the rare case (about 1 in 3,000) that its
    digits read as a My Number across the hyphens ("…0851-4566-4271…"), which no answer may hold."""
    while my_number_in(value := str(uuid.uuid4())):
        pass
    return value


def bundle(
    kind: str, entries: list[dict[str, Any]], *, total: int | None = None, link: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": fresh_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": kind,
        "total": total,
        "link": [{"relation": "self", "url": link}] if link else None,
        "entry": entries or None,
    }
    return clean(body)


def search_entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{fresh_id()}", "resource": resource, "search": {"mode": "match"}}


# ---------------------------------------------------------------- drugs and checkups


def _facility(code: str) -> dict[str, Any]:
    return {"identifier": {"system": c.FACILITY_CODE_SYSTEM, "value": code}}


def medication_dispense(item: Mapping[str, Any]) -> dict[str, Any]:
    body = {
        "resourceType": "MedicationDispense",
        "meta": {"profile": [c.JP_PROFILE + "JP_MedicationDispense"]},
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": c.DRUG_CODE_SYSTEM, "code": item["drug_code"], "display": item["drug_name"]}],
            "text": item["drug_name"],
        },
        "performer": [{"actor": _facility(item["facility_code"])}],
        "quantity": {"value": item["quantity"], "unit": item["unit"]},
        "daysSupply": {"value": item["days"], "unit": "日", "system": c.UCUM, "code": "d"},
        "whenHandedOver": item["dispensed_on"],
    }
    return body


def _observation(checked_on: str, key: str, code: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    category = "vital-signs" if key in c.VITAL_ITEMS else "laboratory"
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": c.OBSERVATION_CATEGORY, "code": category}]},
        ],
        "code": code,
        "effectiveDateTime": checked_on,
        **value,
    }


def checkup_observations(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One Observation per result of a checkup (in the order of the 特定健診 items)."""
    out = []
    results: Mapping[str, float] = item["results"]
    for key, (jlac10, display, ucum, unit) in c.CHECKUP_ITEMS.items():
        if key not in results:
            continue
        code = {
            "coding": [
                {"system": c.JLAC10_SYSTEM, "code": jlac10, "display": display},
                {"system": c.CHECKUP_ITEM_SYSTEM, "code": key},
            ],
            "text": display,
        }
        value = {"valueQuantity": {"value": results[key], "unit": unit, "system": c.UCUM, "code": ucum}}
        out.append(_observation(item["checked_on"], key, code, value))
    for key in sorted(set(results) - set(c.CHECKUP_ITEMS)):  # an item this table does not know: no JLAC10 code
        code = {"coding": [{"system": c.CHECKUP_ITEM_SYSTEM, "code": key}], "text": key}
        out.append(_observation(item["checked_on"], key, code, {"valueQuantity": {"value": results[key]}}))
    if item.get("urine_protein") is not None:
        jlac10, display = c.URINE_PROTEIN
        code = {
            "coding": [
                {"system": c.JLAC10_SYSTEM, "code": jlac10, "display": display},
                {"system": c.CHECKUP_ITEM_SYSTEM, "code": "urine_protein"},
            ],
            "text": display,
        }
        out.append(_observation(item["checked_on"], "urine_protein", code, {"valueString": item["urine_protein"]}))
    return out


# ---------------------------------------------------------------- 診療・手術 (Procedure)

SURGICAL_PROCEDURE = ("387713003", "Surgical procedure")  # SNOMED CT, R4's procedure-category example set


def procedure(item: Mapping[str, Any]) -> dict[str, Any]:
    """One 診療行為 of a claim (``ProcedureItem``) as a JP_Procedure."""
    kind, code, name = item["kind"], item["procedure_code"], item["procedure_name"]
    category = [{"system": c.PROCEDURE_KIND_SYSTEM, "code": kind, "display": kind}]
    if kind == "手術":
        category.append({"system": c.SNOMED, "code": SURGICAL_PROCEDURE[0], "display": SURGICAL_PROCEDURE[1]})
    coding = [{"system": c.PROCEDURE_CLAIM_CODE_SYSTEM, "code": code}]
    if code.startswith("1"):  # 医科: the 医科診療行為マスター's codes (歯科・調剤 codes are other masters)
        coding.insert(0, {"system": c.PROCEDURE_CODE_SYSTEM, "code": code, "display": name})
    body = {
        "resourceType": "Procedure",
        "meta": {"profile": [c.JP_PROFILE + "JP_Procedure"]},
        "extension": [{"url": c.INPATIENT_EXTENSION, "valueBoolean": item["inpatient"]}],
        "status": "completed",
        "category": {"coding": category, "text": kind},
        "code": {"coding": coding, "text": name},
        "subject": {"type": "Patient", "display": "the patient of the visit"},
        "performedDateTime": item["performed_on"],
        "performer": [{"actor": {"type": "Organization", **_facility(item["facility_code"])}}],
    }
    return body


# FHIR date search on a date (docs/fhir.md, "診療・手術"): a prefix and a year, month or day
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


@dataclass(frozen=True, slots=True)
class DateCriterion:
    prefix: str
    start: dt.date  # the first day the value names
    end: dt.date  # its last day

    def matches(self, day: dt.date) -> bool:
        inside = self.start <= day <= self.end
        return {
            "eq": inside,
            "ne": not inside,
            "gt": day > self.end,
            "lt": day < self.start,
            "ge": day >= self.start,
            "le": day <= self.end,
        }[self.prefix]


def date_criterion(value: str) -> DateCriterion:
    """``date=[prefix]YYYY[-MM[-DD]]``; anything else is a ``validation_error``."""
    found = _DATE_SEARCH.fullmatch(value)
    try:
        if found is None:
            raise ValueError(value)
        prefix, year, month, day = found.group(1) or "eq", int(found.group(2)), found.group(3), found.group(4)
        if month is None:
            return DateCriterion(prefix, dt.date(year, 1, 1), dt.date(year, 12, 31))
        if day is None:
            last = calendar.monthrange(year, int(month))[1]  # an impossible month: ValueError
            return DateCriterion(prefix, dt.date(year, int(month), 1), dt.date(year, int(month), last))
        on = dt.date(year, int(month), int(day))
        return DateCriterion(prefix, on, on)
    except ValueError:
        raise ValidationFailedError(
            "the search parameter date takes [eq|ne|gt|lt|ge|le]YYYY, YYYY-MM or YYYY-MM-DD"
        ) from None


_DATE_SEARCH = re.compile(r"(eq|ne|gt|lt|ge|le)?([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?", re.ASCII)


# ---------------------------------------------------------------- consent and the access log

CONSENT_CATEGORIES = ("drug", "checkup", "clinical", "limit_certificate")


def consent_resource(row: Mapping[str, Any], *, active: bool) -> dict[str, Any]:
    """A consent as FHIR Consent: a permit or deny provision per category (薬剤, 健診, 診療, 限度額)."""
    end = row["revoked_at"] or row["expires_at"]
    body = {
        "resourceType": "Consent",
        "id": str(row["id"]),
        "status": "active" if active else "inactive",
        "scope": {"coding": [{"system": c.CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": c.CONSENT_CATEGORY, "code": "59284-0", "display": "Patient Consent"}]}],
        "dateTime": row["given_at"].isoformat(),
        "organization": [_facility(row["facility_code"])],
        "policy": [{"uri": "urn:shikaku:policy:online-eligibility-sharing"}],
        "provision": {
            "type": "permit",
            "period": {"start": row["given_at"].isoformat(), "end": end.isoformat() if end else None},
            "extension": [
                {
                    "url": "urn:shikaku:fhir:extension:consent-setting",
                    "valueCoding": _coding(c.SETTING_SYSTEM, row["setting"]),
                },
                {"url": "urn:shikaku:fhir:extension:visit", "valueString": row["visit_id"]},
            ],
            "provision": [
                {
                    "type": "permit" if row[name] else "deny",
                    "code": [{"coding": [{"system": c.CONSENT_CATEGORY_SYSTEM, "code": name}]}],
                }
                for name in CONSENT_CATEGORIES
            ],
        },
    }
    return clean(body)


def _instant(value: str | dt.datetime) -> str:
    """A FHIR instant: with its zone (a naive time from SQLite is UTC, as the server writes it)."""
    at = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).isoformat()


def audit_event(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One access-log entry as an AuditEvent (IHE Basic Audit Log Patterns: a RESTful read)."""
    who = _facility(entry["facility_code"]) if entry["facility_code"] else {"display": "the patient (card)"}
    if entry["facility_code"] and entry.get("facility_name"):
        who["display"] = entry["facility_name"]
    entity: list[dict[str, Any]] = [
        {
            "what": {"display": entry["what"]},
            "type": _coding(c.ACCESS_WHAT_SYSTEM, entry["what"]),
            "detail": [{"type": "query_kind", "valueString": entry["query_kind"]}] if entry["query_kind"] else None,
        }
    ]
    if entry["consent_id"] is not None:
        entity.append(
            {
                "what": {"reference": f"Consent/{entry['consent_id']}"},
                "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "4", "Domain Resource"),
            }
        )
    if entry.get("emergency"):
        entity[0]["detail"] = [*(entity[0].get("detail") or []), {"type": "emergency", "valueString": "true"}]
    body = {
        "resourceType": "AuditEvent",
        "meta": {"profile": ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"]},
        "type": _coding(c.AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [_coding(c.RESTFUL_INTERACTION, "read", "read")],
        "action": "R",
        "recorded": _instant(entry["at"]),
        "outcome": "0",
        "agent": [
            {
                "type": {"coding": [_coding(c.ROLE_SYSTEM, entry["role"])]},
                "who": who,
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": "shikaku central server"}},
        "entity": entity,
    }
    return clean(body)


# ---------------------------------------------------------------- what is supported


def capability_statement(base: str) -> dict[str, Any]:
    def visit_param(doc: str) -> dict[str, Any]:
        return {"name": "visit", "type": "token", "documentation": doc}

    resources = [
        {
            "type": "CoverageEligibilityRequest",
            "profile": "http://hl7.org/fhir/StructureDefinition/CoverageEligibilityRequest",
            "documentation": "POST a request (purpose validation): answered at once with a CoverageEligibilityResponse",
            "interaction": [{"code": "create", "documentation": "answered, not stored"}],
        },
        {
            "type": "CoverageEligibilityResponse",
            "documentation": "only as the answer to a CoverageEligibilityRequest; not stored, not readable",
        },
        {
            "type": "MedicationDispense",
            "profile": c.JP_PROFILE + "JP_MedicationDispense",
            "documentation": "drug history (5 years) under the visit's live drug consent (doctors, pharmacists)",
            "interaction": [{"code": "search-type"}],
            "searchParam": [visit_param("the visit_id of today's card check (required; the only parameter)")],
        },
        {
            "type": "Observation",
            "documentation": "特定健診 results (5 years) under the visit's live checkup consent; physician, dentist",
            "interaction": [{"code": "search-type"}],
            "searchParam": [visit_param("the visit_id of today's card check (required; the only parameter)")],
        },
        {
            "type": "Procedure",
            "profile": c.JP_PROFILE + "JP_Procedure",
            "documentation": "診療・手術 information from claims (5 years) under the visit's live clinical consent; "
            "physician, dentist",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                visit_param("the visit_id of today's card check (required)"),
                {
                    "name": "date",
                    "type": "date",
                    "documentation": "performed: [eq|ne|gt|lt|ge|le]YYYY, YYYY-MM or YYYY-MM-DD, at most twice",
                },
            ],
        },
        {
            "type": "Consent",
            "documentation": "a consent recorded at this facility (POST /v1/consents), by its consent_id",
            "interaction": [{"code": "read"}],
        },
        {
            "type": "AuditEvent",
            "documentation": (
                "the patient's access log: POST AuditEvent/_search with the form parameters challenge_id, "
                "certificate, signature (the card's proof, as /v1/me/access-log)"
            ),
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                {"name": "challenge_id", "type": "string", "documentation": "a live challenge"},
                {"name": "certificate", "type": "string", "documentation": "the card's certificate, base64 DER"},
                {"name": "signature", "type": "string", "documentation": "the card's signature over the nonce, base64"},
            ],
        },
    ]
    body = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dt.date.today().isoformat(),
        "publisher": "shikaku",
        "kind": "instance",
        "software": {"name": "shikaku central server"},
        "implementation": {"description": "オンライン資格確認 FHIR R4 facade (JP Core)", "url": base},
        "fhirVersion": c.FHIR_VERSION,
        "format": [c.FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": "every interaction needs a facility token (Authorization: Bearer) except AuditEvent",
                "security": {
                    "description": "Authorization: Bearer <facility-user token>; AuditEvent: the card's signature",
                },
                "resource": resources,
                "interaction": [
                    {"code": "batch", "documentation": "a batch of CoverageEligibilityRequest POSTs (一括照会)"}
                ],
            }
        ],
    }
    return clean(body)
