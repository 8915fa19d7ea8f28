"""The FHIR facade's eligibility: CoverageEligibilityRequest → CoverageEligibilityResponse, the
batch Bundle, the CapabilityStatement, every error as an OperationOutcome, and the same answer
as the JSON API for the same person (on both backends)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.types import Message, Scope

from schemas.identifiers import my_number_in
from shikaku_server import errors
from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.app import create_app
from shikaku_server.auth.service import add_insurer, add_payer
from shikaku_server.config import Settings
from shikaku_server.database import transaction
from shikaku_server.fhir import codes as c
from shikaku_server.fhir import service as fhir_service
from testbed.population import generate_population, write_eligibility_csv
from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, change, eligibility_csv, family_member, person
from tests.integration.fhir_helpers import (
    BASE,
    comparable,
    eligibility_request,
    outcome_code,
    parse,
    post_eligibility,
    result_of,
)
from tests.integration.test_eligibility_api import upload


def json_answer(client: TestClient, token: str, **query: Any) -> dict[str, Any]:
    body = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
    body = {k: v for k, v in {**body, **query}.items() if v is not None}
    r = client.post("/v1/eligibility/by-number", json=body, headers=auth(token))
    assert r.status_code == 200, r.text
    return comparable(r.json())


def fhir_answer(client: TestClient, token: str, **query: Any) -> dict[str, Any]:
    r = post_eligibility(client, token, eligibility_request(**query))
    assert r.status_code == 200, r.text
    assert isinstance(parse(r), CoverageEligibilityResponse)
    body = r.json()
    assert body["outcome"] == "complete" and body["purpose"] == ["validation"]
    return result_of(body)


def same_answer(client: TestClient, token: str, **query: Any) -> dict[str, Any]:
    """Both doors, the same query: the same result (FHIR read back field by field)."""
    from_json = json_answer(client, token, **query)
    from_fhir = fhir_answer(client, token, **query)
    assert from_fhir == from_json
    return from_fhir


def log_count(client: TestClient, session_factory: Any, what: str = "eligibility") -> int:
    """Access-log entries of one kind: ``eligibility`` (a read that disclosed a person) by default."""
    client.app.state.shikaku.access_log.flush()  # type: ignore[attr-defined]
    with session_factory() as s:
        query = sa.select(sa.func.count()).select_from(AccessLogEntry).where(AccessLogEntry.what == what)
        return int(s.execute(query).scalar_one())


# ---------------------------------------------------------------- the same answer through both doors


def test_valid_person_same_answer_with_jp_core_fields(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person(symbol="１２３", number="４５６７")]))
    result = same_answer(client, tokens["reception"], as_of="2025-01-01")
    assert result["validity"] == 1 and result["insured"]["copay_ratio"] == 30
    body = post_eligibility(client, tokens["reception"], eligibility_request(as_of="2025-01-01")).json()
    contained = {r["resourceType"]: r for r in body["contained"]}
    assert contained["Organization"]["identifier"] == [{"system": c.INSURER_NUMBER_SYSTEM, "value": INSURER_A}]
    assert contained["Patient"]["gender"] == "male" and contained["Patient"]["birthDate"] == "1980-04-01"
    assert contained["Coverage"]["status"] == "active"
    assert body["insurance"][0]["inforce"] is True
    assert body["request"]["identifier"]["value"] == "req-1"
    symbol = next(e for e in contained["Coverage"]["extension"] if e["url"] == c.SYMBOL_EXTENSION)
    assert symbol["valueString"] == "１２３"  # as the insurer sent it


@pytest.mark.parametrize(("sex", "gender"), [("1", "male"), ("2", "female"), ("3", "unknown")])
def test_sex_is_administrative_gender(client: TestClient, tokens: dict[str, str], sex: str, gender: str) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person(sex=sex)]))
    body = post_eligibility(client, tokens["reception"], eligibility_request(as_of="2025-01-01")).json()
    patient = next(r for r in body["contained"] if r["resourceType"] == "Patient")
    assert patient["gender"] == gender
    same_answer(client, tokens["reception"], as_of="2025-01-01")


def test_loss_is_invalid_not_inforce_with_reason(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    upload(
        client, tokens["insurer"], eligibility_csv([person(action="loss", valid_to="2025-03-31", reason_of_loss="03")])
    )
    assert same_answer(client, tokens["reception"], as_of="2025-03-31")["validity"] == 1
    lost = same_answer(client, tokens["reception"], as_of="2025-04-01")
    assert lost["validity"] == 2 and lost["insured"]["reason_of_loss"] == "03"
    body = post_eligibility(client, tokens["reception"], eligibility_request(as_of="2025-04-01")).json()
    assert body["insurance"][0]["inforce"] is False
    assert next(r for r in body["contained"] if r["resourceType"] == "Coverage")["status"] == "cancelled"


def test_newer_eligibility_elsewhere_is_validity_3(client: TestClient, tokens: dict[str, str]) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv([person(), person(action="loss", valid_to="2025-03-31", reason_of_loss="03")]),
    )
    upload(
        client,
        tokens["insurer_b"],
        eligibility_csv([person(insurer_number=INSURER_B, symbol="77", number="1", valid_from="2025-04-01")]),
    )
    assert same_answer(client, tokens["reception"], as_of="2025-05-01")["validity"] == 3


def test_no_match_is_validity_4_and_discloses_nothing(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    result = same_answer(client, tokens["reception"], birth_date="1980-04-02", as_of="2025-01-01")
    assert result["validity"] == 4 and result["insured"] is None
    body = post_eligibility(client, tokens["reception"], eligibility_request(birth_date="1980-04-02")).json()
    assert [r["resourceType"] for r in body["contained"]] == ["Organization"]
    assert "name" not in body["contained"][0] and "insurance" not in body


def test_family_members_and_multiple_without_branch(client: TestClient, tokens: dict[str, str]) -> None:
    family = [
        family_member(),
        person(branch="02", name="山田 一郎", birth_date="2010-05-05", personal_family="2"),
        person(branch="03", name="山田 二郎", birth_date="2010-05-05", personal_family="2"),
    ]
    upload(client, tokens["insurer"], eligibility_csv([person(), *family]))
    spouse = same_answer(client, tokens["reception"], branch="01", birth_date="1982-02-02", as_of="2025-01-01")
    assert spouse["insured"]["personal_family"] == "2" and spouse["insured"]["sex"] == "2"
    head = same_answer(client, tokens["reception"], branch=None, as_of="2025-01-01")
    assert head["insured"]["branch"] == "00" and head["insured"]["personal_family"] == "1"
    twins = same_answer(client, tokens["reception"], branch=None, birth_date="2010-05-05", as_of="2025-01-01")
    assert twins["validity"] == 5 and twins["insured"] is None


def test_copay_change_by_date(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    upload(client, tokens["insurer"], eligibility_csv([change(valid_from="2025-08-01", copay_ratio="20")]))
    assert same_answer(client, tokens["reception"], as_of="2025-07-31")["insured"]["copay_ratio"] == 30
    assert same_answer(client, tokens["reception"], as_of="2025-08-01")["insured"]["copay_ratio"] == 20


def test_elderly_limit_certificate_and_diseases_only_when_asked(client: TestClient, tokens: dict[str, str]) -> None:
    row = person(
        birth_date="1950-04-01",
        elderly_ratio="20",
        elderly_valid_from="2024-05-01",
        limit_kind="01",
        limit_class="A03",
        limit_valid_from="2024-04-01",
        disease_category="1|2",
        disease_valid_from="2024-04-01|2024-05-01",
        disease_self_pay="10000|20000",
    )
    upload(client, tokens["insurer"], eligibility_csv([row], optional=True))
    plain = same_answer(client, tokens["reception"], birth_date="1950-04-01", as_of="2025-01-01")
    assert plain["elderly"]["copay_ratio"] == 20
    assert plain["limit_certificate"] is None and plain["specific_diseases"] == []
    shared = same_answer(
        client, tokens["reception"], birth_date="1950-04-01", as_of="2025-01-01", include_limit_certificate=True
    )
    assert shared["limit_certificate"]["classification"] == "A03"
    assert [d["self_pay"] for d in shared["specific_diseases"]] == [10000, 20000]


def test_public_expenses_are_coverages_under_the_limit_consent(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    """公費負担医療: each 受給者証 in force is its own 公費 Coverage (保険種別 8), shown exactly when the
    JSON answer shows it (the 限度額 consent), through the fast path and the batch alike; one
    access-log entry per read, as for any eligibility read."""
    from tests.integration.test_assistance import NANBYO, SHOUMAN, certificate, certificates_csv, recipient

    upload(client, tokens["insurer"], eligibility_csv([person()]))
    with transaction(session_factory) as s:
        payer = add_payer(s, numbers=[NANBYO, SHOUMAN])
    rows = [
        certificate(),
        certificate(payer_number=SHOUMAN, recipient_number=recipient("200003"), monthly_cap="0", valid_to=""),
        certificate(valid_from="2025-04-01", valid_to="2026-03-31", monthly_cap="5000"),  # ended by 2026-10
    ]
    assert upload(client, payer, certificates_csv(rows), kind="public_expense")["accepted"] == 3
    reception = tokens["reception"]
    shared = same_answer(client, reception, as_of="2026-10-15", include_limit_certificate=True)
    assert [(e["payer_number"], e["monthly_cap"], e["valid_to"]) for e in shared["public_expenses"]] == [
        (SHOUMAN, 0, None),
        (NANBYO, 10000, "2027-03-31"),
    ]
    assert same_answer(client, reception, as_of="2026-10-15")["public_expenses"] == []  # no consent: none
    assert same_answer(client, reception, as_of="2025-10-15", include_limit_certificate=True)["public_expenses"][0][
        "monthly_cap"
    ] == 5000
    body = post_eligibility(
        client, reception, eligibility_request(as_of="2026-10-15", include_limit_certificate=True)
    ).json()
    kinds = [(r["resourceType"], r["id"]) for r in body["contained"]]
    assert kinds == [
        ("Organization", "insurer"),
        ("Patient", "patient"),
        ("Coverage", "coverage"),
        ("Organization", "public-payer-1"),
        ("Coverage", "public-expense-1"),
        ("Organization", "public-payer-2"),
        ("Coverage", "public-expense-2"),
    ]
    payer_org = body["contained"][3]
    assert payer_org["identifier"] == [{"system": c.PUBLIC_PAYER_NUMBER_SYSTEM, "value": SHOUMAN}]
    public = body["contained"][4]
    assert public["subscriberId"] == recipient("200003") and public["payor"] == [{"reference": "#public-payer-1"}]
    assert public["costToBeneficiary"][0]["type"]["coding"][0]["code"] == "maxoutofpocket"
    assert [i["coverage"]["reference"] for i in body["insurance"]] == [
        "#coverage",
        "#public-expense-1",
        "#public-expense-2",
    ]
    # the same answer again (the validated template) and in a batch entry: the same Coverages
    again = post_eligibility(client, reception, eligibility_request(as_of="2026-10-15", include_limit_certificate=True))
    assert again.json()["contained"] == body["contained"] and again.json()["insurance"] == body["insurance"]
    entry = {
        "resource": eligibility_request(as_of="2026-10-15", include_limit_certificate=True),
        "request": {"method": "POST", "url": "CoverageEligibilityRequest"},
    }
    before = log_count(client, session_factory)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    batch = client.post(BASE, json=bundle, headers=auth(reception))
    assert batch.status_code == 200, batch.text
    resource = batch.json()["entry"][0]["resource"]
    assert resource["contained"] == body["contained"] and resource["insurance"] == body["insurance"]
    assert log_count(client, session_factory) - before == 1


def test_population_sample_same_answer(
    settings: Settings, tokens: dict[str, str], session_factory: Any, tmp_path: Path
) -> None:
    """Generated people (all kinds: valid, lost, changed, elderly, families), each through both doors
    (hundreds of lookups, many of them validity 4: with the failed-lookup limit off)."""
    unlimited = {"rate_limit_lookup_failures_per_token": 0, "rate_limit_lookup_failures_per_facility": 0}
    with TestClient(create_app(settings.model_copy(update=unlimited))) as client:
        _population_sample_same_answer(client, tokens, session_factory, tmp_path)


def _population_sample_same_answer(
    client: TestClient, tokens: dict[str, str], session_factory: Any, tmp_path: Path
) -> None:
    today = dt.date(2025, 6, 1)
    population = generate_population(120, seed=16, today=today)
    with transaction(session_factory) as s:
        token = add_insurer(s, numbers=[i.number for i in population.insurers], name="population insurers")
    path = tmp_path / "population.csv"
    write_eligibility_csv(path, population.people)
    upload(client, token, path.read_bytes())
    kinds: set[int] = set()
    for p in population.people[:60]:
        for as_of in (today, p.valid_from - dt.timedelta(days=1), (p.lost_on or today) + dt.timedelta(days=1)):
            query = {
                "insurer_number": p.insurer_number,
                "symbol": p.symbol,
                "number": p.number,
                "branch": p.branch,
                "birth_date": p.birth_date.isoformat(),
                "as_of": as_of.isoformat(),
            }
            kinds.add(same_answer(client, tokens["reception"], **query)["validity"])
    assert {1, 2, 4} <= kinds


# ---------------------------------------------------------------- the access log: one entry per read


def test_one_access_log_entry_per_read_whichever_door(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    before = log_count(client, session_factory)
    json_answer(client, tokens["reception"], as_of="2025-01-01")
    after_json = log_count(client, session_factory)
    fhir_answer(client, tokens["reception"], as_of="2025-01-01")
    after_fhir = log_count(client, session_factory)
    assert after_json - before == 1 and after_fhir - after_json == 1
    # nobody disclosed: no read logged, but the wrong birth date is in the person's log, as by JSON
    fhir_answer(client, tokens["reception"], birth_date="1999-01-01")
    assert log_count(client, session_factory) == after_fhir
    assert log_count(client, session_factory, "eligibility_no_match") == 1
    with session_factory() as s:
        entry = (
            s.execute(
                sa.select(AccessLogEntry).where(AccessLogEntry.what == "eligibility").order_by(AccessLogEntry.id.desc())
            )
            .scalars()
            .first()
        )
    assert entry is not None
    assert (entry.what, entry.query_kind, entry.role) == ("eligibility", "number", "reception")


# ---------------------------------------------------------------- the two request readers, the fast path


@pytest.mark.parametrize(
    "unusual",
    [
        {"meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_CoverageEligibilityRequest"]}},
        {"text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">資格確認</div>'}},
        {"_created": {"extension": [{"url": "urn:example:source", "valueString": "EHR"}]}},
        {"created": "2025-01-01", "identifier": [{"use": "official", "system": "urn:example:req", "value": "r-9"}]},
    ],
    ids=["meta", "text", "primitive-extension", "date-created-identifier-use"],
)
def test_unusual_requests_are_read_by_r4b_with_the_same_answer(
    client: TestClient, tokens: dict[str, str], unusual: dict[str, Any]
) -> None:
    """A request outside the lean reader's shape is read by the R4B model: the same answer."""
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    ordinary = post_eligibility(client, tokens["reception"], eligibility_request(as_of="2025-01-01"))
    r = post_eligibility(client, tokens["reception"], {**eligibility_request(as_of="2025-01-01"), **unusual})
    assert r.status_code == 200 and isinstance(parse(r), CoverageEligibilityResponse)
    from_json = json_answer(client, tokens["reception"], as_of="2025-01-01")
    assert result_of(r.json()) == result_of(ordinary.json()) == from_json
    expected = unusual.get("identifier", [{"system": "urn:example:clinic-request", "value": "req-1"}])
    assert r.json()["identifier"] == expected and r.json()["request"] == {"identifier": expected[0]}


