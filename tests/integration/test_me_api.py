"""The patient's own side (/v1/me/*): every call proven by the card, only the person's data,
every read in the person's access log; suspension; emergency reading."""

from __future__ import annotations

import datetime as dt
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from schemas.insurer_files import EXPENSE_COLUMNS
from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.card.models import CardSuspension
from shikaku_server.database import transaction
from shikaku_server.eligibility.models import Insured
from shikaku_server.eligibility.service import today_jst
from shikaku_server.emergency.models import EmergencyRead
from shikaku_server.emergency.service import set_emergency
from shikaku_server.me.suspension import resume_person
from shikaku_server.ratelimit import Rule
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import FACILITY_CODE, PHARMACY_CODE, auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, family_member, person
from tests.integration.test_card_api import FACTS, another_key, b64, by_card, challenge, problem_code, register, sign
from tests.integration.test_consent_api import MED_COLUMNS, consent, drug_history, med
from tests.integration.test_eligibility_api import upload

TODAY = today_jst()
OTHER_FACTS = {"name": "佐藤 次郎", "birth_date": "1975-07-07", "sex": "1", "address": "大阪府大阪市北区1-1"}
OTHER_DRUG = "ワルファリンK錠1mg"
FAMILY_DRUG = "カロナール錠200"
OTHER_CLINIC = "大阪北クリニック"
EXPENSE_YEAR = TODAY.year - 1
CHECKUP_COLUMNS = ["insurer_number", "symbol", "number", "branch", "checked_on", "hba1c", "systolic"]

READS = {  # path → the access log's ``what``
    "/v1/me/eligibility": "eligibility",
    "/v1/me/medications": "medications",
    "/v1/me/checkups": "checkups",
    "/v1/me/procedures": "procedures",
    "/v1/me/access-log": "access_log",
    "/v1/me/consents": "consents",
    "/v1/me/expenses": "expenses",
    "/v1/me/expenses/export": "expenses_export",
}
EVERY = [*READS, "/v1/me/consents/withdraw", "/v1/me/suspension"]


def expense(number: str, month: int, facility_code: str, name: str, care_kind: str, paid: int) -> dict[str, Any]:
    return {
        "insurer_number": INSURER_A,
        "symbol": "123",
        "number": number,
        "branch": "00",
        "service_month": f"{EXPENSE_YEAR}-{month:02d}",
        "facility_code": facility_code,
        "facility_name": name,
        "care_kind": care_kind,
        "days": "2",
        "total_cost": str(paid * 10 // 3),
        "patient_paid": str(paid),
    }


MY_EXPENSES = [  # 山田 太郎: two months at the clinic, one at the pharmacy
    expense("4567", 3, FACILITY_CODE, "しかく内科クリニック", "2", 3000),
    expense("4567", 4, FACILITY_CODE, "しかく内科クリニック", "2", 1500),
    expense("4567", 4, PHARMACY_CODE, "さくら薬局", "4", 900),
]


def checkup(branch: str, number: str, days_ago: int, hba1c: str) -> dict[str, Any]:
    return {
        "insurer_number": INSURER_A,
        "symbol": "123",
        "number": number,
        "branch": branch,
        "checked_on": (TODAY - dt.timedelta(days=days_ago)).isoformat(),
        "hba1c": hba1c,
        "systolic": "120",
    }


@pytest.fixture
def cards(client: TestClient, tokens: dict[str, str], test_ca: TestCA) -> dict[str, IssuedCertificate]:
    """山田 太郎 (本人, branch 00) with 山田 花子 (家族, 01) on his card; 佐藤 次郎 on another card."""
    other = {k: OTHER_FACTS[k] for k in ("name", "birth_date", "sex", "address")}
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [
                person(),
                family_member(),
                person(number="9999", name_kana="サトウ ジロウ", **other),
            ]
        ),
    )
    upload(
        client,
        tokens["insurer"],
        csv_bytes(
            MED_COLUMNS,
            drug_history(
                med(branch="01", drug_code="620000001", drug_name=FAMILY_DRUG),
                med(number="9999", drug_code="620000002", drug_name=OTHER_DRUG),
            ),
        ),
        kind="medications",
    )
    upload(
        client,
        tokens["insurer"],
        csv_bytes(
            CHECKUP_COLUMNS,
            [
                checkup("00", "4567", 200, "5.6"),
                checkup("00", "4567", 6 * 365, "5.1"),  # outside the 5 years
                checkup("01", "4567", 100, "7.7"),
                checkup("00", "9999", 100, "8.8"),
            ],
        ),
        kind="checkups",
    )
    theirs_expense = expense("9999", 3, "2710000007", OTHER_CLINIC, "2", 7000)
    sent = upload(
        client, tokens["insurer"], csv_bytes(list(EXPENSE_COLUMNS), [*MY_EXPENSES, theirs_expense]), kind="expenses"
    )
    assert sent["rejected"] == 0, sent
    mine, theirs = test_ca.issue_auth_certificate(), test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], mine).status_code == 200
    assert register(client, tokens["reception"], theirs, OTHER_FACTS).status_code == 200
    return {"mine": mine, "theirs": theirs}


