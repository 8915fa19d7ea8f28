"""Shared by the FHIR facade's tests: request builders, R4B parsing, and the reading of a
CoverageEligibilityResponse back into the contract's eligibility result (for JSON/FHIR equality)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

from shikaku_server.fhir import codes as c
from tests.conftest import auth
from tests.factories import INSURER_A

BASE = "/fhir/R4"
MODELS: dict[str, type[Resource]] = {
    "Bundle": Bundle,
    "CoverageEligibilityResponse": CoverageEligibilityResponse,
    "OperationOutcome": OperationOutcome,
}


def eligibility_request(
    *,
    insurer_number: str = INSURER_A,
    symbol: str | None = "123",
    number: str | None = "4567",
    branch: str | None = "00",
    birth_date: str | None = "1980-04-01",
    as_of: str | None = None,
    include_limit_certificate: bool = False,
    insurer_in: str = "payor",
) -> dict[str, Any]:
    """A CoverageEligibilityRequest of the facade's profile (JP_Coverage extensions)."""
    extensions = []
    for url, value in ((c.SYMBOL_EXTENSION, symbol), (c.NUMBER_EXTENSION, number), (c.SUBNUMBER_EXTENSION, branch)):
        if value:
            extensions.append({"url": url, "valueString": value})
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "pat"}
    if birth_date is not None:
        patient["birthDate"] = birth_date
    org = {
        "resourceType": "Organization",
        "id": "org",
        "identifier": [{"system": c.INSURER_NUMBER_SYSTEM, "value": insurer_number}],
    }
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": "cov",
        "extension": extensions,
        "status": "active",
        "beneficiary": {"reference": "#pat"},
        "payor": [{"reference": "#org"}] if insurer_in == "payor" else [{"display": "insurer"}],
    }
    body: dict[str, Any] = {
        "resourceType": "CoverageEligibilityRequest",
        "identifier": [{"system": "urn:example:clinic-request", "value": "req-1"}],
        "contained": [patient, org, coverage],
        "status": "active",
        "purpose": ["validation"],
        "patient": {"reference": "#pat"},
        "created": "2025-01-01T09:00:00+09:00",
        "insurer": {"reference": "#org"}
        if insurer_in in ("payor", "insurer")
        else {"identifier": {"system": c.INSURER_NUMBER_SYSTEM, "value": insurer_number}},
        "insurance": [{"coverage": {"reference": "#cov"}}],
    }
    if insurer_in == "identifier":
        body["contained"] = [patient, coverage]
    if as_of is not None:
        body["servicedDate"] = as_of
    if include_limit_certificate:
        body["item"] = [{"category": {"coding": [{"system": c.BENEFIT_CATEGORY_SYSTEM, "code": "limit-certificate"}]}}]
    return body


def parse(response: Any) -> Any:
    """The response body as its R4B model (every answer of the facade is FHIR JSON)."""
    assert response.headers["content-type"].startswith("application/fhir+json"), response.text
    data = response.json()
    model = MODELS[data["resourceType"]]
    return model.model_validate(data)


def outcome_code(response: Any) -> str:
    assert isinstance(parse(response), OperationOutcome)
    coding = response.json()["issue"][0]["details"]["coding"][0]
    assert coding["system"] == c.ERROR_SYSTEM
    return str(coding["code"])


def post_eligibility(client: TestClient, token: str | None, body: Any) -> Any:
    headers = {"Content-Type": c.FHIR_JSON, **(auth(token) if token else {})}
    return client.post(f"{BASE}/CoverageEligibilityRequest", json=body, headers=headers)


def _ext(element: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in element.get("extension", []) if e["url"] == url), None)


def _period(element: dict[str, Any]) -> tuple[Any, Any]:
    ext = _ext(element, c.CERTIFICATE_PERIOD_EXTENSION)
    assert ext is not None
    period = ext["valuePeriod"]
    return period.get("start"), period.get("end")