def test_repeated_answers_differ_only_in_created_and_identifier(client: TestClient, tokens: dict[str, str]) -> None:
    """The second response of an answer comes from its validated template: the same but for the slots."""
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    first = post_eligibility(client, tokens["reception"], eligibility_request(as_of="2025-01-01")).json()
    without = _without(eligibility_request(as_of="2025-01-01"), "identifier")
    second = post_eligibility(client, tokens["reception"], without)
    assert isinstance(parse(second), CoverageEligibilityResponse)
    body = second.json()
    assert "identifier" not in body and body["request"] == {"display": "CoverageEligibilityRequest"}
    slots = ("identifier", "created", "request")
    assert {k: v for k, v in body.items() if k not in slots} == {k: v for k, v in first.items() if k not in slots}
    assert list(body) == [k for k in first if k != "identifier"]  # the elements in the model's order


def test_fhir_lookups_are_logged_and_counted_under_their_route(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    before = log_count(client, session_factory)
    for _ in range(3):
        assert post_eligibility(client, tokens["reception"], eligibility_request(as_of="2025-01-01")).status_code == 200
    assert log_count(client, session_factory) - before == 3
    metrics = client.get("/metrics").text
    assert 'route="/fhir/R4/CoverageEligibilityRequest",status="200"} 3' in metrics


def test_a_client_that_goes_away_is_not_a_server_error(
    client: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    async def call() -> None:
        await client.app(scope, receive, send)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{BASE}/CoverageEligibilityRequest",
        "raw_path": f"{BASE}/CoverageEligibilityRequest".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {tokens['reception']}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    assert client.portal is not None
    client.portal.call(call)
    assert messages[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


# ---------------------------------------------------------------- the other ways to name the insurer


@pytest.mark.parametrize("insurer_in", ["insurer", "identifier"])
def test_insurer_number_from_the_request_insurer(client: TestClient, tokens: dict[str, str], insurer_in: str) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    assert fhir_answer(client, tokens["reception"], as_of="2025-01-01", insurer_in=insurer_in)["validity"] == 1


# ---------------------------------------------------------------- batch (一括照会)


def test_batch_bundle_answers_each_entry_in_order(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [person(), person(branch="01", name="山田 花子", sex="2", birth_date="1982-02-02", personal_family="2")]
        ),
    )
    before = log_count(client, session_factory)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": eligibility_request(as_of="2025-01-01"),
                "request": {"method": "POST", "url": "CoverageEligibilityRequest"},
            },
            {
                "resource": eligibility_request(branch="01", birth_date="1982-02-02", as_of="2025-01-01"),
                "request": {"method": "POST", "url": "CoverageEligibilityRequest"},
            },
            {
                "resource": eligibility_request(birth_date="2025-13-01"),
                "request": {"method": "POST", "url": "CoverageEligibilityRequest"},
            },
            {"resource": eligibility_request(), "request": {"method": "GET", "url": "Patient"}},
            {
                "resource": eligibility_request(birth_date="1970-01-01", as_of="2025-01-01"),
                "request": {"method": "POST", "url": "CoverageEligibilityRequest"},
            },
        ],
    }
    r = client.post(BASE, json=bundle, headers={**auth(tokens["reception"]), "Content-Type": c.FHIR_JSON})
    assert r.status_code == 200, r.text
    parsed = parse(r)
    assert isinstance(parsed, Bundle) and parsed.type == "batch-response"
    entries = r.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in entries] == ["200", "200", "422", "405", "200"]
    assert result_of(entries[0]["resource"]) == json_answer(client, tokens["reception"], as_of="2025-01-01")
    assert result_of(entries[1]["resource"])["insured"]["name"] == "山田 花子"
    assert result_of(entries[4]["resource"])["validity"] == 4
    assert entries[2]["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] == "validation_error"
    assert entries[3]["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] == "method_not_allowed"
    # two disclosed in the batch, one by the JSON check above
    assert log_count(client, session_factory) - before == 3


def test_batch_must_be_a_batch_bundle(client: TestClient, tokens: dict[str, str]) -> None:
    for body in ({"resourceType": "Bundle", "type": "transaction"}, {"resourceType": "Patient"}, [1, 2]):
        r = client.post(BASE, json=body, headers=auth(tokens["reception"]))
        assert r.status_code == 422 and outcome_code(r) == "validation_error"
    r = client.post(BASE, json={"resourceType": "Bundle", "type": "batch", "entry": []})
    assert r.status_code == 401 and outcome_code(r) == "unauthorized"


# ---------------------------------------------------------------- metadata


def test_capability_statement_lists_what_is_supported(client: TestClient) -> None:
    r = client.get(f"{BASE}/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith(c.FHIR_JSON)
    statement = CapabilityStatement.model_validate(r.json())
    rest = r.json()["rest"][0]
    supported = {res["type"]: sorted(i["code"] for i in res.get("interaction", ())) for res in rest["resource"]}
    assert supported == {
        "CoverageEligibilityRequest": ["create"],
        "CoverageEligibilityResponse": [],
        "MedicationDispense": ["search-type"],
        "Observation": ["search-type"],
        "Procedure": ["search-type"],
        "Consent": ["read"],
        "AuditEvent": ["search-type"],
    }
    assert [i["code"] for i in rest["interaction"]] == ["batch"]
    assert statement.fhirVersion == "4.0.1" and statement.format == [c.FHIR_JSON]


# ---------------------------------------------------------------- errors, each an OperationOutcome


def test_no_token_or_bad_token_is_unauthorized(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = client.post(f"{BASE}/CoverageEligibilityRequest", json=eligibility_request(), headers=headers)
        assert r.status_code == 401 and outcome_code(r) == "unauthorized"


def test_insurer_token_is_forbidden_role(client: TestClient, tokens: dict[str, str]) -> None:
    r = post_eligibility(client, tokens["insurer"], eligibility_request())
    assert r.status_code == 403 and outcome_code(r) == "forbidden_role"


def test_malformed_json_is_400(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        f"{BASE}/CoverageEligibilityRequest",
        content=b"{not json",
        headers={**auth(tokens["reception"]), "Content-Type": c.FHIR_JSON},
    )
    assert r.status_code == 400 and outcome_code(r) == "validation_error"


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (_without(eligibility_request(), "status"), "status"),  # not valid FHIR
        ({**eligibility_request(), "resourceType": "Claim"}, "resourceType"),
        ({**eligibility_request(), "purpose": ["benefits"]}, "purpose"),
        ({**eligibility_request(), "servicedPeriod": {"start": "2025-01-01"}}, "servicedPeriod"),
        (eligibility_request(birth_date=None), "patient"),
        (eligibility_request(number=None), "extension"),
        ({**eligibility_request(), "insurance": []}, "insurance"),
        (eligibility_request(insurer_number="01130013"), "Organization.identifier.value"),  # check digit
        (eligibility_request(branch="1"), "JP_Coverage_InsuredPersonSubNumber"),
        (eligibility_request(birth_date="1980-02-30"), "birthDate"),
    ],
)
def test_invalid_request_is_422_naming_the_element(
    client: TestClient, tokens: dict[str, str], body: dict[str, Any], where: str
) -> None:
    r = post_eligibility(client, tokens["reception"], body)
    assert r.status_code == 422, r.text
    assert outcome_code(r) == "validation_error"
    issue = r.json()["issue"][0]
    assert where in issue["diagnostics"]
    assert "1980-02-30" not in r.text and "01130013" not in r.text  # nothing echoed


def test_a_body_over_the_limit_without_length_is_413_not_500(client: TestClient, tokens: dict[str, str]) -> None:
    big = b'{"resourceType": "' + b"1" * (5 * 1024 * 1024) + b'"}'
    r = client.post(
        f"{BASE}/CoverageEligibilityRequest",
        content=iter([big[:1000], big[1000:]]),  # chunked: no Content-Length to refuse it up front
        headers={**auth(tokens["reception"]), "Content-Type": c.FHIR_JSON},
    )
    assert r.status_code == 413 and outcome_code(r) == "payload_too_large"


def test_my_number_is_refused(client: TestClient, tokens: dict[str, str]) -> None:
    r = post_eligibility(client, tokens["reception"], eligibility_request(number="123456789018"))
    assert r.status_code == 422 and outcome_code(r) == "my_number_detected"
    assert "123456789018" not in r.text


def test_unknown_paths_and_methods(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get(f"{BASE}/Patient/1", headers=auth(tokens["reception"]))
    assert r.status_code == 404 and outcome_code(r) == "not_found"
    r = client.get(f"{BASE}/CoverageEligibilityRequest", headers=auth(tokens["reception"]))
    assert r.status_code == 405 and outcome_code(r) == "method_not_allowed"
    r = client.delete(f"{BASE}/metadata")
    assert r.status_code == 405 and outcome_code(r) == "method_not_allowed"


ALL_ERRORS = sorted(
    (cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.DomainError)),
    key=lambda cls: cls.code,
)


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda cls: cls.code)
def test_every_error_code_is_an_operation_outcome_with_the_json_status(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch, error: type[errors.DomainError]
) -> None:
    async def failing(*_: Any) -> bytes:
        if error is errors.RateLimitedError:
            raise errors.RateLimitedError(retry_after=30)
        raise error()

    monkeypatch.setattr(fhir_service, "lookup", failing)
    r = post_eligibility(client, tokens["reception"], eligibility_request())
    assert r.status_code == error.status
    assert isinstance(parse(r), OperationOutcome)
    assert outcome_code(r) == error.code
    if error is errors.UnavailableError:
        assert r.headers["retry-after"]
    if error is errors.RateLimitedError:
        assert r.headers["retry-after"] == "30"


def test_database_down_is_503_not_500(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*_: Any) -> bytes:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(fhir_service, "lookup", failing)
    r = post_eligibility(client, tokens["reception"], eligibility_request())
    assert r.status_code == 503 and outcome_code(r) == "unavailable" and r.headers["retry-after"]


def test_a_contained_resource_of_no_known_type_is_a_validation_error(
    client: TestClient, tokens: dict[str, str]
) -> None:
    # found by the hostile-bytes properties: an unknown resourceType inside `contained` was a KeyError (a 500)
    body = eligibility_request()
    body["contained"][0]["resourceType"] = "NoSuchResource"
    not_text = eligibility_request()
    not_text["contained"][0]["resourceType"] = [[["Patient"]]]
    for path, payload in (
        ("/fhir/R4/CoverageEligibilityRequest", not_text),
        ("/fhir/R4/CoverageEligibilityRequest", body),
        (
            "/fhir/R4",
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "POST", "url": "CoverageEligibilityRequest"}, "resource": body}],
            },
        ),
    ):
        r = client.post(path, json=payload, headers=auth(tokens["reception"]))
        assert r.status_code in (200, 400, 422), r.text
        text = r.text
        assert '"internal_error"' not in text and "NoSuchResource" not in text, text
        assert r.status_code < 500
        assert "validation_error" in text


@pytest.mark.parametrize("where", ["identifier", "contained"])
def test_a_my_number_in_any_element_is_refused_and_not_echoed(
    client: TestClient, tokens: dict[str, str], where: str
) -> None:
    # found by the hostile-bytes properties: request.identifier[0].system came back in the answer
    body = eligibility_request()
    if where == "identifier":
        body["identifier"][0]["system"] = "urn:x:1234-5678-9018"
    else:
        body["contained"][0]["id"] = "123456789018"
    r = post_eligibility(client, tokens["reception"], body)
    assert r.status_code == 422, r.text
    assert "my_number_detected" in r.text and not my_number_in(r.text)
