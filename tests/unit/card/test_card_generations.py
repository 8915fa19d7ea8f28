"""Both card generations and the smartphone profile, in-process: the emulator's layouts, and the
terminal choosing the layout by the application that answers (never the ATR)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from clinic_terminal.card import CardProtocolError, MyNumberCard, NotMyNumberCardError, PinWrongError
from clinic_terminal.card.applications import ALLOWED_FILES, KNOWN_APPLICATIONS
from clinic_terminal.card.applications import CARD_2026 as TERMINAL_2026
from clinic_terminal.card.applications import CURRENT_CARD as TERMINAL_CURRENT
from clinic_terminal.card.inprocess import InProcessReader, InProcessTransport
from shikaku_server.card.verify import verify_pin_signature
from testbed.card_emulator import (
    CARD_2026,
    CARD_2026_ATR,
    CURRENT_CARD,
    MY_NUMBER_CARD_ATR,
    SMARTPHONE,
    SMARTPHONE_ATR,
    CardLayout,
    ForeignCardEmulator,
    MyNumberCardEmulator,
    assert_no_violations,
    build_card,
    sample_photo_jp2,
)
from testbed.pki import TestCA

NONCE = bytes(range(32))


@pytest.fixture(scope="module")
def ecdsa_ca() -> TestCA:
    return TestCA.create_ecdsa()


def _card(layout: CardLayout, test_ca: TestCA, ecdsa_ca: TestCA, **kwargs: object) -> MyNumberCardEmulator:
    ca = test_ca if layout is CURRENT_CARD else ecdsa_ca
    return build_card(ca, layout=layout, photo_jp2=sample_photo_jp2(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=[CURRENT_CARD, CARD_2026, SMARTPHONE], ids=["current", "2026", "smartphone"])
def any_card(request: pytest.FixtureRequest, test_ca: TestCA, ecdsa_ca: TestCA) -> Iterator[MyNumberCardEmulator]:
    card = _card(request.param, test_ca, ecdsa_ca)
    yield card
    assert_no_violations(card)


def _connect(card: MyNumberCardEmulator | ForeignCardEmulator) -> InProcessTransport:
    reader = InProcessReader()
    reader.insert(card)
    return reader.connect()


def test_the_terminal_table_matches_the_emulated_cards() -> None:
    """Two independent tables (the card issuer's and the terminal's) describe the same layouts."""
    for card, terminal in ((CURRENT_CARD, TERMINAL_CURRENT), (CARD_2026, TERMINAL_2026)):
        assert (card.auth_aid, card.facts_aid, card.face_aid) == (
            terminal.auth_aid,
            terminal.facts_aid,
            terminal.face_aid,
        )
        assert (card.ef_auth_cert, card.ef_auth_key, card.ef_auth_pin, card.ef_basic_facts) == (
            terminal.ef_auth_cert,
            terminal.ef_auth_key,
            terminal.ef_auth_pin,
            terminal.ef_basic_facts,
        )
        assert card.signature == terminal.signature
        assert (card.facts_aid, card.ef_my_number) not in ALLOWED_FILES  # never selectable
    assert [apps.generation for apps in KNOWN_APPLICATIONS] == ["current", "2026"]
    assert SMARTPHONE.auth_aid == CARD_2026.auth_aid and SMARTPHONE.face_aid is None
    assert len({MY_NUMBER_CARD_ATR, CARD_2026_ATR, SMARTPHONE_ATR}) == 3


def test_every_profile_reads_signs_and_verifies(any_card: MyNumberCardEmulator) -> None:
    layout = any_card.layout
    with _connect(any_card) as transport:
        card = MyNumberCard(transport)
        assert card.generation == ("current" if layout is CURRENT_CARD else "2026")
        card.check_jpki()
        der = card.read_auth_certificate()
        assert der == any_card.profile.certificate_der
        assert card.read_ca_certificate() == any_card.profile.ca_certificate_der
        facts = card.read_basic_facts("1234")
        assert (facts.name, facts.birth_date) == (any_card.profile.facts.name, any_card.profile.facts.birth_date)
        signature = card.authenticate("1234", NONCE)
    verify_pin_signature(x509.load_der_x509_certificate(der), NONCE, signature)  # the server's check


def test_2026_signature_apdu_and_its_der_form(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    emulated = _card(CARD_2026, test_ca, ecdsa_ca)
    with _connect(emulated) as transport:
        card = MyNumberCard(transport)
        card.verify_auth_pin("1234")
        signature = card.sign_challenge(NONCE)
    sign = next(apdu for apdu in emulated.command_log if apdu[1] == 0x2A)
    assert sign == bytes.fromhex("002A9E9A30") + hashlib.sha384(NONCE).digest() + b"\x00"
    r, s = decode_dss_signature(signature)  # DER SEQUENCE {r, s}
    public_key = x509.load_der_x509_certificate(emulated.profile.certificate_der).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, NONCE, ec.ECDSA(hashes.SHA384()))
    assert r > 0 and s > 0


def test_generation_comes_from_the_application_not_the_atr(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    swapped = [
        _card(CARD_2026, test_ca, ecdsa_ca, atr=MY_NUMBER_CARD_ATR),
        _card(CURRENT_CARD, test_ca, ecdsa_ca, atr=SMARTPHONE_ATR),
        _card(SMARTPHONE, test_ca, ecdsa_ca, atr=MY_NUMBER_CARD_ATR),
    ]
    for emulated, expected in zip(swapped, ["2026", "current", "2026"], strict=True):
        with _connect(emulated) as transport:
            card = MyNumberCard(transport)
            assert card.generation == expected
            der = card.read_auth_certificate()
            signature = card.authenticate("1234", NONCE)
        verify_pin_signature(x509.load_der_x509_certificate(der), NONCE, signature)
    assert_no_violations(*swapped)


def test_selection_order_and_cost(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    """Today's card answers the first SELECT; a 2026 card costs one SELECT answered 6A 82."""
    current, new = _card(CURRENT_CARD, test_ca, ecdsa_ca), _card(CARD_2026, test_ca, ecdsa_ca)
    for emulated in (current, new):
        with _connect(emulated) as transport:
            MyNumberCard(transport).read_auth_certificate()
    select_ap = bytes.fromhex("00A4040C")
    assert [a[5:] for a in current.command_log if a[:4] == select_ap] == [CURRENT_CARD.auth_aid]
    assert [a[5:] for a in new.command_log if a[:4] == select_ap] == [CURRENT_CARD.auth_aid, CARD_2026.auth_aid]


