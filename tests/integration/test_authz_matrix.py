"""The authorization matrix (issue 10), generated from the app's own route table (its OpenAPI):
every route × {no token, malformed, revoked, insurer, each facility role, another facility}.

Each cell names what must happen, by the answer's stable code (problem+json ``code``, or for the
FHIR door the OperationOutcome's ``urn:shikaku:error`` coding):

* ``UNAUTH``  — refused as ``unauthorized``;
* ``ROLE``    — refused as ``forbidden_role``;
* ``HIDDEN``  — another facility's resource does not exist for it (``not_found``);
* ``SIG``     — the patient's proof made with another card's key is refused (``signature_invalid``);
* ``PASS``    — authorization let it through: whatever comes next (an answer, a validation or
  consent error), never ``unauthorized`` / ``forbidden_role`` / ``not_found``.

A route that the table does not name fails the test: a new route needs its row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.identifiers import luhn_check_digit
from shikaku_server.auth.service import add_facility, resolve_token, revoke_tokens
from shikaku_server.database import transaction
from shikaku_server.emergency.service import set_emergency
from testbed.pki import TestCA
from tests.conftest import FACILITY_CODE, auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.test_card_api import another_key, b64, by_card, register, sign
from tests.integration.test_eligibility_api import upload

UNAUTH, ROLE, HIDDEN, SIG, PASS = "unauthorized", "forbidden_role", "not_found", "signature_invalid", "pass"
AUTH_CODES = {UNAUTH, ROLE, HIDDEN, SIG}
# ``card_other``: no token, and for the card-proven routes a fresh patient challenge answered with
# the world's card certificate but signed by another card's key
COLUMNS = (
    "none",
    "malformed",
    "revoked",
    "insurer",
    "reception",
    "physician",
    "dentist",
    "pharmacist",
    "other",
    "card_other",
)
QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
OTHER_FACILITY = "01101" + "2345"  # 医科 in the same prefecture, another clinic


def _code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if body.get("resourceType") == "OperationOutcome":
        return str(body["issue"][0]["details"]["coding"][0]["code"])
    code = body.get("code")
    return str(code) if isinstance(code, str) else None


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]  # column -> the request headers of that principal
    visit_id: str  # a visit of facility A (FACILITY_CODE), with a live consent
    batch_id: str  # a batch of facility A
    consent_id: int  # that consent
    proof_of_another_card: Callable[[], dict[str, str]]
    column: str = ""  # the column being called

    def proof(self) -> dict[str, str]:
        """The card-proven routes' proof: a made-up one, or in the ``card_other`` column a real
        challenge and certificate with another card's signature."""
        if self.column == "card_other":
            return self.proof_of_another_card()
        return {"challenge_id": "unknown", "certificate": "AAAA", "signature": "AAAA"}


# any facility user; an insurer token is the wrong kind
NO_TOKEN = dict.fromkeys(("none", "malformed", "revoked", "card_other"), UNAUTH)
FACILITY_ANY = {**dict.fromkeys(COLUMNS, PASS), **NO_TOKEN, "insurer": ROLE}
PUBLIC = dict.fromkeys(COLUMNS, PASS)
# card-proven (the patient's own): no token needed; a token that is sent must be good; the proof
# must be made by the card's own key
CARD_PROVEN = {**PUBLIC, "malformed": UNAUTH, "revoked": UNAUTH, "insurer": ROLE, "card_other": SIG}
INSURER_ONLY = {**dict.fromkeys(COLUMNS, ROLE), **NO_TOKEN, "insurer": PASS}
# 救急時医療情報閲覧: physicians of an emergency hospital (facility A is marked one; "other" is not)
EMERGENCY = {**dict.fromkeys(COLUMNS, ROLE), **NO_TOKEN, "physician": PASS}
# a resource of facility A: the pharmacist's token is another facility's (さくら薬局), like "other"
OWN_RESOURCE = {**FACILITY_ANY, "pharmacist": HIDDEN, "other": HIDDEN}
DRUGS = {**OWN_RESOURCE, "reception": ROLE}  # physician, dentist, pharmacist
CHECKUPS = {**OWN_RESOURCE, "reception": ROLE, "pharmacist": ROLE}  # physician, dentist
# the role is checked before the visit: a pharmacist is refused checkups whoever's visit it is


@dataclass(frozen=True)
class Row:
    cells: dict[str, str]
    call: Callable[[TestClient, dict[str, str], World], Any]


def _post(path: str, body: Callable[[World], Any]) -> Callable[[TestClient, dict[str, str], World], Any]:
    return lambda c, h, w: c.post(path, json=body(w), headers=h)


def _get(path: Callable[[World], str]) -> Callable[[TestClient, dict[str, str], World], Any]:
    return lambda c, h, w: c.get(path(w), headers=h)


