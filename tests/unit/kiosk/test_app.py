"""The kiosk's local web layer: headers, no echo of the PIN, staff endpoints over the board."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinic_terminal.kiosk.app import create_kiosk_app
from clinic_terminal.kiosk.staff import ReceptionBoard, StaffService, parse_batch_csv
from schemas.card import CheckupItem, Checkups, MedicationItem, Medications
from schemas.eligibility import ByNumberQuery
from tests.unit.kiosk.conftest import InMemoryServer, Kiosk, MakeKiosk


class StaffServer(InMemoryServer):
    def medications(self, visit_id: str) -> Medications:
        item = MedicationItem(dispensed_on=dt.date(2026, 10, 1), facility_code="1341234563", drug_code="620000001",
                              drug_name="ロキソプロフェンNa錠60mg", quantity=21, unit="錠", days=7)
        return Medications(visit_id=visit_id, since=dt.date(2023, 11, 28), consent_id=1, items=[item])

    def checkups(self, visit_id: str) -> Checkups:
        item = CheckupItem(checked_on=dt.date(2025, 6, 1), results={"bmi": 22.1}, urine_protein="-")
        return Checkups(visit_id=visit_id, since=dt.date(2021, 11, 28), consent_id=1, items=[item])


@pytest.fixture
def kiosk(make_kiosk: MakeKiosk) -> Kiosk:
    return make_kiosk()


def _client(k: Kiosk, role: str = "reception") -> Iterator[TestClient]:
    board = ReceptionBoard()
    k.flow._on_check = board.add  # the board the staff screen reads
    server = StaffServer(linked=k.server.linked)
    k.flow._server = server
    staff = StaffService(server, board, role=role)  # type: ignore[arg-type]
    with TestClient(create_kiosk_app(k.flow, staff, board)) as client:
        yield client


@pytest.fixture
def client(kiosk: Kiosk) -> Iterator[TestClient]:
    yield from _client(kiosk)


@pytest.fixture
def pharmacist(kiosk: Kiosk) -> Iterator[TestClient]:
    yield from _client(kiosk, "pharmacist")


def _complete_check(client: TestClient, consent: dict[str, Any]) -> str:
    assert client.post("/api/kiosk/read").json()["screen"] == "choose_method"
    assert client.post("/api/kiosk/method", json={"method": "pin"}).json()["screen"] == "pin"
    assert client.post("/api/kiosk/pin", json={"pin": "1234"}).json()["screen"] == "consent"
    assert client.post("/api/kiosk/consent", json=consent).json()["screen"] == "done"
    (check,) = client.get("/api/staff/checks").json()
    return str(check["result"]["visit_id"])


def test_every_response_is_no_store(client: TestClient) -> None:
    for method, path in [("GET", "/"), ("GET", "/staff"), ("GET", "/static/kiosk.js"), ("GET", "/api/kiosk/state"),
                         ("POST", "/api/kiosk/read"), ("GET", "/api/staff/checks"), ("GET", "/missing"),
                         ("POST", "/api/kiosk/pin")]:
        response = client.request(method, path)
        assert response.headers["cache-control"].startswith("no-store"), path
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_pages_use_no_browser_storage(client: TestClient) -> None:
    for name in ("common.js", "kiosk.js", "staff.js", "visit.js", "portal.js"):
        text = client.get(f"/static/{name}").text
        for api in ("localStorage", "sessionStorage", "indexedDB", "document.cookie"):
            assert api not in text, (name, api)


def test_a_bad_pin_body_is_not_echoed(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/api/kiosk/read")
    client.post("/api/kiosk/method", json={"method": "pin"})
    response = client.post("/api/kiosk/pin", json={"pin": "98765432109876543"})
    assert response.status_code == 422
    assert "98765432109876543" not in response.text
    assert response.json()["code"] == "validation_error"
    response = client.post("/api/kiosk/pin", json={"pin": "4321"})
    assert response.json()["code"] == "pin_wrong"
    assert "4321" not in response.text
    assert not any("4321" in r.getMessage() for r in caplog.records)


def test_check_appears_on_the_staff_board_with_labels(client: TestClient) -> None:
    _complete_check(client, {"drug": True})
    (check,) = client.get("/api/staff/checks").json()
    assert check["method"] == "pin"
    insured = check["result"]["insured"]
    assert (insured["name"], insured["name_kana"], insured["copay_ratio"]) == ("試験 花子", "シケン ハナコ", 30)
    assert check["result"]["validity_label"] == "有効"
    assert check["consent"]["drug"] is True and check["consent"]["checkup"] is False


def test_reception_role_cannot_open_the_drug_history(client: TestClient) -> None:
    visit = _complete_check(client, {"drug": True})
    assert client.get("/api/staff/config").json()["medications"] is False
    response = client.get(f"/api/staff/visits/{visit}/medications")
    assert response.status_code == 403


def test_pharmacist_sees_the_drug_history_of_todays_visit_only(pharmacist: TestClient) -> None:
    visit = _complete_check(pharmacist, {"drug": True})
    config = pharmacist.get("/api/staff/config").json()
    assert (config["medications"], config["checkups"]) == (True, False)
    body = pharmacist.get(f"/api/staff/visits/{visit}/medications").json()
    assert body["items"][0]["drug_name"] == "ロキソプロフェンNa錠60mg"
    assert pharmacist.get("/api/staff/visits/not-today/medications").status_code == 404
    assert pharmacist.get(f"/api/staff/visits/{visit}/checkups").status_code == 403


def test_by_number_check_goes_on_the_board(client: TestClient) -> None:
    response = client.post("/api/staff/by-number", json={
        "insurer_number": "01130012", "symbol": "１２３", "number": "４５６７", "branch": "00",
        "birth_date": "19850615", "include_limit_certificate": True,
    })
    assert response.status_code == 200, response.text
    assert response.json()["method"] == "number"
    assert response.json()["result"]["limit_certificate"]["classification_label"] == "ウ"
    bad = client.post("/api/staff/by-number", json={"insurer_number": "123", "number": "1", "birth_date": "x"})
    assert bad.status_code == 422
    assert "行目" not in bad.text  # one record: each field's problem, no row number
    assert bad.json()["fields"] == {"insurer_number": "8桁の数字で入力してください（国民健康保険は6桁）",
                                    "birth_date": "日付を入力してください（例: 1980-04-01）"}


def test_batch_from_csv_is_sent_and_listed(client: TestClient) -> None:
    csv = "insurer_number,symbol,number,branch,birth_date\n01130012,１２３,４５６７,00,1985-06-15\n"
    response = client.post("/api/staff/batches", json={"csv": csv, "label": "明日の予約", "as_of": "2026-11-29"})
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 1
    assert [b["label"] for b in client.get("/api/staff/batches").json()] == ["明日の予約"]
    assert client.get("/api/staff/batches/unknown").status_code == 404


def test_batch_csv_problems_name_the_rows() -> None:
    with pytest.raises(ValueError, match="3行目"):
        parse_batch_csv("保険者番号,記号,番号,枝番,生年月日\n01130012,1,2,00,1980-01-01\n0113001,1,2,00,1980-01-01\n")
    queries = parse_batch_csv("\ufeff保険者番号,記号,番号,枝番,生年月日\n01130012,1,2,00,19800101\n",
                              default_as_of=dt.date(2026, 11, 29))
    assert queries[0].birth_date == dt.date(1980, 1, 1)
    assert queries[0].as_of == dt.date(2026, 11, 29)


def test_board_forgets_at_the_end_of_the_day(kiosk: Kiosk) -> None:
    now = [dt.datetime(2026, 11, 28, 14, 0, tzinfo=dt.UTC)]  # 23:00 JST
    board = ReceptionBoard(now=lambda: now[0])
    result = kiosk.server.by_number(ByNumberQuery(insurer_number="01130012", number="1",
                                                  birth_date=dt.date(1980, 1, 1)))
    board.add_number_check(result)
    assert len(board.records()) == 1
    now[0] += dt.timedelta(hours=2)  # 01:00 JST the next day
    assert board.records() == []