def me_challenge(client: TestClient) -> dict[str, Any]:
    r = client.post("/v1/me/challenges")
    assert r.status_code == 200, r.text
    return dict(r.json())


def me(
    client: TestClient,
    path: str,
    card: IssuedCertificate,
    *,
    ch: dict[str, Any] | None = None,
    key: Any = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    ch = ch or me_challenge(client)
    body = {
        "challenge_id": ch["challenge_id"],
        "certificate": b64(card.der),
        "signature": sign(key or card.private_key, ch["nonce"]),
        **extra,
    }
    return client.post(path, json=body, headers=headers or {})


def extra_for(path: str) -> dict[str, Any]:
    if path.endswith("/withdraw"):
        return {"consent_id": 1}
    if "/expenses" in path:
        return {"year": EXPENSE_YEAR}
    return {}


def log_rows(session_factory: Any, insured_id: int | None = None) -> list[AccessLogEntry]:
    with session_factory() as s:
        query = sa.select(AccessLogEntry).order_by(AccessLogEntry.id)
        if insured_id is not None:
            query = query.where(AccessLogEntry.insured_id == insured_id)
        return list(s.execute(query).scalars())


def insured_id(session_factory: Any, number: str, branch: str = "00") -> int:
    with session_factory() as s:
        return int(
            s.execute(sa.select(Insured.id).where(Insured.number_norm == number, Insured.branch == branch)).scalar_one()
        )


@pytest.mark.parametrize("path", list(READS))
def test_each_read_answers_only_own_data_and_lands_in_the_access_log(
    client: TestClient, cards: dict[str, IssuedCertificate], session_factory: Any, path: str
) -> None:
    mine, theirs = insured_id(session_factory, "4567"), insured_id(session_factory, "9999")
    before_theirs = len(log_rows(session_factory, theirs))
    r = me(client, path, cards["mine"], **extra_for(path))
    assert r.status_code == 200, r.text
    family = () if path == "/v1/me/eligibility" else ("花子",)  # the 本人 sees who is on the card
    for foreign in ("佐藤", "サトウ", OTHER_DRUG, FAMILY_DRUG, OTHER_FACTS["address"], OTHER_CLINIC, *family):
        assert foreign not in r.text
    entries = [e for e in log_rows(session_factory, mine) if e.role == "patient"]
    assert [(e.what, e.query_kind, e.facility_code) for e in entries] == [(READS[path], "self", None)]
    assert len(log_rows(session_factory, theirs)) == before_theirs  # nothing of the other person was read


@pytest.mark.parametrize("path", EVERY)
def test_a_challenge_signed_by_another_cards_key_gets_nothing(
    client: TestClient, cards: dict[str, IssuedCertificate], session_factory: Any, path: str
) -> None:
    before = len(log_rows(session_factory))
    for key in (another_key(cards["mine"]), cards["theirs"].private_key):
        r = me(client, path, cards["mine"], key=key, **extra_for(path))
        assert r.status_code == 401 and problem_code(r) == "signature_invalid"
        assert "entries" not in r.text and "items" not in r.text
    assert len(log_rows(session_factory)) == before
    with session_factory() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(CardSuspension)).scalar_one() == 0


@pytest.mark.parametrize("path", EVERY)
def test_a_reused_challenge_gets_nothing(
    client: TestClient, cards: dict[str, IssuedCertificate], session_factory: Any, path: str
) -> None:
    ch = me_challenge(client)
    first = me(client, "/v1/me/access-log", cards["mine"], ch=ch)
    assert first.status_code == 200
    before = len(log_rows(session_factory))
    r = me(client, path, cards["mine"], ch=ch, **extra_for(path))
    assert problem_code(r) == "challenge_reused"
    assert len(log_rows(session_factory)) == before