def _coverage_request(_: World) -> dict[str, Any]:
    from tests.integration.fhir_helpers import eligibility_request

    return eligibility_request()


ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(PUBLIC, _get(lambda w: "/healthz")),
    ("GET", "/readyz"): Row(PUBLIC, _get(lambda w: "/readyz")),
    ("GET", "/metrics"): Row(PUBLIC, _get(lambda w: "/metrics")),  # open unless SHIKAKU_METRICS_TOKEN
    ("POST", "/v1/eligibility/by-number"): Row(FACILITY_ANY, _post("/v1/eligibility/by-number", lambda w: QUERY)),
    ("POST", "/v1/assistance/by-number"): Row(
        FACILITY_ANY,
        _post("/v1/assistance/by-number", lambda w: {"payer_number": "12130019", "recipient_number": "1234566"}),
    ),
    ("POST", "/v1/assistance/by-month"): Row(
        FACILITY_ANY, _post("/v1/assistance/by-month", lambda w: {"month": "2026-10"})
    ),
    ("POST", "/v1/eligibility/batches"): Row(
        FACILITY_ANY, _post("/v1/eligibility/batches", lambda w: {"queries": [QUERY]})
    ),
    ("GET", "/v1/eligibility/batches/{batch_id}"): Row(
        OWN_RESOURCE, _get(lambda w: f"/v1/eligibility/batches/{w.batch_id}")
    ),
    ("POST", "/v1/uploads"): Row(
        INSURER_ONLY,
        lambda c, h, w: c.post(
            "/v1/uploads?kind=eligibility",
            content=eligibility_csv([person(number="99999")]),
            headers={**h, "Content-Type": "text/csv"},
        ),
    ),
    ("POST", "/v1/card/challenges"): Row(FACILITY_ANY, _post("/v1/card/challenges", lambda w: None)),
    ("POST", "/v1/card/registrations"): Row(
        FACILITY_ANY,
        _post(
            "/v1/card/registrations",
            lambda w: {
                "challenge_id": "unknown-challenge",
                "certificate": "AAAA",
                "signature": "AAAA",
                "basic_facts": {"name": "山田 太郎", "birth_date": "1980-04-01", "sex": "1", "address": "東京都"},
            },
        ),
    ),
    ("POST", "/v1/eligibility/by-card"): Row(
        FACILITY_ANY,
        _post(
            "/v1/eligibility/by-card",
            lambda w: {"challenge_id": "unknown", "certificate": "AAAA", "auth_method": "pin", "signature": "AAAA"},
        ),
    ),
    ("POST", "/v1/me/challenges"): Row(PUBLIC, _post("/v1/me/challenges", lambda w: None)),
    **{
        ("POST", f"/v1/me/{what}"): Row(CARD_PROVEN, _post(f"/v1/me/{what}", lambda w: w.proof()))
        for what in ("access-log", "medications", "checkups", "procedures", "consents", "suspension")
    },
    ("POST", "/v1/me/eligibility"): Row(
        CARD_PROVEN, _post("/v1/me/eligibility", lambda w: {**w.proof(), "as_of": "2025-01-01"})
    ),
    ("POST", "/v1/me/expenses"): Row(CARD_PROVEN, _post("/v1/me/expenses", lambda w: {**w.proof(), "year": 2025})),
    ("POST", "/v1/me/expenses/export"): Row(
        CARD_PROVEN, _post("/v1/me/expenses/export", lambda w: {**w.proof(), "year": 2025, "format": "csv"})
    ),
    ("POST", "/v1/me/consents/withdraw"): Row(
        CARD_PROVEN, _post("/v1/me/consents/withdraw", lambda w: {**w.proof(), "consent_id": w.consent_id})
    ),
    ("POST", "/v1/emergency/medications"): Row(
        EMERGENCY,
        _post(
            "/v1/emergency/medications",
            lambda w: {"challenge_id": "unknown", "certificate": "AAAA", "reason": "救急搬送"},
        ),
    ),
    ("GET", "/v1/insurer/card-links"): Row(INSURER_ONLY, _get(lambda w: "/v1/insurer/card-links")),
    ("GET", "/v1/insurer/card-link-drift"): Row(INSURER_ONLY, _get(lambda w: "/v1/insurer/card-link-drift")),
    ("POST", "/v1/consents"): Row(
        OWN_RESOURCE,
        _post(
            "/v1/consents",
            lambda w: {
                "visit_id": w.visit_id,
                "drug": True,
                "checkup": True,
                "clinical": False,
                "limit_certificate": False,
                "setting": "outpatient",
            },
        ),
    ),
    ("GET", "/v1/visits/{visit_id}/medications"): Row(DRUGS, _get(lambda w: f"/v1/visits/{w.visit_id}/medications")),
    ("GET", "/v1/visits/{visit_id}/checkups"): Row(CHECKUPS, _get(lambda w: f"/v1/visits/{w.visit_id}/checkups")),
    # 再照会 (居宅同意取得型): any role of the visit's facility (the consent decides the rest)
    ("POST", "/v1/visits/{visit_id}/recheck"): Row(
        OWN_RESOURCE, lambda c, h, w: c.post(f"/v1/visits/{w.visit_id}/recheck", json={}, headers=h)
    ),
    # 目視確認 and the list of courses (docs/homecare.md): any role of a facility
    ("POST", "/v1/visits/visual"): Row(
        FACILITY_ANY,
        _post("/v1/visits/visual", lambda w: {"confirmed_by": "訪問 看護師", "insurance": QUERY}),
    ),
    ("GET", "/v1/home-courses"): Row(FACILITY_ANY, _get(lambda w: "/v1/home-courses")),
    # 診療・手術 information: physicians and dentists, as checkups (docs/consent.md)
    ("GET", "/v1/visits/{visit_id}/procedures"): Row(
        CHECKUPS, _get(lambda w: f"/v1/visits/{w.visit_id}/procedures")
    ),
    ("GET", "/fhir/R4/metadata"): Row(PUBLIC, _get(lambda w: "/fhir/R4/metadata")),
    ("POST", "/fhir/R4/CoverageEligibilityRequest"): Row(
        FACILITY_ANY, _post("/fhir/R4/CoverageEligibilityRequest", _coverage_request)
    ),
    ("POST", "/fhir/R4"): Row(
        FACILITY_ANY,
        _post(
            "/fhir/R4",
            lambda w: {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": _coverage_request(w),
                        "request": {"method": "POST", "url": "CoverageEligibilityRequest"},
                    }
                ],
            },
        ),
    ),
    ("GET", "/fhir/R4/MedicationDispense"): Row(
        DRUGS, _get(lambda w: f"/fhir/R4/MedicationDispense?visit={w.visit_id}")
    ),
    ("GET", "/fhir/R4/Observation"): Row(CHECKUPS, _get(lambda w: f"/fhir/R4/Observation?visit={w.visit_id}")),
    ("GET", "/fhir/R4/Procedure"): Row(CHECKUPS, _get(lambda w: f"/fhir/R4/Procedure?visit={w.visit_id}")),
    ("GET", "/fhir/R4/Consent/{consent_id}"): Row(OWN_RESOURCE, _get(lambda w: f"/fhir/R4/Consent/{w.consent_id}")),
    ("POST", "/fhir/R4/AuditEvent/_search"): Row(
        CARD_PROVEN,
        lambda c, h, w: c.post(
            "/fhir/R4/AuditEvent/_search",
            data=w.proof(),
            headers=h,
        ),
    ),
}


