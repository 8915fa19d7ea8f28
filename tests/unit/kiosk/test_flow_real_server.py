"""The kiosk flow against the REAL central server app (both backends), through the terminal client.

The server runs in process (``TestClient``); the kiosk's ``CardClient`` reaches it through a small
httpx transport, so the wire format, the challenge/signature check, first-use linking, consent and
the drug history are the server's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.client import CardClient
from clinic_terminal.kiosk.flow import CheckFlow, CheckRecord, ConsentChoice
from clinic_terminal.kiosk.staff import ReceptionBoard, StaffService
from shikaku_server.eligibility.service import today_jst
from testbed.card_emulator import BasicFactsRecord, MyNumberCardEmulator, assert_no_violations, build_card
from testbed.pki import TestCA
from tests.conftest import auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person

FACTS = BasicFactsRecord(name="山田 太郎", address="東京都千代田区霞が関1-2-2", birth_date=dt.date(1980, 4, 1), sex="1")
MEDICATION_COLUMNS = ["insurer_number", "symbol", "number", "branch", "dispensed_on", "facility_code", "drug_code",
                      "drug_name", "quantity", "unit", "days"]


class ViaTestClient(httpx.BaseTransport):
    """An httpx transport that hands each request to a Starlette ``TestClient``."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._client.request(request.method, request.url.raw_path.decode(), content=request.read(),
                                        headers=dict(request.headers))
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)


def _upload(client: TestClient, token: str, kind: str, body: bytes) -> None:
    r = client.post(f"/v1/uploads?kind={kind}", content=body, headers={**auth(token), "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 0, r.text


@pytest.fixture
def card(test_ca: TestCA) -> Iterator[MyNumberCardEmulator]:
    emulator = build_card(test_ca, pin="1234", facts=FACTS)
    yield emulator
    assert_no_violations(emulator)


@pytest.fixture
def loaded(client: TestClient, tokens: dict[str, str]) -> None:
    _upload(client, tokens["insurer"], "eligibility", eligibility_csv([person()]))
    today = today_jst()
    _upload(client, tokens["insurer"], "medications", csv_bytes(MEDICATION_COLUMNS, [{
        "insurer_number": INSURER_A, "symbol": "１２３", "number": "４５６７", "branch": "00",
        "dispensed_on": (today - dt.timedelta(days=30)).isoformat(), "facility_code": "1341234563",
        "drug_code": "620000001", "drug_name": "アムロジピン錠5mg", "quantity": "28", "unit": "錠", "days": "28",
    }]))


def test_first_use_pin_check_consent_and_drug_history_on_the_real_server(
    client: TestClient, tokens: dict[str, str], card: MyNumberCardEmulator, loaded: None
) -> None:
    reader = InProcessReader()
    reader.insert(card)
    records: list[CheckRecord] = []
    transport = ViaTestClient(client)
    server = CardClient("http://testserver", tokens["physician"], transport=transport)
    try:
        flow = CheckFlow(connect_card=reader.connect, server=server, on_check=records.append)
        assert flow.read_card().name == "choose_method"
        flow.choose("pin")
        assert flow.submit_pin("0000").tries_left == 2
        screen = flow.submit_pin("1234")
        assert (screen.name, screen.code) == ("register", "card_not_registered")
        screen = flow.submit_registration("1234")
        assert screen.name == "consent", screen
        assert screen.patient_name == "山田 太郎"
        assert flow.submit_consent(ConsentChoice(drug=True, checkup=True)).name == "done"

        (record,) = records
        assert record.result.usable and record.consent is not None and record.consent.drug
        assert record.result.insured is not None and record.result.insured.copay_ratio == 30
        visit = record.result.visit_id
        assert visit is not None

        board = ReceptionBoard()
        board.add(record)
        staff = StaffService(server, board, role="physician")
        meds = staff.medications(visit)
        assert [m.drug_name for m in meds.items] == ["アムロジピン錠5mg"]

        # The same card again: already linked, straight to consent.
        flow.reset()
        flow.read_card()
        flow.choose("pin")
        assert flow.submit_pin("1234").name == "consent"
    finally:
        server.close()


def test_a_course_of_care_from_the_visiting_staffs_page_on_the_real_server(
    client: TestClient, tokens: dict[str, str], card: MyNumberCardEmulator, loaded: None
) -> None:
    """居宅同意取得型 through the terminal: the card flow takes the course's consent (setting home,
    its extent), the page lists the course and re-checks it; a later 目視確認 with 「同意しない」 ends
    it, and the re-check says so in Japanese."""
    from clinic_terminal.kiosk.homecare import HomeCareService
    from schemas.homecare import VisualCheckRequest

    reader = InProcessReader()
    reader.insert(card)
    server = CardClient("http://testserver", tokens["physician"], transport=ViaTestClient(client))
    try:
        flow = CheckFlow(connect_card=reader.connect, server=server)
        flow.read_card()
        flow.choose("pin")
        flow.submit_pin("1234")
        assert flow.submit_registration("1234").name == "consent"
        choice = ConsentChoice(drug=True, setting="home", online_care=False)
        assert flow.submit_consent(choice).name == "done"
        page = HomeCareService(server)
        (course,) = page.courses()
        assert course["name"] == "山田 太郎" and course["confirmation"] == "マイナ保険証（暗証番号）"
        assert [c["care"] for c in course["cares"]] == ["visit"]
        ok = page.recheck(course["visit_id"], "visit")
        assert ok["ok"] and ok["headline"] == "資格確認できました（有効・3割負担）"
        outside = page.recheck(course["visit_id"], "online")
        assert outside["code"] == "consent_required"

        seen = page.visual(VisualCheckRequest.model_validate({
            "confirmed_by": "訪問 花子",
            "insurance": {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00",
                          "birth_date": "1980-04-01"},
        }))
        assert seen["usable"] and seen["visit_id"]
        page.consent(seen["visit_id"], ConsentChoice(setting="outpatient"))  # 「同意しない」: the course refused
        assert page.courses() == []
        refused = page.recheck(course["visit_id"], "visit")
        assert (refused["ok"], refused["code"]) == (False, "consent_required")
        assert "同意がありません" in refused["headline"]
    finally:
        server.close()