def test_challenges_do_not_cross_doors(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate]
) -> None:
    facility_ch = challenge(client, tokens["reception"])
    r = me(client, "/v1/me/medications", cards["mine"], ch=facility_ch)  # no token: not a patient challenge
    assert problem_code(r) == "challenge_unknown"
    r = by_card(client, tokens["reception"], cards["mine"], ch=me_challenge(client))
    assert problem_code(r) == "challenge_unknown"
    # at the kiosk, with its token, the facility's own challenge serves and the read names the facility
    r = me(
        client,
        "/v1/me/medications",
        cards["mine"],
        ch=challenge(client, tokens["reception"]),
        headers=auth(tokens["reception"]),
    )
    assert r.status_code == 200, r.text


def test_an_unregistered_card_gets_nothing(client: TestClient, cards: Any, test_ca: TestCA) -> None:
    r = me(client, "/v1/me/medications", test_ca.issue_auth_certificate())
    assert problem_code(r) == "card_not_registered"


def test_eligibility_periods_and_family_for_the_honnin(
    client: TestClient, cards: dict[str, IssuedCertificate], session_factory: Any
) -> None:
    r = me(client, "/v1/me/eligibility", cards["mine"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["insurer_number"], body["branch"]) == (INSURER_A, "00")
    assert [(p["valid_from"], p["current"], p["personal_family"]) for p in body["periods"]] == [
        ("2024-04-01", True, "1")
    ]
    assert [(f["branch"], f["name"], f["birth_date"]) for f in body["family"]] == [("01", "山田 花子", "1982-02-02")]
    assert "address" not in body["family"][0]
    family = insured_id(session_factory, "4567", "01")
    assert [(e.what, e.query_kind, e.role) for e in log_rows(session_factory, family)] == [
        ("eligibility", "family", "patient")
    ]
    # before the period began: nothing current, no family
    r = me(client, "/v1/me/eligibility", cards["mine"], as_of="2020-01-01")
    assert [p["current"] for p in r.json()["periods"]] == [False] and r.json()["family"] == []


def test_a_family_member_sees_no_one_else(
    client: TestClient, tokens: dict[str, str], cards: Any, test_ca: TestCA
) -> None:
    hanako = test_ca.issue_auth_certificate()
    facts = {"name": "山田 花子", "birth_date": "1982-02-02", "sex": "2", "address": FACTS["address"]}
    assert register(client, tokens["reception"], hanako, facts).status_code == 200
    r = me(client, "/v1/me/eligibility", hanako)
    assert r.status_code == 200 and r.json()["family"] == [] and "太郎" not in r.text
    r = me(client, "/v1/me/medications", hanako)
    assert [i["drug_name"] for i in r.json()["items"]] == [FAMILY_DRUG]


def test_medications_and_checkups_five_years(client: TestClient, cards: dict[str, IssuedCertificate]) -> None:
    r = me(client, "/v1/me/medications", cards["mine"])
    assert [i["drug_name"] for i in r.json()["items"]] == ["ロキソプロフェンNa錠60mg", "アムロジピン錠5mg"]
    assert r.json()["since"] == TODAY.replace(year=TODAY.year - 5).isoformat()
    r = me(client, "/v1/me/checkups", cards["mine"])
    assert [i["results"]["hba1c"] for i in r.json()["items"]] == [5.6]
    assert r.json()["since"] == TODAY.replace(year=TODAY.year - 5).isoformat()


def test_access_log_names_the_facility_role_and_consent(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate]
) -> None:
    r = by_card(client, tokens["physician"], cards["mine"])
    visit = r.json()["visit_id"]
    consent_id = consent(client, tokens["physician"], visit, drug=True).json()["consent_id"]
    assert client.get(f"/v1/visits/{visit}/medications", headers=auth(tokens["physician"])).status_code == 200
    entries = me(client, "/v1/me/access-log", cards["mine"]).json()["entries"]
    read = next(e for e in entries if e["what"] == "medications")
    assert (read["facility_code"], read["facility_name"], read["role"], read["consent_id"], read["emergency"]) == (
        FACILITY_CODE,
        "しかく内科クリニック",
        "physician",
        consent_id,
        False,
    )
    assert entries[0]["what"] == "access_log" and entries[0]["role"] == "patient"  # this read, first


