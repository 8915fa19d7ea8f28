"""The patient's check as a service: in-process card, in-memory server, no HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import httpx
import pytest

from clinic_terminal.client import CardClient
from clinic_terminal.kiosk import messages as msg
from clinic_terminal.kiosk.flow import CheckFlow, ConsentChoice
from clinic_terminal.kiosk.staff import record_json
from schemas.eligibility import LimitCertificate, PublicExpense, SpecificDisease
from testbed.card_emulator import CardState, ForeignCardEmulator, build_card
from testbed.pki import TestCA
from tests.unit.kiosk.conftest import FACTS, FakeFaceOutcome, MakeKiosk, insured


def test_pin_check_success_leads_to_consent_then_done(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    assert k.flow.screen().name == "place_card"

    screen = k.flow.read_card()
    assert screen.name == "choose_method"
    assert screen.methods == ("pin",)  # no face path configured
    assert screen.tries_left == 3

    assert k.flow.choose("pin").name == "pin"
    screen = k.flow.submit_pin("1234")
    assert screen.name == "consent"
    assert screen.patient_name == FACTS.name
    assert k.server.by_card_calls[0]["signature"] is not None  # verified against the nonce by the server

    screen = k.flow.submit_consent(ConsentChoice(drug=True))
    assert screen.name == "done"
    assert screen.message == msg.DONE
    (request,) = k.server.consents
    assert (request.drug, request.checkup, request.clinical, request.limit_certificate) == (True, False, False, False)
    assert request.setting == "outpatient"
    (record,) = k.records
    assert record.method == "pin"
    assert record.consent is not None and record.consent.drug
    assert record.result.insured is not None and record.result.insured.name == FACTS.name
    assert len(k.face_files) == 1 and k.face_files[0][1] is record.consent


def test_wrong_pin_shows_tries_left_then_the_right_pin_works(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("0000")
    assert screen.name == "pin"
    assert screen.code == "pin_wrong"
    assert screen.tries_left == 2
    assert screen.message == msg.pin_wrong(2)
    assert "あと2回" in (screen.message or "")
    assert k.server.by_card_calls == []  # nothing reached the server

    assert k.flow.submit_pin("1234").name == "consent"
    assert k.card.state.auth_pin_tries_left == 3  # a correct PIN resets the counter


def test_pin_format_is_refused_without_using_a_try(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("12a")
    assert (screen.name, screen.code, screen.message) == ("pin", "pin_format", msg.PIN_FORMAT)
    assert k.card.state.auth_pin_tries_left == 3


def test_third_wrong_pin_blocks_and_asks_for_staff(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    assert k.flow.submit_pin("0000").tries_left == 2
    assert k.flow.submit_pin("0001").tries_left == 1
    screen = k.flow.submit_pin("0002")
    assert screen.name == "error"
    assert screen.code == "pin_blocked"
    assert msg.ASK_STAFF in (screen.message or "")
    assert screen.actions == ("restart",)

    # The next patient action on the same (blocked) card goes straight to the message.
    k.flow.reset()
    screen = k.flow.read_card()
    assert (screen.name, screen.code) == ("error", "pin_blocked")


def test_blocked_pin_offers_face_when_the_face_path_is_configured(make_kiosk: MakeKiosk, kiosk_ca: TestCA,
                                                                   photo: bytes) -> None:
    blocked = build_card(kiosk_ca, facts=FACTS, photo_jp2=photo, key_index=7, state=CardState(auth_pin_tries_left=0))
    k = make_kiosk(card=blocked, face=True)
    screen = k.flow.read_card()
    assert screen.name == "choose_method"
    assert screen.methods == ("face",)
    assert screen.message == msg.PIN_BLOCKED_FACE


def test_first_use_links_the_card_with_the_four_facts_then_checks(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(linked=False)
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("1234")
    assert screen.name == "register"
    assert screen.code == "card_not_registered"
    # the PIN was right: the screen says so, and why a PIN is asked again (初回登録)
    assert screen.message == msg.REGISTER_AFTER_PIN
    assert msg.REGISTER_AFTER_PIN.startswith("暗証番号は確認できました。")
    assert "券面事項入力補助" in msg.REGISTER_AFTER_PIN

    screen = k.flow.submit_registration("1234")
    assert screen.name == "consent"
    (facts,) = k.server.registrations
    assert (facts.name, facts.birth_date, facts.sex, facts.address) == (
        FACTS.name, FACTS.birth_date, FACTS.sex, FACTS.address)
    assert len(k.server.by_card_calls) == 2  # refused, then accepted after linking


def test_first_use_with_a_wrong_pin_keeps_the_registration_screen(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(linked=False)
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    screen = k.flow.submit_registration("9999")
    assert (screen.name, screen.code, screen.tries_left) == ("register", "pin_wrong", 2)
    assert k.server.registrations == []


def test_first_use_without_a_matching_person_asks_for_staff(make_kiosk: MakeKiosk) -> None:
    other = FACTS.__class__(name="別人 一郎", address=FACTS.address, birth_date=FACTS.birth_date, sex="1")
    k = make_kiosk(linked=False, facts_on_file=other)
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    screen = k.flow.submit_registration("1234")
    assert (screen.name, screen.code) == ("error", "registration_no_match")
    assert msg.ASK_STAFF in (screen.message or "")
    assert k.records == []


def test_server_unreachable_sends_the_patient_to_the_desk_with_a_statement(make_kiosk: MakeKiosk) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    k = make_kiosk()
    client = CardClient("http://central.invalid", "t", transport=httpx.MockTransport(refuse))
    try:
        flow = CheckFlow(connect_card=k.reader.connect, server=client, clock=k.clock)
        flow.read_card()
        flow.choose("pin")
        screen = flow.submit_pin("1234")
    finally:
        client.close()
    assert (screen.name, screen.code) == ("outage", "unavailable")
    assert screen.message == "ただいま資格確認ができません。受付で申立書をご記入ください。"
    assert screen.actions == ("restart",)


def test_consent_defaults_to_sharing_nothing(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    assert k.flow.submit_consent(ConsentChoice()).name == "done"
    (request,) = k.server.consents
    assert not (request.drug or request.checkup or request.clinical or request.limit_certificate)
    assert k.server.number_queries == []  # no 限度額 consent: nothing more is asked


def test_limit_certificate_consent_brings_the_certificate_to_staff(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    k.flow.submit_consent(ConsentChoice(limit_certificate=True))
    (query,) = k.server.number_queries
    assert query.include_limit_certificate
    (record,) = k.records
    assert record.result.limit_certificate is not None
    assert record.result.limit_certificate.classification == "A03"
    assert record.result.visit_id is not None  # still the card check's visit


EARLIER_CONSENT = {  # a card check answered under the consent of an earlier visit
    "limit_certificate": LimitCertificate(kind="01", classification="A03", valid_from=dt.date(2026, 4, 1),
                                          valid_to=None),
    "specific_diseases": [SpecificDisease(category="1", valid_from=dt.date(2026, 4, 1), valid_to=None,
                                          self_pay=10000)],
    "public_expenses": [PublicExpense(payer_number="54130018", recipient_number="1000015", monthly_cap=10000,
                                      valid_from=dt.date(2026, 4, 1), valid_to=None)],
}


@pytest.mark.parametrize("choice", [ConsentChoice(), ConsentChoice(drug=True, checkup=True, clinical=True)])
def test_a_refusal_at_this_visit_hides_what_an_earlier_consent_brought(
    make_kiosk: MakeKiosk, choice: ConsentChoice
) -> None:
    k = make_kiosk(card_extras=EARLIER_CONSENT)
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    assert k.flow.submit_consent(choice).name == "done"  # 限度額: 「提供しない」
    (record,) = k.records
    assert record.result.limit_certificate is None and record.result.specific_diseases == []
    board = record_json(record)["result"]
    assert board["limit_certificate"] is None and board["specific_diseases"] == []
    ((result, _),) = k.face_files
    assert result.limit_certificate is None and result.specific_diseases == []
    assert record.result.public_expenses == [] and result.public_expenses == []  # 公費: the same consent


def test_an_unrecorded_consent_shows_nothing_consent_gated(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(card_extras=EARLIER_CONSENT)
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    k.server.down = True
    assert k.flow.submit_consent(ConsentChoice(limit_certificate=True)).name == "done"
    (record,) = k.records
    assert record.consent is None
    assert record.result.limit_certificate is None and record.result.specific_diseases == []


def test_certificate_type_card_cannot_share(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(insured_row=insured(card_classification="05"))
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("1234")
    assert screen.name == "consent_unavailable"
    assert screen.message == msg.CANNOT_SHARE
    assert k.flow.submit_consent(ConsentChoice(drug=True)).name == "place_card"  # not allowed here
    k2 = make_kiosk(insured_row=insured(card_classification="05"))
    k2.flow.read_card()
    k2.flow.choose("pin")
    k2.flow.submit_pin("1234")
    assert k2.flow.skip_consent().name == "done"
    assert k2.server.consents == []
    (record,) = k2.records
    assert record.consent is None and record.consent_note


def test_invalid_eligibility_completes_with_a_notice_and_reaches_staff(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(validity=2, insured_row=insured(valid_to=insured().valid_from, reason_of_loss="03"))
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("1234")
    assert (screen.name, screen.code, screen.message) == ("done", "not_usable", msg.NOT_USABLE)
    (record,) = k.records
    assert record.result.validity == 2
    assert k.server.consents == []


def test_not_a_my_number_card(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(card=ForeignCardEmulator())
    screen = k.flow.read_card()
    assert (screen.name, screen.code) == ("error", "not_my_number_card")
    assert screen.message == msg.CARD_ERRORS["not_my_number_card"]
    assert "read_card" in screen.actions


def test_no_card_on_the_reader(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.reader.remove()
    screen = k.flow.read_card()
    assert (screen.name, screen.code) == ("error", "no_card")
    assert screen.message == msg.CARD_ERRORS["no_card"]


def test_card_removed_mid_check_starts_over(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    k.reader.remove()
    screen = k.flow.submit_pin("1234")
    assert (screen.name, screen.code) == ("error", "card_removed")
    k.flow.card_removed()
    assert k.flow.screen().name == "place_card"


def test_face_success_sends_the_terminal_attestation(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True)
    screen = k.flow.read_card()
    assert screen.methods == ("face", "pin")
    k.flow.choose("face")
    assert k.face_statuses == [msg.FACE_STATUS_DETECTING, msg.FACE_STATUS_MATCHING]
    screen = k.flow.screen()
    assert screen.name == "consent"
    (call,) = k.server.by_card_calls
    assert call["signature"] is None and call["attestation"] == f"attested:{call['challenge_id']}"
    k.flow.submit_consent(ConsentChoice())
    assert k.records[0].method == "face"
    assert k.card.state.auth_pin_tries_left == 3  # the PIN was never asked


def test_face_not_matched_offers_the_pin(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face_outcome=FakeFaceOutcome(match=False, liveness=True, distance=0.8, reason="no_match"))
    k.flow.read_card()
    k.flow.choose("face")
    screen = k.flow.screen()
    assert (screen.name, screen.code) == ("face_failed", "no_match")
    assert screen.message == msg.FACE_FAILED["no_match"] + msg.FACE_FAILED_TAIL
    assert screen.actions == ("pin", "restart")
    assert k.server.by_card_calls == []
    assert k.flow.choose("pin").name == "pin"
    assert k.flow.submit_pin("1234").name == "consent"


def test_face_on_an_unlinked_card_asks_for_the_pin_to_register(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(linked=False, face=True)
    k.flow.read_card()
    k.flow.choose("face")
    assert k.flow.screen().name == "register"
    assert k.flow.submit_registration("1234").name == "consent"


def test_idle_and_done_screens_go_back_to_the_start(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.clock.t += 121
    assert k.flow.screen().name == "place_card"
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("1234")
    assert k.flow.submit_consent(ConsentChoice()).name == "done"
    k.clock.t += 16
    assert k.flow.screen().name == "place_card"


def test_the_pin_is_never_logged(make_kiosk: MakeKiosk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    k = make_kiosk(linked=False)
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("4321")
    k.flow.submit_pin("1234")
    k.flow.submit_registration("1234")
    assert caplog.records  # the flow does log its steps
    assert not any("1234" in r.getMessage() or "4321" in r.getMessage() for r in caplog.records)
    assert "1234" not in repr(vars(k.flow))


def test_face_never_spends_the_last_collation_b_tries(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True)
    k.card.state.collation_b_tries_left = 2  # the last tries are kept for staff entry
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert (screen.name, screen.code) == ("face_failed", "collation_b_not_tried")
    assert screen.actions == ("collation_b_entry", "pin", "restart")  # staff may still key it in
    assert k.card.state.collation_b_tries_left == 2
    assert k.server.by_card_calls == []


def test_a_wrong_collation_b_costs_one_try_and_offers_the_pin(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True)
    k.card.profile = dataclasses.replace(k.card.profile, collation_b="0" * 14)  # the front was misread
    k.flow.read_card()
    screen = k.flow.choose("face")
    assert (screen.name, screen.code) == ("face_failed", "collation_b_wrong")
    assert screen.actions == ("collation_b_entry", "pin", "restart")
    assert k.card.state.collation_b_tries_left == 9
    assert k.flow.choose("pin").name == "pin"
    assert k.flow.submit_pin("1234").name == "consent"


def test_last_pin_try_offers_face(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk(face=True)
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("0000")
    assert (screen.tries_left, screen.actions) == (2, ())
    assert "顔認証" not in (screen.message or "")
    screen = k.flow.submit_pin("0001")
    assert screen.tries_left == 1
    assert screen.message == "暗証番号が違います。あと1回間違えるとロックされます。顔認証に切り替えることもできます。"
    assert screen.actions == ("face",)
    assert k.flow.choose("face").name in ("face", "consent")  # the offer works from the PIN screen


def test_last_pin_try_without_face_offers_nothing_else(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    k.flow.submit_pin("0000")
    screen = k.flow.submit_pin("0001")
    assert screen.message == msg.pin_wrong(1) and screen.actions == ()


def test_lock_message_says_where_the_pin_is_reset() -> None:
    for text in (msg.PIN_BLOCKED, msg.PIN_BLOCKED_FACE):
        assert "市区町村の窓口" in text


def test_card_taken_out_midway_says_so(make_kiosk: MakeKiosk) -> None:
    k = make_kiosk()
    k.flow.read_card()
    k.flow.choose("pin")
    k.reader.remove()
    k.flow.card_removed()
    screen = k.flow.screen()
    assert (screen.name, screen.code, screen.message) == ("error", "card_taken_out", msg.CARD_TAKEN_OUT)
    assert msg.CARD_TAKEN_OUT.startswith("カードが取り出されました")
    assert screen.actions == ("read_card",)
    k.flow.card_removed()  # the monitor and the demo button may both report it: nothing more happens
    assert k.flow.screen().code == "card_taken_out"
