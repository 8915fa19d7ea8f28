"""Both card generations and a smartphone, end to end: first-use registration, a PIN check and
the patient's access log, from the emulated card through the terminal's card module to the server.

Three profiles (``testbed.card_emulator``): today's card (JPKI AP, RSA-2048, issued by the RSA
test root), the 2026 card (認証AP with placeholder AIDs, ECDSA P-384, issued by the ECDSA root)
and a smartphone read over NFC (its own ATR, the 2026 application, no card face). The server
trusts both roots (``trust_anchor_file``). Each runs through the real PC/SC stack (pyscard →
pcscd → vpcd → emulator; the slot is locked by ``vpcd_bridge``) and through the fast in-process
transport, on SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clinic_terminal.card import MyNumberCard, NotMyNumberCardError, PinWrongError
from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.card.pyscard_transport import PyscardTransport
from clinic_terminal.client import CardClient
from testbed.card_emulator import (
    CARD_2026,
    CURRENT_CARD,
    MY_NUMBER_CARD_ATR,
    SMARTPHONE,
    SMARTPHONE_ATR,
    BasicFactsRecord,
    CardLayout,
    MyNumberCardEmulator,
    assert_no_violations,
    build_card,
)
from testbed.pki import TestCA
from testbed.vpcd_bridge import VpcdBridge
from tests.e2e.card_steps import (
    CARD_FACTS,
    PIN,
    Connect,
    RecordingTransport,
    access_log,
    pin_check,
    register,
    server_code,
)
from tests.factories import INSURER_A

#: profile → (emulator layout, the generation the terminal must find, the root that issues it)
PROFILES: dict[str, tuple[CardLayout, str, str]] = {
    "current": (CURRENT_CARD, "current", "test_ca"),
    "2026": (CARD_2026, "2026", "test_ca_ecdsa"),
    "smartphone": (SMARTPHONE, "2026", "test_ca_ecdsa"),
}
SIGN_HEADER = {"current": bytes.fromhex("802A0080"), "2026": bytes.fromhex("002A9E9A")}


@dataclass
class Slot:
    """A reader slot: ``insert`` a card, then ``connect`` as the terminal does."""

    insert: Callable[[MyNumberCardEmulator], None]
    connect: Connect


@pytest.fixture(params=[pytest.param("pcsc", marks=pytest.mark.pcsc), "inprocess"])
def slot(request: pytest.FixtureRequest) -> Iterator[Slot]:
    if request.param == "pcsc":
        bridge = request.getfixturevalue("vpcd_bridge")  # takes the shared slot's lock

        def swap(card: MyNumberCardEmulator) -> None:  # a new card replaces the one in the reader
            if bridge.inserted:
                bridge.remove()
            bridge.insert(card)

        yield Slot(insert=swap, connect=lambda: PyscardTransport(bridge.reader_name))
        return
    reader = InProcessReader()
    yield Slot(insert=reader.insert, connect=reader.connect)


@pytest.fixture
def make_card(request: pytest.FixtureRequest) -> Iterator[Callable[..., MyNumberCardEmulator]]:
    made: list[MyNumberCardEmulator] = []

    def factory(profile: str, *, ca: TestCA | None = None, **kwargs: Any) -> MyNumberCardEmulator:
        layout, _, root = PROFILES[profile]
        kwargs.setdefault("facts", CARD_FACTS)
        card = build_card(ca or request.getfixturevalue(root), pin=PIN, layout=layout, **kwargs)
        made.append(card)
        return card

    yield factory
    assert_no_violations(*made)


# ---------------------------------------------------------------- the terminal's side


def generation_of(connect: Connect) -> tuple[str, bytes]:
    with connect() as transport:
        return MyNumberCard(transport).generation, transport.atr


# ---------------------------------------------------------------- the done-criterion


@pytest.mark.parametrize("profile", list(PROFILES))
def test_register_check_and_access_log(
    profile: str,
    slot: Slot,
    make_card: Callable[..., MyNumberCardEmulator],
    server: CardClient,
    wire: RecordingTransport,
    insured: None,
) -> None:
    layout, generation, _ = PROFILES[profile]
    card = make_card(profile)
    slot.insert(card)

    # The terminal finds the generation by the application, and the card's key is of its kind.
    assert generation_of(slot.connect) == (generation, layout.atr)
    key = x509.load_der_x509_certificate(card.profile.certificate_der).public_key()
    if generation == "2026":
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    else:
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048

    # Unlinked → registered with the four facts → a PIN check answers the eligibility.
    assert server_code(lambda: pin_check(slot.connect, server)) == "card_not_registered"
    registered = register(slot.connect, server)
    assert (registered.status, registered.insurer_number, registered.branch) == ("linked", INSURER_A, "00")

    wire.requests.clear()
    card.command_log.clear()
    result = pin_check(slot.connect, server)
    assert wire.requests == ["POST /v1/card/challenges", "POST /v1/eligibility/by-card"]
    assert result.validity == 1 and result.query_kind == "card" and result.visit_id
    assert result.insured is not None
    assert (result.insured.name, result.insured.copay_ratio) == ("山田 太郎", 30)
    signs = [apdu for apdu in card.command_log if apdu[1] == 0x2A]
    assert [apdu[:4] for apdu in signs] == [SIGN_HEADER[generation]]
    assert signs[0][4] == (48 if generation == "2026" else 51)  # SHA-384 hash / SHA-256 DigestInfo

    # The patient's own access log, proven by the same card: the link and the check are in it.
    log = access_log(slot.connect, server)
    seen = {(e.what, e.role, e.query_kind) for e in log.entries}
    assert ("eligibility", "reception", "card") in seen
    assert "card_link" in {e.what for e in log.entries}
    assert card.state.auth_pin_tries_left == 3


@pytest.mark.pcsc
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_atr_decides_nothing(
    vpcd_bridge: VpcdBridge, make_card: Callable[..., MyNumberCardEmulator], server: CardClient, insured: None
) -> None:
    """A 2026 card that presents today's card's ATR, and today's card presenting a smartphone's
    (two people, one card each): each is read, signs and is checked as its application says."""

    def connect() -> PyscardTransport:
        return PyscardTransport(vpcd_bridge.reader_name)

    hanako = BasicFactsRecord(name="山田　花子", address=CARD_FACTS.address, birth_date=dt.date(1982, 2, 2), sex="2")
    for profile, atr, facts, name in (
        ("2026", MY_NUMBER_CARD_ATR, CARD_FACTS, "山田 太郎"),
        ("current", SMARTPHONE_ATR, hanako, "山田 花子"),
    ):
        card = make_card(profile, atr=atr, facts=facts)
        vpcd_bridge.insert(card)
        assert generation_of(connect) == (PROFILES[profile][1], atr)
        assert register(connect, server).status == "linked"
        result = pin_check(connect, server)
        assert result.validity == 1 and result.insured is not None and result.insured.name == name
        vpcd_bridge.remove()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_2026_card_refusals(
    slot: Slot,
    make_card: Callable[..., MyNumberCardEmulator],
    server: CardClient,
    wire: RecordingTransport,
    insured: None,
) -> None:
    """The 2026 card's one PIN counts wrong tries for the facts and the signature alike, and a
    P-384 card from a root the server does not trust is refused."""
    card = make_card("2026")
    slot.insert(card)
    with slot.connect() as transport, pytest.raises(PinWrongError) as info:
        MyNumberCard(transport).read_basic_facts("0000")
    assert info.value.tries_left == 2 and card.state.auth_pin_tries_left == 2
    with pytest.raises(PinWrongError) as info:
        pin_check(slot.connect, server, pin="9999")
    assert info.value.tries_left == 1
    assert wire.requests == []  # nothing reached the server
    assert register(slot.connect, server).status == "linked"  # the right PIN resets the counter
    assert card.state.auth_pin_tries_left == 3

    stranger = make_card("2026", ca=TestCA.create_ecdsa(common_name="Not the JPKI root"))
    slot.insert(stranger)
    assert server_code(lambda: pin_check(slot.connect, server)) == "certificate_untrusted"


def test_a_smartphone_has_no_card_face(slot: Slot, make_card: Callable[..., MyNumberCardEmulator]) -> None:
    """The phone carries the 認証AP only: 照合番号B and the photo are the physical card's."""
    slot.insert(make_card("smartphone"))
    with slot.connect() as transport, pytest.raises(NotMyNumberCardError):
        MyNumberCard(transport).read_face_photo()