def test_consents_listed_and_a_live_one_withdrawn(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate]
) -> None:
    visit = by_card(client, tokens["physician"], cards["mine"]).json()["visit_id"]
    consent_id = consent(client, tokens["physician"], visit, drug=True).json()["consent_id"]
    other_visit = by_card(client, tokens["physician"], cards["theirs"]).json()["visit_id"]
    theirs = consent(client, tokens["physician"], other_visit, drug=True).json()["consent_id"]
    listed = me(client, "/v1/me/consents", cards["mine"]).json()["consents"]
    assert [(c["consent_id"], c["state"], c["facility_name"]) for c in listed] == [
        (consent_id, "live", "しかく内科クリニック")
    ]
    # another person's consent does not exist here
    r = me(client, "/v1/me/consents/withdraw", cards["mine"], consent_id=theirs)
    assert r.status_code == 404
    r = me(client, "/v1/me/consents/withdraw", cards["mine"], consent_id=consent_id)
    assert r.status_code == 200 and r.json()["state"] == "withdrawn" and r.json()["ended_at"]
    r = client.get(f"/v1/visits/{visit}/medications", headers=auth(tokens["physician"]))
    assert problem_code(r) == "consent_expired"
    assert me(client, "/v1/me/consents/withdraw", cards["mine"], consent_id=consent_id).status_code == 422
    # the other person's consent is untouched
    assert client.get(f"/v1/visits/{other_visit}/medications", headers=auth(tokens["physician"])).status_code == 200


def test_suspension_refuses_the_card_everywhere_until_resumed(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate], session_factory: Any
) -> None:
    r = me(client, "/v1/me/suspension", cards["mine"])
    assert r.status_code == 200 and r.json()["status"] == "suspended", r.text
    assert problem_code(by_card(client, tokens["reception"], cards["mine"])) == "card_suspended"
    assert problem_code(register(client, tokens["reception"], cards["mine"])) == "card_suspended"
    for path in EVERY:
        assert problem_code(me(client, path, cards["mine"], **extra_for(path))) == "card_suspended"
    ch = me_challenge(client)
    fhir = client.post(
        "/fhir/R4/AuditEvent/_search",
        data={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(cards["mine"].der),
            "signature": sign(cards["mine"].private_key, ch["nonce"]),
        },
    )
    assert fhir.status_code == 403 and "card_suspended" in fhir.text
    # the other person's card is not touched
    assert by_card(client, tokens["reception"], cards["theirs"]).status_code == 200
    mine = insured_id(session_factory, "4567")
    with transaction(session_factory) as s:
        assert resume_person(s, mine, by="operator:test") == 1
    assert by_card(client, tokens["reception"], cards["mine"]).status_code == 200
    with session_factory() as s:
        row = s.execute(sa.select(CardSuspension)).scalar_one()
    assert (row.suspended_by, row.resumed_by, row.resumed_at is not None) == ("patient", "operator:test", True)
    assert {"card_suspended", "card_resumed"} <= {e.what for e in log_rows(session_factory, mine)}


@pytest.fixture
def emergency_hospital(session_factory: Any) -> None:
    with transaction(session_factory) as s:
        set_emergency(s, FACILITY_CODE, True)


def emergency(
    client: TestClient, token: str, card: IssuedCertificate, reason: str | None = "意識障害で救急搬送"
) -> Any:
    ch = challenge(client, token)
    body: dict[str, Any] = {"challenge_id": ch["challenge_id"], "certificate": b64(card.der)}
    if reason is not None:
        body["reason"] = reason
    return client.post("/v1/emergency/medications", headers=auth(token), json=body)


def test_emergency_reading_without_consent_or_pin(
    client: TestClient,
    tokens: dict[str, str],
    cards: dict[str, IssuedCertificate],
    emergency_hospital: None,
    session_factory: Any,
) -> None:
    r = emergency(client, tokens["physician"], cards["mine"])
    assert r.status_code == 200, r.text
    # the same 5 years as every drug read: the 6-year-old one is out
    assert [i["drug_name"] for i in r.json()["items"]] == ["ロキソプロフェンNa錠60mg", "アムロジピン錠5mg"]
    with session_factory() as s:
        row = s.execute(sa.select(EmergencyRead)).scalar_one()
    assert (row.reason, row.role, row.facility_code) == ("意識障害で救急搬送", "physician", FACILITY_CODE)
    entries = me(client, "/v1/me/access-log", cards["mine"]).json()["entries"]
    read = next(e for e in entries if e["emergency"])
    assert (read["what"], read["role"], read["query_kind"], read["consent_id"]) == (
        "medications",
        "physician",
        "emergency",
        None,
    )


