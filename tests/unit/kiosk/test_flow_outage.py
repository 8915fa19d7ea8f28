"""Outage mode on the patient screen, and the rows a failure leaves for reception (referrals).

The server is reached through the real ``CardClient`` over an ``httpx.MockTransport`` that fails
the way a dead server or network does: connection refused, a timeout, a 503 problem+json.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from clinic_terminal.client import CardClient, ServerError
from clinic_terminal.kiosk import messages as msg
from clinic_terminal.kiosk.flow import CheckFlow, Referral
from schemas.eligibility import EligibilityResult
from testbed.card_emulator import CardState, build_card
from testbed.pki import TestCA
from tests.unit.kiosk.conftest import FACTS, FakeFaceOutcome, MakeKiosk

OUTAGE_TEXT = "ただいま資格確認ができません。受付で申立書をご記入ください。"


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _unavailable(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": "5", "Content-Type": "application/problem+json"},
                          json={"code": "unavailable", "title": "Service unavailable", "status": 503})


@pytest.mark.parametrize("failure", [_refused, _timeout, _unavailable], ids=["refused", "timeout", "503"])
def test_a_pin_check_with_the_server_away_tells_the_patient_and_refers_to_reception(
    make_kiosk: MakeKiosk, failure: Callable[[httpx.Request], httpx.Response]
) -> None:
    k = make_kiosk()
    referrals: list[Referral] = []
    client = CardClient("http://central.invalid", "t", transport=httpx.MockTransport(failure))
    try:
        flow = CheckFlow(connect_card=k.reader.connect, server=client, clock=k.clock, on_referral=referrals.append)
        flow.read_card()
        flow.choose("pin")
        screen = flow.submit_pin("1234")
    finally:
        client.close()
    assert (screen.name, screen.code, screen.message) == ("outage", "unavailable", OUTAGE_TEXT)
    assert screen.actions == ("restart",)
    (referral,) = referrals
    assert referral.outage and referral.code == "unavailable"
    assert referral.method == "pin"  # the card accepted the PIN before the server was asked
    assert referral.certificate == k.card.profile.certificate_der
    assert k.card.state.auth_pin_tries_left == 3


def test_the_outage_screen_goes_back_to_the_start_like_done(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(down=True)
    k.flow.read_card()
    k.flow.choose("pin")
    assert k.flow.submit_pin("1234").name == "outage"
    k.clock.t += 16  # done_timeout 15 s
    assert k.flow.screen().name == "place_card"


def test_a_face_check_with_the_server_away_is_an_outage_too(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face_outcome=FakeFaceOutcome(match=True, liveness=True), down=True)
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert screen.name == "outage" or k.flow.screen().name == "outage"
    (referral,) = k.referrals
    assert (referral.outage, referral.method) == (True, "face")
    assert k.card.state.auth_pin_tries_left == 3


def test_a_successful_card_check_is_handed_over_for_outage_re_checks(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    ((certificate, result),) = k.card_checks
    assert hashlib.sha256(certificate).digest() == hashlib.sha256(k.card.profile.certificate_der).digest()
    assert result.insured is not None and result.insured.number == "４５６７"
    assert k.referrals == []


def test_a_blocked_pin_leaves_a_row_for_reception(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    for _ in range(3):
        screen = k.flow.submit_pin("0000")
    assert screen.code == "pin_blocked"
    (referral,) = k.referrals
    assert (referral.code, referral.outage) == ("pin_blocked", False)
    assert referral.certificate == k.card.profile.certificate_der
    assert msg.referral_label(referral.code).startswith("暗証番号ロック")


def test_a_card_unreadable_twice_sends_the_patient_to_reception(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.reader.remove()
    first = k.flow.read_card()
    assert (first.code, first.message, first.actions) == ("no_card", msg.CARD_ERRORS["no_card"],
                                                          ("read_card", "restart"))
    assert k.referrals == []  # once: the patient places the card again
    second = k.flow.read_card()
    assert second.message == "カードが読み取れませんでした。受付にお声がけください。"
    assert second.actions == ("restart",)
    (referral,) = k.referrals
    assert (referral.code, referral.certificate) == ("no_card", None)


def test_a_refused_face_with_no_pin_left_sends_the_patient_to_reception(
    make_kiosk: MakeKiosk, kiosk_ca: TestCA, photo: bytes
) -> None:
    blocked = build_card(kiosk_ca, facts=FACTS, photo_jp2=photo, key_index=7, state=CardState(auth_pin_tries_left=0))
    k = make_kiosk(card=blocked, face_outcome=FakeFaceOutcome(match=False, liveness=True, reason="no_match"))
    k.flow.read_card()
    k.flow.choose("face")
    screen = k.flow.screen()
    assert (screen.name, screen.code) == ("face_failed", "no_match")
    assert screen.message == msg.FACE_FAILED["no_match"] + msg.ASK_STAFF
    assert screen.actions == ("restart",)
    (referral,) = k.referrals
    assert referral.code == "face:no_match"
    assert msg.referral_label(referral.code) == "顔認証できず・暗証番号も使えません（カードの写真と一致しませんでした）"


def test_a_refused_face_with_the_pin_left_does_not_refer(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face_outcome=FakeFaceOutcome(match=False, liveness=True, reason="no_match"))
    k.flow.read_card()
    k.flow.choose("face")
    assert "pin" in k.flow.screen().actions
    assert k.referrals == []


def test_a_certificate_problem_leaves_a_row_for_reception(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")

    def revoked(challenge_id: str, certificate: bytes, *, signature: bytes | None = None,
                attestation: str | None = None, as_of: str | None = None) -> EligibilityResult:
        raise ServerError("certificate_revoked", "revoked", 403)

    k.server.by_card = revoked  # type: ignore[method-assign]
    screen = k.flow.submit_pin("1234")
    assert screen.code == "certificate_revoked"
    (referral,) = k.referrals
    assert (referral.code, referral.outage, referral.method) == ("certificate_revoked", False, "pin")
