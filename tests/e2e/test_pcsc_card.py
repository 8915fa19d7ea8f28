"""The card path through the real PC/SC stack: pyscard → pcscd → vpcd driver → emulator."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest

from clinic_terminal.card import (
    CardRemovedError,
    MyNumberCard,
    NoCardError,
    NoReaderError,
    NotMyNumberCardError,
    PinBlockedError,
    PinWrongError,
)
from clinic_terminal.card.monitor import CardEvent, CardEventKind, CardWatcher, wait_for
from clinic_terminal.card.pyscard_monitor import PyscardCardMonitor
from clinic_terminal.card.pyscard_transport import PyscardTransport, list_readers
from shikaku_server.card.verify import verify_certificate_chain, verify_pin_signature
from testbed.card_emulator import ForeignCardEmulator, MyNumberCardEmulator, sample_photo_jp2
from testbed.pcscd import wait_for_card_state
from testbed.pki import TestCA
from testbed.vpcd_bridge import VpcdBridge

MakePcscCard = Callable[..., MyNumberCardEmulator]  # the ``make_pcsc_card`` fixture
pytestmark = pytest.mark.pcsc

NONCE = bytes(range(32))


def test_reader_is_listed(pcscd: str) -> None:
    assert pcscd in list_readers()


def test_read_certificate_pin_and_signature(
    vpcd_bridge: VpcdBridge, make_pcsc_card: MakePcscCard, pcsc_ca: TestCA, pcscd: str
) -> None:
    card = make_pcsc_card()
    vpcd_bridge.insert(card)
    with PyscardTransport(pcscd) as transport:
        assert transport.atr == bytes.fromhex("3BE000FF8131FE4514")
        reader = MyNumberCard(transport)
        der = reader.read_auth_certificate()
        assert reader.read_ca_certificate() == pcsc_ca.der
        assert reader.auth_pin_tries_left() == 3
        signature = reader.authenticate("1234", NONCE)
    assert der == card.profile.certificate_der
    verified = verify_certificate_chain(der, [pcsc_ca.certificate], set(), dt.date(2026, 1, 1))
    verify_pin_signature(verified.certificate, NONCE, signature)


def test_basic_facts_and_face_photo(vpcd_bridge: VpcdBridge, make_pcsc_card: MakePcscCard) -> None:
    photo = sample_photo_jp2(160, 200)  # several kB: many READ BINARY chunks
    card = make_pcsc_card(photo_jp2=photo)
    vpcd_bridge.insert(card)
    with PyscardTransport() as transport:
        reader = MyNumberCard(transport)
        facts = reader.read_basic_facts("1234")
        reader.verify_collation_b(card.profile.collation_b)
        assert reader.read_face_photo() == photo
    assert facts.name == card.profile.facts.name
    assert facts.birth_date == card.profile.facts.birth_date


def test_wrong_pin_then_blocked_across_insertions(vpcd_bridge: VpcdBridge, make_pcsc_card: MakePcscCard) -> None:
    card = make_pcsc_card()
    vpcd_bridge.insert(card)
    with PyscardTransport() as transport:
        reader = MyNumberCard(transport)
        with pytest.raises(PinWrongError) as info:
            reader.verify_auth_pin("0000")
        assert info.value.tries_left == 2
        with pytest.raises(PinWrongError):
            reader.verify_auth_pin("0000")
    vpcd_bridge.remove()
    vpcd_bridge.insert(card)  # a new session: the counter is on the card
    with PyscardTransport() as transport:
        reader = MyNumberCard(transport)
        assert reader.auth_pin_tries_left() == 1
        with pytest.raises(PinBlockedError):
            reader.verify_auth_pin("0000")
        with pytest.raises(PinBlockedError):
            reader.verify_auth_pin("1234")
        assert reader.auth_pin_tries_left() == 0


def test_card_removed_mid_read(vpcd_bridge: VpcdBridge, make_pcsc_card: MakePcscCard) -> None:
    vpcd_bridge.insert(make_pcsc_card())
    count = 0

    def pull_out(_apdu: bytes) -> None:
        nonlocal count
        count += 1
        if count == 4:  # SELECT AP, SELECT EF, READ, then gone during the second READ
            vpcd_bridge.remove()

    vpcd_bridge.before_apdu.append(pull_out)
    with PyscardTransport() as transport, pytest.raises(CardRemovedError):
        MyNumberCard(transport).read_auth_certificate()
    vpcd_bridge.before_apdu.clear()


def test_not_a_my_number_card(vpcd_bridge: VpcdBridge) -> None:
    vpcd_bridge.insert(ForeignCardEmulator())
    with PyscardTransport() as transport:
        assert transport.atr != bytes.fromhex("3BE000FF8131FE4514")
        with pytest.raises(NotMyNumberCardError):
            MyNumberCard(transport).read_auth_certificate()


def test_no_card_inserted(vpcd_bridge: VpcdBridge) -> None:
    assert not vpcd_bridge.inserted
    with pytest.raises(NoCardError):
        PyscardTransport(vpcd_bridge.reader_name)


def test_unknown_reader(pcscd: str) -> None:
    with pytest.raises(NoReaderError):
        PyscardTransport("No Such Reader 00 00")


def test_monitor_sees_insertion_and_removal(vpcd_bridge: VpcdBridge, make_pcsc_card: MakePcscCard) -> None:
    monitor = PyscardCardMonitor(vpcd_bridge.reader_name)
    try:
        assert not monitor.present
        card = make_pcsc_card()
        vpcd_bridge.insert(card, wait_powered=False)
        inserted = wait_for(monitor, CardEventKind.INSERTED, 5.0)
        assert inserted.atr == card.atr
        vpcd_bridge.remove()
        assert wait_for(monitor, CardEventKind.REMOVED, 5.0).kind is CardEventKind.REMOVED
    finally:
        monitor.close()


def test_watcher_reports_pcsc_events(vpcd_bridge: VpcdBridge, make_pcsc_card: MakePcscCard) -> None:
    events: list[CardEventKind] = []
    both = threading.Event()

    def on_event(event: CardEvent) -> None:
        events.append(event.kind)
        if len(events) == 2:
            both.set()

    with CardWatcher(PyscardCardMonitor(vpcd_bridge.reader_name), on_event):
        vpcd_bridge.insert(make_pcsc_card())
        wait_for_card_state(vpcd_bridge.reader_name, present=True)
        vpcd_bridge.remove()
        assert both.wait(5.0)
    assert events == [CardEventKind.INSERTED, CardEventKind.REMOVED]
