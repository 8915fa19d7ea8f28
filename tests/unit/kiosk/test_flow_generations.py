"""The kiosk's PIN path with a 2026 card and with a smartphone: the same screens as today's card,
first-use registration included; the fake server checks the signature with the server's own
``verify_pin_signature`` (ECDSA P-384 / SHA-384 here)."""

from __future__ import annotations

import pytest

from testbed.card_emulator import CARD_2026, SMARTPHONE, CardLayout, build_card
from testbed.pki import TestCA
from tests.unit.kiosk.conftest import FACTS, MakeKiosk


@pytest.fixture(scope="module")
def ecdsa_ca() -> TestCA:
    return TestCA.create_ecdsa(common_name="JPKI Test Kiosk CA (ECDSA P-384)")


@pytest.mark.parametrize("layout", [CARD_2026, SMARTPHONE], ids=["2026", "smartphone"])
def test_first_use_and_pin_check_with_the_new_generation(
    make_kiosk: MakeKiosk, ecdsa_ca: TestCA, layout: CardLayout
) -> None:
    card = build_card(ecdsa_ca, pin="1234", facts=FACTS, layout=layout)
    k = make_kiosk(linked=False, card=card)
    assert k.flow.read_card().name == "choose_method"
    k.flow.choose("pin")
    assert k.flow.submit_pin("1234").name == "register"
    screen = k.flow.submit_registration("1234")
    assert screen.name == "consent"
    assert screen.patient_name == FACTS.name
    (facts,) = k.server.registrations
    assert (facts.name, facts.birth_date) == (FACTS.name, FACTS.birth_date)
    signs = [apdu[:4] for apdu in card.command_log if apdu[1] == 0x2A]
    assert signs and set(signs) == {bytes.fromhex("002A9E9A")}  # PSO: COMPUTE DIGITAL SIGNATURE
    assert card.state.auth_pin_tries_left == 3


def test_wrong_pin_on_a_2026_card_counts_on_its_one_pin(make_kiosk: MakeKiosk, ecdsa_ca: TestCA) -> None:
    card = build_card(ecdsa_ca, pin="1234", facts=FACTS, layout=CARD_2026)
    k = make_kiosk(card=card)
    k.flow.read_card()
    k.flow.choose("pin")
    screen = k.flow.submit_pin("0000")
    assert screen.name == "pin" and screen.tries_left == 2
    assert k.flow.submit_pin("1234").name == "consent"
