"""The whole card path: emulated card → vpcd → pcscd → pyscard → terminal code → central server.

The card is issued by the session ``test_ca`` — the same root the server trusts through
``SHIKAKU_TRUST_ANCHORS`` — and read with the terminal's own ``MyNumberCard`` over
``PyscardTransport``; the terminal's ``CardClient`` talks to the real app (``create_app``) through
the TestClient's transport. The happy path and the server-side refusals (revoked, expired,
unlinked) run on both backends; the card-side failures, which never reach the server, on SQLite.

Terminal order of work (what ``pin_check`` does): read the certificate (no PIN), verify the PIN on
the card, only then ask the server for a challenge, sign it on the card, and send the signature.
So a wrong or blocked PIN never causes a request to the server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509

from clinic_terminal.card import MyNumberCard, NotMyNumberCardError, PinBlockedError, PinWrongError
from clinic_terminal.card.pyscard_transport import PyscardTransport
from clinic_terminal.client import CardClient
from schemas.card import Registered
from schemas.eligibility import EligibilityResult
from shikaku_server.config import Settings
from shikaku_server.eligibility.service import today_jst
from testbed.card_emulator import (
    CardState,
    ForeignCardEmulator,
    MyNumberCardEmulator,
    assert_no_violations,
    build_card,
)
from testbed.pki import TestCA
from testbed.vpcd_bridge import VpcdBridge
from tests.e2e.card_steps import CARD_FACTS, PIN, Connect, RecordingTransport, register, server_code
from tests.e2e.card_steps import pin_check as check
from tests.factories import INSURER_A
from tests.integration.test_card_api import revoke

pytestmark = pytest.mark.pcsc

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

MakeCard = Callable[..., MyNumberCardEmulator]


@pytest.fixture
def make_card(test_ca: TestCA) -> Iterator[MakeCard]:
    """Cards issued by the CA the server trusts; checked for My Number EF access afterwards."""
    made: list[MyNumberCardEmulator] = []

    def factory(**kwargs: Any) -> MyNumberCardEmulator:
        kwargs.setdefault("facts", CARD_FACTS)
        card = build_card(test_ca, pin=PIN, **kwargs)
        made.append(card)
        return card

    yield factory
    assert_no_violations(*made)


# ---------------------------------------------------------------- the terminal's side


def _pcsc(reader: str) -> Connect:
    return lambda: PyscardTransport(reader)


def link_card(reader: str, server: CardClient, pin: str = PIN) -> Registered:
    """初回登録 through PC/SC (``card_steps.register``)."""
    return register(_pcsc(reader), server, pin)


def pin_check(reader: str, server: CardClient, pin: str = PIN) -> EligibilityResult:
    """A by-card check with the PIN through PC/SC (``card_steps.pin_check``)."""
    return check(_pcsc(reader), server, pin)


# ---------------------------------------------------------------- the done-criterion


def test_first_use_link_then_pin_check_returns_eligibility(
    vpcd_bridge: VpcdBridge,
    make_card: MakeCard,
    server: CardClient,
    wire: RecordingTransport,
    insured: None,
    test_ca: TestCA,
    settings: Settings,
) -> None:
    card = make_card()
    reader = vpcd_bridge.reader_name

    # The card's CA is the anchor the server trusts.
    vpcd_bridge.insert(card)
    with PyscardTransport(reader) as transport:
        assert MyNumberCard(transport).read_ca_certificate() == test_ca.der
    assert settings.trust_anchors is not None
    with open(settings.trust_anchors, "rb") as anchors:
        assert test_ca.pem in anchors.read()

    # An unlinked card is refused, then linked at first use with the four facts.
    assert server_code(lambda: pin_check(reader, server)) == "card_not_registered"
    registered = link_card(reader, server)
    assert (registered.status, registered.insurer_number, registered.branch) == ("linked", INSURER_A, "00")
    vpcd_bridge.remove()

    # The next visit: place the card, enter the PIN, get the eligibility.
    wire.requests.clear()
    vpcd_bridge.insert(card)
    result = pin_check(reader, server)
    assert wire.requests == ["POST /v1/card/challenges", "POST /v1/eligibility/by-card"]
    assert result.usable and result.validity == 1 and result.query_kind == "card"
    assert result.insured is not None
    assert result.insured.name == "山田 太郎"
    assert result.insured.copay_ratio == 30
    assert (result.insured.insurer_number, result.insured.branch) == (INSURER_A, "00")
    assert result.visit_id
    assert result.certificate_notice is None
    assert card.state.auth_pin_tries_left == 3


# ---------------------------------------------------------------- failures, each with its code


@SQLITE_ONLY
def test_wrong_pin_reports_tries_and_sends_nothing(
    vpcd_bridge: VpcdBridge, make_card: MakeCard, server: CardClient, wire: RecordingTransport, insured: None
) -> None:
    card = make_card()
    vpcd_bridge.insert(card)
    link_card(vpcd_bridge.reader_name, server)
    wire.requests.clear()

    with pytest.raises(PinWrongError) as info:
        pin_check(vpcd_bridge.reader_name, server, pin="0000")
    assert info.value.code == "pin_wrong" and info.value.tries_left == 2
    with pytest.raises(PinWrongError) as info:
        pin_check(vpcd_bridge.reader_name, server, pin="9999")
    assert info.value.tries_left == 1
    assert wire.requests == []  # the server saw nothing of either attempt

    assert pin_check(vpcd_bridge.reader_name, server).validity == 1  # the right PIN resets the counter
    assert card.state.auth_pin_tries_left == 3


@SQLITE_ONLY
def test_blocked_pin_makes_a_server_call_impossible(
    vpcd_bridge: VpcdBridge, make_card: MakeCard, server: CardClient, wire: RecordingTransport, insured: None
) -> None:
    card = make_card(state=CardState(auth_pin_tries_left=1))
    vpcd_bridge.insert(card)
    with pytest.raises(PinBlockedError) as info:  # the last try used up
        pin_check(vpcd_bridge.reader_name, server, pin="0000")
    assert info.value.code == "pin_blocked"
    with pytest.raises(PinBlockedError):  # the right PIN no longer helps
        pin_check(vpcd_bridge.reader_name, server)
    with PyscardTransport(vpcd_bridge.reader_name) as transport:
        reader = MyNumberCard(transport)
        assert reader.auth_pin_tries_left() == 0
        _, sw = transport.transmit(bytes.fromhex("0020008004") + PIN.encode())
        assert sw == 0x6984
        with pytest.raises(PinBlockedError):  # and the card refuses to sign anything
            reader.sign_challenge(bytes(32))
    assert wire.requests == []


def test_revoked_certificate(
    vpcd_bridge: VpcdBridge,
    make_card: MakeCard,
    server: CardClient,
    insured: None,
    test_ca: TestCA,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = make_card()
    vpcd_bridge.insert(card)
    link_card(vpcd_bridge.reader_name, server)
    assert pin_check(vpcd_bridge.reader_name, server).validity == 1  # verified (and cached) once

    serial = x509.load_der_x509_certificate(card.profile.certificate_der).serial_number
    revoke(test_ca, serial, session_factory, settings, monkeypatch)

    assert server_code(lambda: pin_check(vpcd_bridge.reader_name, server)) == "certificate_revoked"


def test_expired_certificate(vpcd_bridge: VpcdBridge, make_card: MakeCard, server: CardClient, insured: None) -> None:
    today = today_jst()
    # Past the grace period too: 3 months after the end of the month of expiry.
    vpcd_bridge.insert(make_card(not_before=dt.date(2019, 1, 1), not_after=today - dt.timedelta(days=200)))
    assert server_code(lambda: pin_check(vpcd_bridge.reader_name, server)) == "certificate_expired"
    assert server_code(lambda: link_card(vpcd_bridge.reader_name, server)) == "certificate_expired"


def test_unlinked_card(vpcd_bridge: VpcdBridge, make_card: MakeCard, server: CardClient, insured: None) -> None:
    vpcd_bridge.insert(make_card())
    assert server_code(lambda: pin_check(vpcd_bridge.reader_name, server)) == "card_not_registered"


@SQLITE_ONLY
def test_not_a_my_number_card(vpcd_bridge: VpcdBridge, server: CardClient, wire: RecordingTransport) -> None:
    foreign = ForeignCardEmulator()
    vpcd_bridge.insert(foreign)
    with pytest.raises(NotMyNumberCardError) as info:
        pin_check(vpcd_bridge.reader_name, server)
    assert info.value.code == "not_my_number_card"
    assert wire.requests == []
    assert_no_violations(foreign)
