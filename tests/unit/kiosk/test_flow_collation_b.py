"""照合番号B keyed in by staff when the face path cannot get it automatically (the lock rule holds)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clinic_terminal.kiosk import messages as msg
from clinic_terminal.kiosk.app import create_kiosk_app
from clinic_terminal.kiosk.flow import ConsentChoice
from clinic_terminal.kiosk.staff import ReceptionBoard, StaffService
from tests.unit.kiosk.conftest import Kiosk, MakeKiosk

CODE = "55040120341234"  # build_card's default 照合番号B: 昭和55年4月1日, 2034, 1234
WRONG = "55040120349999"  # the right shape, not this card's code
MALFORMED = ("5504012034123", "550401203412a4", "00040120341234", "55130120341234", "55040119991234", "")


def _to_entry(k: Kiosk) -> None:
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert screen.name == "face_failed"
    assert "collation_b_entry" in screen.actions
    screen = k.flow.open_collation_b_entry()
    assert screen.name == "collation_b_entry"


def test_without_an_automatic_source_staff_key_the_code_and_the_face_check_runs(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True, auto_collation_b=False)
    assert k.flow.read_card().methods == ("face", "pin")
    screen = k.flow.choose("face")
    assert (screen.name, screen.code) == ("face_failed", "collation_b_unread")
    assert screen.message == msg.COLLATION_B_FALLBACK["collation_b_unread"] + msg.COLLATION_B_STAFF_TAIL
    assert screen.actions == ("collation_b_entry", "pin", "restart")
    assert k.card.state.collation_b_tries_left == 10  # nothing was sent

    screen = k.flow.open_collation_b_entry()
    assert (screen.name, screen.tries_left, screen.actions) == ("collation_b_entry", 10, ("pin", "restart"))
    k.flow.submit_collation_b(CODE)
    assert k.face_statuses == [msg.FACE_STATUS_DETECTING, msg.FACE_STATUS_MATCHING]
    assert k.flow.screen().name == "consent"
    (call,) = k.server.by_card_calls
    assert call["signature"] is None and call["attestation"] == f"attested:{call['challenge_id']}"
    k.flow.submit_consent(ConsentChoice())
    assert k.records[0].method == "face"
    assert k.card.state.collation_b_tries_left == 10
    assert k.card.state.auth_pin_tries_left == 3  # the PIN was never asked


def test_a_malformed_entry_costs_no_try(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True, auto_collation_b=False)
    _to_entry(k)
    for code in MALFORMED:
        screen = k.flow.submit_collation_b(code)
        assert (screen.name, screen.code, screen.message) == (
            "collation_b_entry",
            "collation_b_format",
            msg.COLLATION_B_FORMAT,
        )
        assert screen.tries_left == 10
    assert k.card.state.collation_b_tries_left == 10
    k.flow.submit_collation_b(CODE)
    assert k.flow.screen().name == "consent"


def test_a_wrong_entry_uses_one_try_shows_the_tries_and_allows_a_retry_or_the_pin(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True, auto_collation_b=False)
    _to_entry(k)
    screen = k.flow.submit_collation_b(WRONG)
    assert (screen.name, screen.code, screen.tries_left) == ("collation_b_entry", "collation_b_keyed_wrong", 9)
    assert screen.message == msg.collation_b_keyed_wrong(9)
    assert "9回" in (screen.message or "")
    assert screen.actions == ("pin", "restart")
    assert k.card.state.collation_b_tries_left == 9
    assert k.server.by_card_calls == []
    k.flow.submit_collation_b(CODE)  # staff retry with the right code
    assert k.flow.screen().name == "consent"

    k2 = make_kiosk(face=True, auto_collation_b=False)
    _to_entry(k2)
    k2.flow.submit_collation_b(WRONG)
    assert k2.flow.choose("pin").name == "pin"  # or go to the PIN instead
    assert k2.flow.submit_pin("1234").name == "consent"


def test_keyed_entry_may_use_the_margin_but_never_the_last_try(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True)
    k.card.state.collation_b_tries_left = 2  # the margin: no automatic try, staff may key it in
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert (screen.name, screen.code) == ("face_failed", "collation_b_not_tried")
    assert screen.actions == ("collation_b_entry", "pin", "restart")
    assert k.card.state.collation_b_tries_left == 2
    screen = k.flow.open_collation_b_entry()
    assert (screen.name, screen.tries_left) == ("collation_b_entry", 2)
    screen = k.flow.submit_collation_b(WRONG)  # 2 → 1: the last try is the lock, so stop here
    assert (screen.name, screen.code) == ("face_failed", "collation_b_last_try")
    assert screen.message == msg.COLLATION_B_FALLBACK["collation_b_last_try"]
    assert screen.actions == ("pin", "restart")
    assert k.card.state.collation_b_tries_left == 1
    assert k.flow.open_collation_b_entry().name == "face_failed"  # not offered, nothing happens
    assert k.card.state.collation_b_tries_left == 1


def test_with_one_try_left_only_the_pin_is_offered(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True, auto_collation_b=False)
    k.card.state.collation_b_tries_left = 1
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert (screen.name, screen.code, screen.actions) == ("face_failed", "collation_b_last_try", ("pin", "restart"))
    assert k.flow.open_collation_b_entry().name == "face_failed"
    assert k.flow.submit_collation_b(CODE).name == "place_card"  # no entry screen: nothing is sent
    assert k.card.state.collation_b_tries_left == 1


def test_the_counter_is_read_again_before_the_keyed_verify(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True, auto_collation_b=False)
    _to_entry(k)
    k.card.state.collation_b_tries_left = 1  # e.g. another terminal used tries meanwhile
    screen = k.flow.submit_collation_b(CODE)
    assert (screen.name, screen.code) == ("face_failed", "collation_b_last_try")
    assert k.card.state.collation_b_tries_left == 1


def test_after_a_wrong_automatic_code_staff_may_key_it_in(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True)
    k.card.profile = dataclasses.replace(k.card.profile, collation_b=WRONG)  # the OCR misread the front
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert (screen.name, screen.code) == ("face_failed", "collation_b_wrong")
    assert screen.actions == ("collation_b_entry", "pin", "restart")
    assert k.card.state.collation_b_tries_left == 9
    # the automatic try is not repeated on this insertion
    screen = k.flow.choose("face")
    assert (screen.name, screen.code) == ("face_failed", "collation_b_already_tried")
    assert k.card.state.collation_b_tries_left == 9
    k.card.profile = dataclasses.replace(k.card.profile, collation_b=CODE)
    k.flow.open_collation_b_entry()
    k.flow.submit_collation_b(CODE)
    assert k.flow.screen().name == "consent"


def test_the_keyed_code_is_never_logged_or_kept(make_kiosk: MakeKiosk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    k = make_kiosk(face=True, auto_collation_b=False)
    _to_entry(k)
    k.flow.submit_collation_b(MALFORMED[2])
    k.flow.submit_collation_b(WRONG)
    k.flow.submit_collation_b(CODE)
    assert k.flow.screen().name == "consent"
    assert caplog.records  # the flow does log its steps
    for code in (CODE, WRONG, MALFORMED[2], "550401", "1234", "9999"):  # whole codes and their parts
        assert not any(code in r.getMessage() for r in caplog.records), code
    state = repr(vars(k.flow)) + repr(k.flow._session and vars(k.flow._session)) + repr(k.flow.screen())
    assert CODE not in state and WRONG not in state and MALFORMED[2] not in state


@pytest.fixture
def client(make_kiosk: MakeKiosk) -> Iterator[tuple[Kiosk, TestClient]]:
    k = make_kiosk(face=True, auto_collation_b=False)
    board = ReceptionBoard()
    staff = StaffService(k.server, board, role="reception")
    with TestClient(create_kiosk_app(k.flow, staff, board)) as test_client:
        yield k, test_client


def test_http_keyed_entry_never_echoes_the_code(
    client: tuple[Kiosk, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    k, http = client
    http.post("/api/kiosk/read")
    assert http.post("/api/kiosk/method", json={"method": "face"}).json()["actions"][0] == "collation_b_entry"
    assert http.post("/api/kiosk/collation-b/entry").json()["screen"] == "collation_b_entry"
    too_long = "5504012034123455040120341234555"
    response = http.post("/api/kiosk/collation-b", json={"code": too_long + "99"})
    assert response.status_code == 422
    assert too_long not in response.text
    assert response.json()["message"] == msg.COLLATION_B_FORMAT
    response = http.post("/api/kiosk/collation-b", json={"code": WRONG})
    assert WRONG not in response.text
    assert (response.json()["code"], response.json()["tries_left"]) == ("collation_b_keyed_wrong", 9)
    response = http.post("/api/kiosk/collation-b", json={"code": CODE})
    assert response.json()["screen"] in ("face", "consent")
    assert CODE not in response.text
    assert http.get("/api/kiosk/state").json()["screen"] == "consent"
    assert not any(WRONG in r.getMessage() or CODE in r.getMessage() for r in caplog.records)
    assert k.card.state.collation_b_tries_left == 10
