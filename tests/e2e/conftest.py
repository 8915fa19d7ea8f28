"""End-to-end fixtures for the PC/SC card path: pyscard → pcscd → vpcd → emulated card.

``pcscd`` starts the daemon when none runs and waits for the vpcd reader; it FAILS (never skips)
when that is impossible. ``vpcd_bridge`` is an empty slot on that reader; insert cards with
``vpcd_bridge.insert(card)``. Cards from ``make_pcsc_card`` are checked for My Number EF access
after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinic_terminal.client import CardClient
from testbed.card_emulator import MyNumberCardEmulator, assert_no_violations, build_card
from testbed.pcscd import ensure_pcscd, wait_for_card_state
from testbed.pki import TestCA
from testbed.vpcd_bridge import DEFAULT_READER, EmulatedCard, VpcdBridge
from tests.e2e.card_steps import RecordingTransport
from tests.factories import eligibility_csv, person
from tests.integration.test_eligibility_api import upload

MakePcscCard = Callable[..., MyNumberCardEmulator]


class PcscdSlot(VpcdBridge):
    """The vpcd slot, where an insertion returns once pcscd lists the card as present.

    pcscd powers the card (what the bridge waits for) a moment before it publishes the card to
    its clients; a test that connects right after ``insert`` must not land in that gap (a kiosk
    waits for the insertion event anyway).
    """

    def insert(self, card: EmulatedCard | None = None, *, wait_powered: bool = True, timeout: float = 10.0) -> None:
        super().insert(card, wait_powered=wait_powered, timeout=timeout)
        if wait_powered:
            wait_for_card_state(self.reader_name, present=True, timeout=timeout)


@pytest.fixture(scope="session")
def pcscd() -> str:
    """The name of the vpcd reader, once pcscd runs and lists it."""
    ensure_pcscd(DEFAULT_READER)
    return DEFAULT_READER


@pytest.fixture
def vpcd_bridge(pcscd: str) -> Iterator[VpcdBridge]:
    """An empty virtual slot (the reader ``pcscd``); the card is removed after the test."""
    with PcscdSlot() as bridge:
        assert bridge.reader_name == pcscd
        # A card removed by the previous test may still look present until pcscd's next poll.
        wait_for_card_state(pcscd, present=False)
        yield bridge
    assert bridge.errors == []


@pytest.fixture(scope="session")
def pcsc_ca() -> TestCA:
    return TestCA.create(common_name="JPKI Test E2E CA")


@pytest.fixture
def make_pcsc_card(pcsc_ca: TestCA) -> Iterator[MakePcscCard]:
    made: list[MyNumberCardEmulator] = []

    def factory(**kwargs: Any) -> MyNumberCardEmulator:
        card = build_card(pcsc_ca, **kwargs)
        made.append(card)
        return card

    yield factory
    assert_no_violations(*made)


# ---------------------------------------------------------------- the terminal's HTTP side


@pytest.fixture
def wire(client: TestClient) -> RecordingTransport:
    """The app's transport, recording each ``METHOD /path`` the terminal sends."""
    return RecordingTransport(client._transport)


@pytest.fixture
def server(wire: RecordingTransport, tokens: dict[str, str]) -> Iterator[CardClient]:
    """The terminal's client, logged in as the clinic's reception."""
    with CardClient("http://testserver", tokens["reception"], transport=wire) as c:
        yield c


@pytest.fixture
def insured(client: TestClient, tokens: dict[str, str]) -> None:
    """山田 太郎 (協会けんぽ-like insurer, 30 % copay) and his wife, so linking must pick one."""
    body = eligibility_csv(
        [
            person(),
            person(branch="01", name="山田 花子", name_kana="ヤマダ ハナコ", sex="2", birth_date="1982-02-02"),
        ]
    )
    assert upload(client, tokens["insurer"], body)["accepted"] == 2
