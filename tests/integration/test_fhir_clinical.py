"""The FHIR facade under a visit's consent: MedicationDispense, Observation and Procedure
searchsets, Consent read, and the patient's access log as AuditEvents; the same data, rules and
access-log entries as the JSON routes (on both backends)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent as FhirConsent
from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.consent.models import Consent
from shikaku_server.fhir import codes as c
from testbed.pki import IssuedCertificate
from tests.conftest import auth
from tests.integration.fhir_helpers import BASE, outcome_code, parse
from tests.integration.test_card_api import b64, challenge, sign
from tests.integration.test_clinical_procedures import APPENDECTOMY, TODAY, with_procedures
from tests.integration.test_consent_api import card, consent, visit

# the fixtures of test_consent_api (a registered card, drugs and a checkup loaded) and of
# test_clinical_procedures (that person's 診療・手術: 2 months, 4 and 6 years ago)
__all__ = ["card", "with_procedures"]


def search(client: TestClient, token: str | None, kind: str, **params: str) -> Any:
    return client.get(f"{BASE}/{kind}", params=params, headers=auth(token) if token else {})


def resources(response: Any, model: type[Any]) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    bundle = parse(response)
    assert isinstance(bundle, Bundle) and bundle.type == "searchset"
    out = [e["resource"] for e in response.json().get("entry", [])]
    for resource in out:
        model.model_validate(resource)
    assert response.json()["total"] == len(out)
    return out


def log_entries(session_factory: Any) -> list[tuple[str, str, str | None]]:
    with session_factory() as s:
        rows = s.execute(sa.select(AccessLogEntry).order_by(AccessLogEntry.id)).scalars()
        return [(e.what, e.role, e.query_kind) for e in rows]


# ---------------------------------------------------------------- drugs


def test_medication_dispenses_are_the_json_drug_history(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v, drug=True).status_code == 200
    before = log_entries(session_factory)
    dispenses = resources(search(client, tokens["physician"], "MedicationDispense", visit=v), MedicationDispense)
    assert log_entries(session_factory)[len(before) :] == [("medications", "physician", "card")]  # one read, one entry
    items = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"])).json()["items"]
    assert len(dispenses) == len(items) == 2  # the 6-year-old one is outside the 5 years, both doors
    for d, item in zip(dispenses, items, strict=True):
        coding = d["medicationCodeableConcept"]["coding"][0]
        assert (coding["system"], coding["code"], coding["display"]) == (
            c.DRUG_CODE_SYSTEM,
            item["drug_code"],
            item["drug_name"],
        )
        assert d["whenHandedOver"] == item["dispensed_on"]
        assert d["quantity"] == {"value": item["quantity"], "unit": item["unit"]}
        assert d["daysSupply"]["value"] == item["days"]
        assert d["performer"][0]["actor"]["identifier"] == {
            "system": c.FACILITY_CODE_SYSTEM,
            "value": item["facility_code"],
        }


def test_pharmacist_reads_drugs_not_checkups(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["pharmacist"], card)
    assert consent(client, tokens["pharmacist"], v, drug=True, checkup=True).status_code == 200
    assert len(resources(search(client, tokens["pharmacist"], "MedicationDispense", visit=v), MedicationDispense)) == 2
    r = search(client, tokens["pharmacist"], "Observation", visit=v)
    assert r.status_code == 403 and outcome_code(r) == "forbidden_role"


def test_no_consent_no_drugs_nor_checkups(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    v = visit(client, tokens["physician"], card)
    for kind in ("MedicationDispense", "Observation"):
        r = search(client, tokens["physician"], kind, visit=v)
        assert r.status_code == 403 and outcome_code(r) == "consent_required"


def test_withdrawn_consent_is_consent_expired(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v, drug=True).status_code == 200
    with session_factory.begin() as s:
        s.execute(sa.update(Consent).values(revoked_at=sa.func.now()))
    r = search(client, tokens["physician"], "MedicationDispense", visit=v)
    assert r.status_code == 403 and outcome_code(r) == "consent_expired"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"visit": "no-such-visit"}, 404, "not_found"),
        ({}, 422, "validation_error"),
        ({"visit": "x", "patient": "1"}, 422, "validation_error"),
    ],
)
def test_search_errors(
    client: TestClient, tokens: dict[str, str], params: dict[str, str], status: int, code: str
) -> None:
    for kind in ("MedicationDispense", "Observation"):
        r = search(client, tokens["physician"], kind, **params)
        assert r.status_code == status and outcome_code(r) == code
    r = search(client, None, "MedicationDispense", visit="x")
    assert r.status_code == 401 and outcome_code(r) == "unauthorized"


# ---------------------------------------------------------------- checkups


def test_observations_are_the_json_checkups_with_jlac10(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v, checkup=True).status_code == 200
    before = log_entries(session_factory)
    observations = resources(search(client, tokens["physician"], "Observation", visit=v), Observation)
    assert log_entries(session_factory)[len(before) :] == [("checkups", "physician", "card")]
    items = client.get(f"/v1/visits/{v}/checkups", headers=auth(tokens["physician"])).json()["items"]
    by_item = {
        next(x["code"] for x in o["code"]["coding"] if x["system"] == c.CHECKUP_ITEM_SYSTEM): o for o in observations
    }
    assert set(by_item) == {*items[0]["results"], "urine_protein"}
    for key, value in items[0]["results"].items():
        o = by_item[key]
        assert o["effectiveDateTime"] == items[0]["checked_on"] and o["status"] == "final"
        assert o["valueQuantity"]["value"] == value and o["valueQuantity"]["system"] == c.UCUM
        jlac10 = next(x for x in o["code"]["coding"] if x["system"] == c.JLAC10_SYSTEM)
        assert jlac10["code"] == c.CHECKUP_ITEMS[key][0] and len(jlac10["code"]) == 17
    assert by_item["hba1c"]["code"]["coding"][0]["code"] == "3D046000001999902"
    assert by_item["systolic"]["valueQuantity"]["code"] == "mm[Hg]"
    assert by_item["urine_protein"]["valueString"] == items[0]["urine_protein"]


# ---------------------------------------------------------------- 診療・手術


def test_procedures_are_the_json_procedures_under_the_clinical_consent(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], with_procedures)
    r = search(client, tokens["physician"], "Procedure", visit=v)
    assert r.status_code == 403 and outcome_code(r) == "consent_required"
    assert consent(client, tokens["physician"], v, drug=True, checkup=True).status_code == 200
    r = search(client, tokens["physician"], "Procedure", visit=v)  # drugs and checkups do not open it
    assert r.status_code == 403 and outcome_code(r) == "consent_required"
    given = consent(client, tokens["physician"], v, clinical=True).json()
    for role in ("physician", "dentist"):
        before = log_entries(session_factory)
        found = resources(search(client, tokens[role], "Procedure", visit=v), Procedure)
        assert log_entries(session_factory)[len(before) :] == [("procedures", role, "card")]
        items = client.get(f"/v1/visits/{v}/procedures", headers=auth(tokens[role])).json()["items"]
        assert len(found) == len(items) == 2  # the 6-year-old one is outside the 5 years, both doors
        for p, item in zip(found, items, strict=True):
            assert p["status"] == "completed" and p["performedDateTime"] == item["performed_on"]
            codes = {x["system"]: x for x in p["code"]["coding"]}
            assert codes[c.PROCEDURE_CLAIM_CODE_SYSTEM]["code"] == item["procedure_code"]
            assert codes[c.PROCEDURE_CODE_SYSTEM]["code"] == item["procedure_code"]  # 医科: the JP Core master
            assert p["code"]["text"] == item["procedure_name"]
            assert p["category"]["coding"][0] == {"system": c.PROCEDURE_KIND_SYSTEM, "code": item["kind"],
                                                  "display": item["kind"]}
            assert p["extension"] == [{"url": c.INPATIENT_EXTENSION, "valueBoolean": item["inpatient"]}]
            assert p["performer"][0]["actor"]["identifier"] == {
                "system": c.FACILITY_CODE_SYSTEM,
                "value": item["facility_code"],
            }
    surgery = found[0]
    assert surgery["code"]["text"] == APPENDECTOMY
    assert {x["code"] for x in surgery["category"]["coding"]} == {"手術", "387713003"}
    with session_factory() as s:
        entry = s.execute(sa.select(AccessLogEntry).order_by(AccessLogEntry.id.desc())).scalars().first()
    assert entry is not None and entry.consent_id == given["consent_id"]


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ([f"ge{TODAY.year - 1}"], 1),  # since last January: the surgery 2 months ago (and not the 4-year-old)
        ([f"lt{(TODAY - dt.timedelta(days=365)).isoformat()}"], 1),
        ([f"ge{TODAY.year - 6}", f"le{TODAY.isoformat()}"], 2),  # a range; the 5 years still apply
        ([(TODAY - dt.timedelta(days=60)).isoformat()], 1),  # eq by default, a day
        ([f"ne{(TODAY - dt.timedelta(days=60)).isoformat()[:7]}"], 1),  # not that month
        ([f"gt{TODAY.isoformat()}"], 0),  # nothing left: still a read, logged
    ],
)
def test_procedures_searched_by_date(
    client: TestClient,
    tokens: dict[str, str],
    with_procedures: IssuedCertificate,
    session_factory: Any,
    dates: list[str],
    expected: int,
) -> None:
    v = visit(client, tokens["physician"], with_procedures)
    assert consent(client, tokens["physician"], v, clinical=True).status_code == 200
    before = log_entries(session_factory)
    r = client.get(f"{BASE}/Procedure", params={"visit": v, "date": dates}, headers=auth(tokens["physician"]))
    assert len(resources(r, Procedure)) == expected
    assert log_entries(session_factory)[len(before) :] == [("procedures", "physician", "card")]


def test_procedure_search_errors_and_roles(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], with_procedures)
    assert consent(client, tokens["physician"], v, clinical=True).status_code == 200
    before = log_entries(session_factory)
    for dates in (["2025-13"], ["2025-02-30"], ["2025-1-1"], ["sa2025"], ["2025-01-01T00:00:00Z"], ["ge2024,le2025"],
                  ["ge2020", "le2025", "ne2023"], ["２０２５"]):
        r = client.get(f"{BASE}/Procedure", params={"visit": v, "date": dates}, headers=auth(tokens["physician"]))
        assert r.status_code == 422 and outcome_code(r) == "validation_error", (dates, r.text)
    r = search(client, tokens["physician"], "Procedure", visit=v, patient="1")
    assert r.status_code == 422 and outcome_code(r) == "validation_error"
    assert log_entries(session_factory) == before  # refused before anything was read: nothing logged
    for role in ("pharmacist", "reception"):
        r = search(client, tokens[role], "Procedure", visit=v)
        assert r.status_code == 403 and outcome_code(r) == "forbidden_role"
    r = search(client, None, "Procedure", visit=v)
    assert r.status_code == 401 and outcome_code(r) == "unauthorized"
    r = search(client, tokens["physician"], "Procedure", visit="no-such-visit")
    assert r.status_code == 404 and outcome_code(r) == "not_found"
    r = client.post(f"{BASE}/Procedure", headers=auth(tokens["physician"]))
    assert r.status_code == 405 and outcome_code(r) == "method_not_allowed"


# ---------------------------------------------------------------- consent


def test_consent_read_by_the_facility_that_took_it(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    given = consent(client, tokens["physician"], v, drug=True, limit_certificate=True).json()
    r = client.get(f"{BASE}/Consent/{given['consent_id']}", headers=auth(tokens["reception"]))
    assert r.status_code == 200, r.text
    resource = FhirConsent.model_validate(r.json())
    assert resource.status == "active" and r.json()["id"] == str(given["consent_id"])
    provisions = {p["code"][0]["coding"][0]["code"]: p["type"] for p in r.json()["provision"]["provision"]}
    assert provisions == {"drug": "permit", "checkup": "deny", "clinical": "deny", "limit_certificate": "permit"}
    assert r.json()["provision"]["period"]["end"]  # outpatient: 24 hours
    # a new answer at a new visit ends the earlier consent: the first one reads inactive
    v2 = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v2, drug=False).status_code == 200
    again = client.get(f"{BASE}/Consent/{given['consent_id']}", headers=auth(tokens["reception"])).json()
    assert again["status"] == "inactive"


def test_consent_of_another_facility_does_not_exist(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    given = consent(client, tokens["physician"], v, drug=True).json()
    for consent_id in (str(given["consent_id"]), "999999", "abc", "9" * 40, "²", "١"):
        token = tokens["pharmacist"] if consent_id == str(given["consent_id"]) else tokens["physician"]
        r = client.get(f"{BASE}/Consent/{consent_id}", headers=auth(token))
        assert r.status_code == 404 and outcome_code(r) == "not_found"


# ---------------------------------------------------------------- the patient's access log


def proof(client: TestClient, token: str | None, card: IssuedCertificate) -> dict[str, str]:
    """The card's proof for a challenge of the kiosk's facility (``token``), or without a token
    the patient's own challenge (``/v1/me/challenges``)."""
    ch = challenge(client, token) if token else client.post("/v1/me/challenges").json()
    return {
        "challenge_id": ch["challenge_id"],
        "certificate": b64(card.der),
        "signature": sign(card.private_key, ch["nonce"]),
    }