def _routes(client: TestClient) -> set[tuple[str, str]]:
    spec = client.app.openapi()  # type: ignore[attr-defined]
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_has_a_row(client: TestClient) -> None:
    routes = _routes(client)
    assert routes - set(ROWS) == set(), "a route without a row in the authorization matrix"
    assert set(ROWS) - routes == set(), "a row for a route that is gone"


@pytest.fixture
def world(client: TestClient, tokens: dict[str, str], session_factory: Any, test_ca: TestCA) -> World:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    visit_id = by_card(client, tokens["reception"], card).json()["visit_id"]
    consent = client.post(
        "/v1/consents",
        json={
            "visit_id": visit_id,
            "drug": True,
            "checkup": True,
            "clinical": False,
            "limit_certificate": False,
            "setting": "outpatient",
        },
        headers=auth(tokens["reception"]),
    )
    assert consent.status_code == 200, consent.text
    batch = client.post("/v1/eligibility/batches", json={"queries": [QUERY]}, headers=auth(tokens["reception"]))
    assert batch.status_code == 202, batch.text
    other = OTHER_FACILITY + str(luhn_check_digit(OTHER_FACILITY))
    with transaction(session_factory) as s:
        other_token = add_facility(s, code=other, name="ほかの内科", role="physician")
        doomed = add_facility(s, code=FACILITY_CODE, name="しかく内科クリニック", role="physician")
        revoke_tokens(s, token_ids=[resolve_token(s, doomed).token_id])
        set_emergency(s, FACILITY_CODE, True)
    headers: dict[str, dict[str, str]] = {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-token"},
        "revoked": auth(doomed),
        "insurer": auth(tokens["insurer"]),
        "other": auth(other_token),
        **{role: auth(tokens[role]) for role in ("reception", "physician", "dentist", "pharmacist")},
    }
    headers["card_other"] = {}

    def proof_of_another_card() -> dict[str, str]:
        ch = client.post("/v1/me/challenges").json()
        return {
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "signature": sign(another_key(card), ch["nonce"]),
        }

    return World(
        client,
        headers,
        visit_id,
        batch.json()["batch_id"],
        int(consent.json()["consent_id"]),
        proof_of_another_card,
    )


@pytest.mark.parametrize("route", sorted(ROWS), ids=lambda r: f"{r[0]} {r[1]}")
def test_authorization_matrix(world: World, route: tuple[str, str]) -> None:
    row = ROWS[route]
    wrong = []
    for column in COLUMNS:
        world.column = column
        response = row.call(world.client, world.headers[column], world)
        assert response.status_code < 500, (column, response.status_code, response.text)
        code = _code(response)
        expected = row.cells[column]
        ok = code not in AUTH_CODES if expected == PASS else code == expected
        if not ok:
            wrong.append((column, expected, response.status_code, code))
    assert wrong == [], wrong