def test_a_card_with_no_known_application_is_not_a_my_number_card() -> None:
    foreign = ForeignCardEmulator(atr=MY_NUMBER_CARD_ATR)  # even with a My Number card's ATR
    with _connect(foreign) as transport, pytest.raises(NotMyNumberCardError):
        MyNumberCard(transport).read_auth_certificate()
    tried = [apdu[5:] for apdu in foreign.command_log]
    assert tried == [apps.auth_aid for apps in KNOWN_APPLICATIONS]


def test_2026_card_has_one_pin_for_facts_and_signature(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    emulated = _card(CARD_2026, test_ca, ecdsa_ca)
    with _connect(emulated) as transport:
        card = MyNumberCard(transport)
        with pytest.raises(PinWrongError) as info:
            card.read_basic_facts("0000")
        assert info.value.tries_left == 2
        assert card.auth_pin_tries_left() == 2  # the same counter
        card.read_basic_facts("1234")  # verifies the one PIN: signing needs no second entry
        assert card.sign_challenge(NONCE)
    assert emulated.state.auth_pin_tries_left == 3
    assert emulated.state.kenkaku_pin_tries_left == 3  # a 2026 card has no separate facts PIN


def test_2026_card_face_and_the_phone_without_one(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    emulated = _card(CARD_2026, test_ca, ecdsa_ca)
    with _connect(emulated) as transport:
        card = MyNumberCard(transport)
        assert card.collation_b_tries_left() == 10
        card.verify_collation_b("55040120341234")
        assert card.read_face_photo() == emulated.profile.photo_jp2
    phone = _card(SMARTPHONE, test_ca, ecdsa_ca)
    with _connect(phone) as transport, pytest.raises(NotMyNumberCardError):
        MyNumberCard(transport).verify_collation_b("55040120341234")


def test_each_card_refuses_the_other_generations_sign_command(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    for layout, wrong in (
        (CARD_2026, bytes.fromhex("802A008033") + bytes(51) + b"\x00"),
        (CURRENT_CARD, bytes.fromhex("002A9E9A30") + bytes(48) + b"\x00"),
    ):
        emulated = _card(layout, test_ca, ecdsa_ca)
        emulated.power_on()
        select = bytes([0x00, 0xA4, 0x04, 0x0C, len(layout.auth_aid)]) + layout.auth_aid
        pin = bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + layout.ef_auth_pin.to_bytes(2, "big")
        key = bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + layout.ef_auth_key.to_bytes(2, "big")
        for apdu in (select, pin, bytes.fromhex("0020008004") + b"1234", key):
            assert emulated.process_apdu(apdu)[-2:] == b"\x90\x00"
        assert emulated.process_apdu(wrong)[-2:] != b"\x90\x00"


def test_2026_card_my_number_ef_is_a_violation(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    emulated = _card(CARD_2026, test_ca, ecdsa_ca)
    emulated.power_on()
    emulated.process_apdu(bytes([0x00, 0xA4, 0x04, 0x0C, 9]) + CARD_2026.facts_aid)
    assert emulated.process_apdu(bytes.fromhex("00A4020C02") + CARD_2026.ef_my_number.to_bytes(2, "big")) == (
        b"\x69\x82"
    )
    assert len(emulated.violations) == 1


def test_a_layout_needs_its_key_type(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    with pytest.raises(ValueError, match="ecdsa_p384_sha384"):
        build_card(test_ca, layout=CARD_2026)  # an RSA key on a 2026 card
    with pytest.raises(ValueError, match="rsa_pkcs1v15_sha256"):
        build_card(ecdsa_ca, layout=CURRENT_CARD)
    p384_card = build_card(ecdsa_ca, layout=CARD_2026)
    p256_profile = dataclasses.replace(p384_card.profile, private_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ValueError, match="another key type"):
        MyNumberCardEmulator(p256_profile, layout=CARD_2026)


class _BadSignatureCard(MyNumberCardEmulator):
    """A 2026 card answering SIGN with a DER blob instead of the plain r || s."""

    def process_apdu(self, apdu: bytes) -> bytes:
        response = super().process_apdu(apdu)
        if apdu[:4] == bytes.fromhex("002A9E9A") and response[-2:] == b"\x90\x00":
            return response[:-2] + b"\x00" + b"\x90\x00"
        return response


def test_an_ecdsa_answer_of_the_wrong_length_is_a_protocol_error(test_ca: TestCA, ecdsa_ca: TestCA) -> None:
    good = _card(CARD_2026, test_ca, ecdsa_ca)
    bad = _BadSignatureCard(good.profile, layout=CARD_2026)
    with _connect(bad) as transport:
        card = MyNumberCard(transport)
        card.verify_auth_pin("1234")
        with pytest.raises(CardProtocolError):
            card.sign_challenge(NONCE)