def test_patient_reads_the_access_log_as_audit_events(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    given = consent(client, tokens["physician"], v, drug=True).json()
    search(client, tokens["physician"], "MedicationDispense", visit=v)
    before = log_entries(session_factory)
    r = client.post(f"{BASE}/AuditEvent/_search", data=proof(client, None, card))
    events = resources(r, AuditEvent)
    assert log_entries(session_factory)[len(before) :] == [("access_log", "patient", "self")]
    seen = {(e["entity"][0]["what"]["display"], e["agent"][0]["type"]["coding"][0]["code"]) for e in events}
    assert {("medications", "physician"), ("eligibility", "physician")} <= seen
    drug_read = next(e for e in events if e["entity"][0]["what"]["display"] == "medications")
    assert drug_read["action"] == "R" and drug_read["type"]["code"] == "rest"
    assert dt.datetime.fromisoformat(drug_read["recorded"]).tzinfo is not None  # an instant has its zone
    assert drug_read["agent"][0]["who"]["identifier"]["system"] == c.FACILITY_CODE_SYSTEM
    assert drug_read["agent"][0]["who"]["display"] == "しかく内科クリニック"
    assert drug_read["entity"][1]["what"]["reference"] == f"Consent/{given['consent_id']}"
    # the JSON door answers the same entries (the patient's read above now among them)
    json_log = client.post(
        "/v1/me/access-log", headers=auth(tokens["reception"]), json=proof(client, tokens["reception"], card)
    )
    assert len(json_log.json()["entries"]) == len(events) + 1


def test_audit_event_errors(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    good = proof(client, None, card)
    r = client.post(f"{BASE}/AuditEvent/_search", data={**good, "signature": b64(b"x" * 256)})
    assert r.status_code == 401 and outcome_code(r) == "signature_invalid"
    r = client.post(f"{BASE}/AuditEvent/_search", data=good)  # consumed above, whatever the outcome
    assert r.status_code == 401 and outcome_code(r) == "challenge_reused"
    r = client.post(f"{BASE}/AuditEvent/_search", data={"challenge_id": "nope"})
    assert r.status_code == 422 and outcome_code(r) == "validation_error"
    r = client.post(f"{BASE}/AuditEvent/_search", json=good)
    assert r.status_code == 422 and outcome_code(r) == "validation_error"
    r = client.get(f"{BASE}/AuditEvent", headers=auth(tokens["reception"]))
    assert r.status_code == 404 and outcome_code(r) == "not_found"
