"""The staff board's 「受付対応」 rows through the kiosk's HTTP layer: outage rows and referrals."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clinic_terminal.kiosk.app import create_kiosk_app
from clinic_terminal.kiosk.reception import ReceptionNotices
from clinic_terminal.kiosk.staff import ReceptionBoard, StaffService
from clinic_terminal.outage import OutageJournal, Rechecker
from tests.unit.kiosk.conftest import InMemoryServer, Kiosk, MakeKiosk

NUMBER = {"insurer_number": "01130012", "symbol": "１２３", "number": "４５６７", "branch": "00",
          "birth_date": "1985-06-15"}


@dataclass
class Desk:
    client: TestClient
    kiosk: Kiosk
    journal: OutageJournal
    rechecker: Rechecker


@pytest.fixture
def desk(make_kiosk: MakeKiosk, tmp_path: Path) -> Iterator[Desk]:
    k = make_kiosk()
    journal = OutageJournal(tmp_path)
    notices = ReceptionNotices(journal)
    board = ReceptionBoard()
    k.flow._on_check = board.add
    k.flow._on_referral = notices.refer
    k.flow._on_card_checked = notices.remember_card
    staff = StaffService(k.server, board, outage=notices.journal_number)
    rechecker = Rechecker(journal, k.server, sources=("kiosk", "staff"))
    with TestClient(create_kiosk_app(k.flow, staff, board, notices=notices)) as client:
        yield Desk(client, k, journal, rechecker)
    journal.close()


def _card_check(client: TestClient) -> str:
    client.post("/api/kiosk/reset")
    assert client.post("/api/kiosk/read").json()["screen"] == "choose_method"
    client.post("/api/kiosk/method", json={"method": "pin"})
    return str(client.post("/api/kiosk/pin", json={"pin": "1234"}).json()["screen"])


def _no_my_number(payload: object) -> None:
    assert not re.search(r"(?<!\d)\d{12}(?!\d)", json.dumps(payload, ensure_ascii=False))


def test_outage_rows_then_their_re_check_outcomes_reach_the_staff_board(desk: Desk) -> None:
    server: InMemoryServer = desk.kiosk.server
    server.down = True
    assert _card_check(desk.client) == "outage"
    r = desk.client.post("/api/staff/by-number", json=NUMBER)
    assert r.status_code == 202
    assert r.json()["outage"] is True
    assert r.json()["message"].startswith("資格確認できず — 申立書で受付")

    rows = desk.client.get("/api/staff/notices").json()
    _no_my_number(rows)
    assert [(row["kind"], row["label"], row["status_label"]) for row in rows] == [
        ("outage", "資格確認できず — 申立書で受付", "後日確認: 待機中（サーバー復旧後に自動で確認）"),
    ] * 2
    by_number, by_card = sorted(rows, key=lambda row: row["card"] is not None)
    assert by_number["number"]["number"] == "４５６７" and by_number["source"] == "staff"
    assert by_card["number"] is None and by_card["method"] == "pin"
    assert by_card["verified"] == "暗証番号はカードで確認済み"
    assert re.fullmatch(r"[0-9a-f]{16}", by_card["card"]["fingerprint"])
    assert by_card["card"]["serial"] and by_card["card"]["issuer"]
    assert desk.client.get("/api/staff/checks").json() == []

    still_away = desk.rechecker.run_once()
    # the card was never checked here before: no number to re-check it by, server or not
    assert (still_away.unreachable, still_away.resolved, still_away.needs_card) == (True, 0, 1)
    server.down = False
    done = desk.rechecker.run_once()
    assert (done.unreachable, done.resolved, done.needs_card) == (False, 1, 0)
    statuses = {row["source"]: row["status_label"] for row in desk.client.get("/api/staff/notices").json()}
    assert statuses == {"staff": "後日確認: 有効", "kiosk": "後日確認: カード再提示が必要"}

    # the card comes back and is checked: the kiosk remembers its number and the entry is re-checked
    assert _card_check(desk.client) == "consent"
    desk.rechecker.run_once()
    rows = desk.client.get("/api/staff/notices").json()
    _no_my_number(rows)
    card_row = next(row for row in rows if row["source"] == "kiosk")
    assert card_row["status_label"] == "後日確認: 有効"
    assert card_row["result"]["insured"]["name"] == "試験 花子"
    assert card_row["number"]["number"] == "４５６７"
    visit = dt.date.fromisoformat(card_row["visit_date"])
    assert [q.as_of for q in server.number_queries] == [visit, visit]  # both re-checks as of the visit date


def test_the_same_card_tried_again_during_the_outage_is_one_row(desk: Desk) -> None:
    desk.kiosk.server.down = True
    assert _card_check(desk.client) == "outage"
    assert _card_check(desk.client) == "outage"
    assert len(desk.client.get("/api/staff/notices").json()) == 1


def test_a_blocked_pin_reaches_reception(desk: Desk) -> None:
    desk.client.post("/api/kiosk/read")
    desk.client.post("/api/kiosk/method", json={"method": "pin"})
    for _ in range(3):
        screen = desk.client.post("/api/kiosk/pin", json={"pin": "0000"}).json()
    assert screen["code"] == "pin_blocked"
    (row,) = desk.client.get("/api/staff/notices").json()
    assert (row["kind"], row["label"], row["status_label"]) == (
        "referral", "暗証番号ロック — 保険証・資格確認書で確認", None)
    assert row["card"]["fingerprint"]


def test_without_a_journal_an_unreachable_server_is_still_an_error_for_staff(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(down=True)
    board = ReceptionBoard()
    staff = StaffService(k.server, board)
    with TestClient(create_kiosk_app(k.flow, staff, board)) as client:
        r = client.post("/api/staff/by-number", json=NUMBER)
    assert (r.status_code, r.json()["code"]) == (502, "unavailable")


def test_a_journal_that_cannot_write_still_leaves_the_row_and_the_screen(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(desk.journal, "record_card", disk_full)
    monkeypatch.setattr(desk.journal, "record_number", disk_full)
    desk.kiosk.server.down = True
    assert _card_check(desk.client) == "outage"
    (row,) = desk.client.get("/api/staff/notices").json()
    assert (row["kind"], row["label"]) == ("referral", "資格確認できず — 申立書で受付")
    r = desk.client.post("/api/staff/by-number", json=NUMBER)
    assert (r.status_code, r.json()["code"]) == (502, "unavailable")  # not journalled: the desk is told so