def test_emergency_reading_is_for_physicians_of_emergency_hospitals(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate], emergency_hospital: None
) -> None:
    for role in ("reception", "dentist"):
        assert problem_code(emergency(client, tokens[role], cards["mine"])) == "forbidden_role"
    assert problem_code(emergency(client, tokens["pharmacist"], cards["mine"])) == "forbidden_role"
    assert emergency(client, tokens["physician"], cards["mine"], reason=None).status_code == 422


def test_emergency_reading_elsewhere_is_forbidden(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate]
) -> None:
    assert problem_code(emergency(client, tokens["physician"], cards["mine"])) == "forbidden_role"


def test_emergency_reading_is_rate_limited(
    client: TestClient, tokens: dict[str, str], cards: dict[str, IssuedCertificate], emergency_hospital: None
) -> None:
    client.app.state.shikaku.limiter.rules["emergency"] = Rule("emergency", 3600, 2, 0)  # type: ignore[attr-defined]
    assert [emergency(client, tokens["physician"], cards["mine"]).status_code for _ in range(3)] == [200, 200, 429]


def test_patient_challenges_are_rate_limited_per_client_address(client: TestClient) -> None:
    client.app.state.shikaku.limiter.rules["me_challenge"] = Rule("me_challenge", 60, 3, 0)  # type: ignore[attr-defined]
    codes = [client.post("/v1/me/challenges").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_expenses_by_month_and_facility_with_totals(client: TestClient, cards: dict[str, IssuedCertificate]) -> None:
    r = me(client, "/v1/me/expenses", cards["mine"], year=EXPENSE_YEAR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(m["service_month"], m["patient_paid"]) for m in body["months"]] == [
        (f"{EXPENSE_YEAR}-03", 3000),
        (f"{EXPENSE_YEAR}-04", 2400),
    ]
    assert {f["facility_name"]: f["patient_paid"] for f in body["facilities"]} == {
        "しかく内科クリニック": 4500,
        "さくら薬局": 900,
    }
    assert body["total"]["patient_paid"] == 5400
    other_year = me(client, "/v1/me/expenses", cards["mine"], year=EXPENSE_YEAR - 1).json()
    assert other_year["items"] == [] and other_year["total"]["patient_paid"] == 0


def test_expenses_export_xlsx_opens_with_the_rows_and_totals(
    client: TestClient, cards: dict[str, IssuedCertificate], tmp_path: Any
) -> None:
    r = me(client, "/v1/me/expenses/export", cards["mine"], year=EXPENSE_YEAR, format="xlsx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert r.headers["content-disposition"] == f'attachment; filename="iryouhi_{EXPENSE_YEAR}.xlsx"'
    path = tmp_path / "x.xlsx"
    path.write_bytes(r.content)
    book = openpyxl.load_workbook(path)
    form = book["医療費集計フォーム"]
    assert form["C3"].value == 5400
    rows = [tuple(c.value for c in row[:8]) for row in form.iter_rows(min_row=9) if row[0].value is not None]
    assert rows == [
        (1, "山田 太郎", "しかく内科クリニック", "該当する", None, None, None, 4500),
        (2, "山田 太郎", "さくら薬局", None, "該当する", None, None, 900),
    ]
    detail = [tuple(c.value for c in row) for row in book["医療費通知情報"].iter_rows(min_row=5)]
    assert detail[-1] == ("合計", None, None, None, 6, 18000, 5400)
    assert OTHER_CLINIC not in str(detail)


def test_expenses_export_csv(client: TestClient, cards: dict[str, IssuedCertificate]) -> None:
    r = me(client, "/v1/me/expenses/export", cards["mine"], year=EXPENSE_YEAR, format="csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="iryouhi_{EXPENSE_YEAR}.csv"'
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("診療年月,") and len(lines) == 1 + len(MY_EXPENSES) + 1
    assert lines[-1] == "合計,,,,6,18000,5400"
    assert OTHER_CLINIC not in r.content.decode("utf-8-sig")