def result_of(response: dict[str, Any]) -> dict[str, Any]:
    """A CoverageEligibilityResponse read back into the contract's result (the fields it carries)."""
    contained = {r["id"]: r for r in response.get("contained", [])}
    validity = int(_ext(response, c.VALIDITY_EXTENSION)["valueCoding"]["code"])  # type: ignore[index]
    out: dict[str, Any] = {
        "validity": validity,
        "as_of": response["servicedDate"],
        "insured": None,
        "elderly": None,
        "limit_certificate": None,
        "specific_diseases": [],
        "public_expenses": [],
    }
    if "coverage" not in contained:
        assert "insurance" not in response
        return out
    patient, coverage, org = contained["patient"], contained["coverage"], contained["insurer"]
    insurance = response["insurance"][0]
    out["public_expenses"] = [public_expense_of(contained, entry) for entry in response["insurance"][1:]]
    assert insurance["inforce"] is (validity == 1)
    names = {n["extension"][0]["valueCode"]: n["text"] for n in patient["name"]}
    gender = {"male": "1", "female": "2", "unknown": "3"}[patient["gender"]]
    address = (patient.get("address") or [{}])[0]
    relationship = next(x for x in coverage["relationship"]["coding"] if x["system"] == c.PERSONAL_FAMILY_SYSTEM)
    loss = _ext(coverage, c.REASON_OF_LOSS_EXTENSION)
    items = {}
    diseases = []
    for item in insurance["item"]:
        category = item["category"]["coding"][0]["code"]
        if category == "specific-disease":
            start, end = _period(item)
            benefit = item.get("benefit")
            diseases.append(
                {
                    "category": item["productOrService"]["coding"][0]["code"],
                    "valid_from": start,
                    "valid_to": end,
                    "self_pay": int(benefit[0]["allowedMoney"]["value"]) if benefit else None,
                }
            )
        else:
            items[category] = item
    out["insured"] = {
        "insurer_number": org["identifier"][0]["value"],
        "insurer_name": org.get("name"),
        "symbol": (_ext(coverage, c.SYMBOL_EXTENSION) or {"valueString": ""})["valueString"],
        "number": _ext(coverage, c.NUMBER_EXTENSION)["valueString"],  # type: ignore[index]
        "branch": _ext(coverage, c.SUBNUMBER_EXTENSION)["valueString"],  # type: ignore[index]
        "card_classification": _ext(coverage, c.CARD_CLASSIFICATION_EXTENSION)["valueCoding"]["code"],  # type: ignore[index]
        "personal_family": relationship["code"],
        "name": names["IDE"],
        "name_kana": names["SYL"],
        "sex": gender,
        "birth_date": patient["birthDate"],
        "address": address.get("text"),
        "post_number": address.get("postalCode"),
        "valid_from": coverage["period"].get("start"),
        "valid_to": coverage["period"].get("end"),
        "reason_of_loss": loss["valueCoding"]["code"] if loss else None,
        "copay_ratio": items["copay"]["benefit"][0]["allowedUnsignedInt"],
    }
    if "elderly" in items:
        start, end = _period(items["elderly"])
        date = _ext(items["elderly"], c.CERTIFICATE_DATE_EXTENSION)
        out["elderly"] = {
            "certificate_date": date["valueDate"] if date else None,
            "valid_from": start,
            "valid_to": end,
            "copay_ratio": items["elderly"]["benefit"][0]["allowedUnsignedInt"],
        }
    if "limit-certificate" in items:
        start, end = _period(items["limit-certificate"])
        out["limit_certificate"] = {
            "kind": items["limit-certificate"]["modifier"][0]["coding"][0]["code"],
            "classification": items["limit-certificate"]["productOrService"]["coding"][0]["code"],
            "valid_from": start,
            "valid_to": end,
        }
    out["specific_diseases"] = diseases
    return out


def public_expense_of(contained: dict[str, Any], insurance: dict[str, Any]) -> dict[str, Any]:
    """One ``insurance`` entry after the health insurance: a 公費 Coverage read back (JSON shape)."""
    coverage = contained[insurance["coverage"]["reference"].removeprefix("#")]
    payer = contained[coverage["payor"][0]["reference"].removeprefix("#")]
    assert coverage["type"]["coding"][0] == {"system": c.INSURANCE_CATEGORY_SYSTEM, "code": "8", "display": "公費"}
    assert insurance["inforce"] is True and coverage["status"] == "active"
    assert coverage["beneficiary"] == {"reference": "#patient"}
    assert coverage["identifier"] == [{"system": c.PUBLIC_RECIPIENT_NUMBER_SYSTEM, "value": coverage["subscriberId"]}]
    cap = coverage["costToBeneficiary"][0]["valueMoney"]
    assert cap["currency"] == "JPY" and insurance["item"][0]["benefit"][0]["allowedMoney"] == cap
    (payer_number,) = [i["value"] for i in payer["identifier"] if i["system"] == c.PUBLIC_PAYER_NUMBER_SYSTEM]
    return {
        "payer_number": payer_number,
        "recipient_number": coverage["subscriberId"],
        "monthly_cap": cap["value"],
        "valid_from": coverage["period"].get("start"),
        "valid_to": coverage["period"].get("end"),
    }


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON API's result without what a by-number answer never carries in FHIR."""
    keep = ("validity", "as_of", "insured", "elderly", "limit_certificate", "specific_diseases", "public_expenses")
    assert result["processing"]["status"] == "ok" and result["query_kind"] == "number"
    assert result["visit_id"] is None and result["certificate_notice"] is None
    return {k: result[k] for k in keep}
