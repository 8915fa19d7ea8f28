"""Consent, drug and checkup sharing by role, and the patient's append-only access log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.consent.models import Consent
from shikaku_server.eligibility.service import today_jst
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import PHARMACY_CODE, auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person
from tests.integration.test_card_api import b64, by_card, challenge, problem_code, register, sign
from tests.integration.test_eligibility_api import upload

TODAY = today_jst()
MED_COLUMNS = [
    "insurer_number",
    "symbol",
    "number",
    "branch",
    "dispensed_on",
    "facility_code",
    "drug_code",
    "drug_name",
    "quantity",
    "unit",
    "days",
]


def med(**over: Any) -> dict[str, Any]:
    return {
        "insurer_number": INSURER_A,
        "symbol": "123",
        "number": "4567",
        "branch": "00",
        "dispensed_on": (TODAY - dt.timedelta(days=30)).isoformat(),
        "facility_code": PHARMACY_CODE,
        "drug_code": "620004422",
        "drug_name": "ロキソプロフェンNa錠60mg",
        "quantity": "3",
        "unit": "錠",
        "days": "7",
    } | over


def drug_history(*more: dict[str, Any]) -> list[dict[str, Any]]:
    """山田 太郎's drugs: one a month old, one 4 years old (inside the 5 years shown), one 6 years old
    (outside); then ``more``."""
    return [
        med(),
        med(
            drug_code="610443047",
            drug_name="アムロジピン錠5mg",
            dispensed_on=(TODAY - dt.timedelta(days=4 * 365)).isoformat(),
        ),
        med(
            drug_code="612170709",
            drug_name="ファモチジン錠20mg",
            dispensed_on=(TODAY - dt.timedelta(days=6 * 365)).isoformat(),
        ),
        *more,
    ]


@pytest.fixture
def card(test_ca: TestCA, client: TestClient, tokens: dict[str, str]) -> IssuedCertificate:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [
                person(
                    limit_kind="01",
                    limit_class="A03",
                    limit_valid_from="2024-04-01",
                    disease_category="1|2",
                    disease_valid_from="2024-04-01|2024-05-01",
                    disease_self_pay="10000|20000",
                ),
            ],
            optional=True,
        ),
    )
    upload(
        client,
        tokens["insurer"],
        csv_bytes(MED_COLUMNS, drug_history()),
        kind="medications",
    )
    upload(
        client,
        tokens["insurer"],
        csv_bytes(
            ["insurer_number", "symbol", "number", "branch", "checked_on", "hba1c", "systolic", "urine_protein"],
            [
                {
                    "insurer_number": INSURER_A,
                    "symbol": "123",
                    "number": "4567",
                    "branch": "00",
                    "checked_on": (TODAY - dt.timedelta(days=200)).isoformat(),
                    "hba1c": "5.6",
                    "systolic": "128",
                    "urine_protein": "-",
                }
            ],
        ),
        kind="checkups",
    )
    issued = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], issued).status_code == 200
    return issued


def visit(client: TestClient, token: str, card: IssuedCertificate) -> str:
    r = by_card(client, token, card)
    assert r.status_code == 200, r.text
    return str(r.json()["visit_id"])


def consent(client: TestClient, token: str, visit_id: str, **flags: Any) -> Any:
    return client.post("/v1/consents", headers=auth(token), json={"visit_id": visit_id, **flags})


def test_no_consent_no_drugs(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    v = visit(client, tokens["physician"], card)
    r = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"]))
    assert r.status_code == 403 and problem_code(r) == "consent_required"


def test_consented_drug_history_five_years(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v, drug=True).status_code == 200
    r = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"]))
    assert r.status_code == 200, r.text
    names = [i["drug_name"] for i in r.json()["items"]]
    # 5 years (SHIKAKU_CLINICAL_RETENTION_YEARS): the 4-year-old one is in, the 6-year-old one out
    assert names == ["ロキソプロフェンNa錠60mg", "アムロジピン錠5mg"]
    # drug consent does not open checkups
    r = client.get(f"/v1/visits/{v}/checkups", headers=auth(tokens["physician"]))
    assert problem_code(r) == "consent_required"


def test_roles(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    v = visit(client, tokens["reception"], card)
    consent(client, tokens["reception"], v, drug=True, checkup=True)
    r = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["reception"]))
    assert r.status_code == 403 and problem_code(r) == "forbidden_role"
    assert client.get(f"/v1/visits/{v}/checkups", headers=auth(tokens["physician"])).status_code == 200
    assert client.get(f"/v1/visits/{v}/checkups", headers=auth(tokens["dentist"])).status_code == 200
    pv = visit(client, tokens["pharmacist"], card)
    consent(client, tokens["pharmacist"], pv, drug=True, checkup=True)
    assert client.get(f"/v1/visits/{pv}/medications", headers=auth(tokens["pharmacist"])).status_code == 200
    assert problem_code(client.get(f"/v1/visits/{pv}/checkups", headers=auth(tokens["pharmacist"]))) == "forbidden_role"
    # another facility's visit does not exist for the pharmacy
    r = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["pharmacist"]))
    assert r.status_code == 404


def test_outpatient_consent_lapses_after_24h(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    consent(client, tokens["physician"], v, drug=True)
    with session_factory.begin() as s:
        s.execute(sa.update(Consent).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    r = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"]))
    assert problem_code(r) == "consent_expired"


def test_inpatient_consent_has_no_expiry_and_new_check_changes_it(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    body = consent(client, tokens["physician"], v, drug=True, setting="inpatient").json()
    assert body["expires_at"] is None
    v2 = visit(client, tokens["physician"], card)
    consent(client, tokens["physician"], v2, drug=False)
    assert (
        problem_code(client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"]))) == "consent_required"
    )


def test_limit_certificate_and_diseases_only_with_consent(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    """A card check answers before its visit's consent: it never carries them, not even under an
    earlier visit's live consent (the patient may refuse them now). With 限度額 consent at this visit
    the terminal asks by number for them (docs/consent.md)."""
    first = by_card(client, tokens["reception"], card).json()
    assert first["limit_certificate"] is None and first["specific_diseases"] == []
    record = consent(client, tokens["reception"], first["visit_id"], limit_certificate=True)
    assert record.status_code == 200 and record.json()["limit_certificate"]
    second = by_card(client, tokens["reception"], card).json()
    assert second["limit_certificate"] is None and second["specific_diseases"] == []
    insured = first["insured"]
    keys = ("insurer_number", "symbol", "number", "branch", "birth_date")
    r = client.post(
        "/v1/eligibility/by-number",
        headers=auth(tokens["reception"]),
        json={**{k: insured[k] for k in keys}, "include_limit_certificate": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["limit_certificate"] == {
        "kind": "01",
        "classification": "A03",
        "valid_from": "2024-04-01",
        "valid_to": None,
    }
    assert [d["category"] for d in r.json()["specific_diseases"]] == ["1", "2"]


def test_certificate_type_card_cannot_share(client: TestClient, tokens: dict[str, str], test_ca: TestCA) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person(card_classification="05")]))
    issued = test_ca.issue_auth_certificate()
    register(client, tokens["reception"], issued)
    v = visit(client, tokens["reception"], issued)
    r = consent(client, tokens["reception"], v, drug=True)
    assert r.status_code == 422
    assert consent(client, tokens["reception"], v).status_code == 200  # sharing nothing is fine


def test_access_log_records_every_read_and_patient_reads_it(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    consent(client, tokens["physician"], v, drug=True)
    client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"]))
    client.post(
        "/v1/eligibility/by-number",
        headers=auth(tokens["reception"]),
        json={
            "insurer_number": INSURER_A,
            "symbol": "123",
            "number": "4567",
            "branch": "00",
            "birth_date": "1980-04-01",
        },
    )
    ch = challenge(client, tokens["reception"])
    r = client.post(
        "/v1/me/access-log",
        headers=auth(tokens["reception"]),
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "signature": sign(card.private_key, ch["nonce"]),
        },
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    seen = {(e["what"], e["role"], e["query_kind"]) for e in entries}
    assert ("medications", "physician", "card") in seen
    assert ("eligibility", "physician", "card") in seen
    assert ("eligibility", "reception", "number") in seen
    assert {e["facility_name"] for e in entries} == {"しかく内科クリニック"}
    meds = next(e for e in entries if e["what"] == "medications")
    assert meds["consent_id"] is not None


def test_access_log_is_append_only(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    visit(client, tokens["reception"], card)
    for statement in ("UPDATE access_log SET role = 'x'", "DELETE FROM access_log"):
        with pytest.raises(sa.exc.DBAPIError), session_factory.begin() as s:
            s.execute(sa.text(statement))
    with session_factory() as s:
        assert s.execute(sa.text("SELECT count(*) FROM access_log")).scalar_one() >= 1
    # and no route of the API writes to it other than by reading data
    methods = {(r.path, m) for r in client.app.routes for m in getattr(r, "methods", ())}  # type: ignore[attr-defined]
    assert not [p for p, m in methods if "access-log" in p and m in ("PUT", "PATCH", "DELETE")]
