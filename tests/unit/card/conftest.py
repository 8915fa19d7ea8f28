"""Fixtures for the in-process card tests: a test CA, cards, and a reader slot.

Every card made through ``make_card`` is checked after the test: if anything selected the
My Number EF, the test fails (``testbed.card_emulator.assert_no_violations``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.card.reader import MyNumberCard
from testbed.card_emulator import MyNumberCardEmulator, assert_no_violations, build_card, sample_photo_jp2
from testbed.pki import TestCA

MakeCard = Callable[..., MyNumberCardEmulator]


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    return TestCA.create()


@pytest.fixture(scope="session")
def photo_jp2() -> bytes:
    return sample_photo_jp2()


@pytest.fixture
def make_card(test_ca: TestCA, photo_jp2: bytes) -> Iterator[MakeCard]:
    """Build cards (``build_card`` keywords); fails the test if any saw a forbidden command."""
    made: list[MyNumberCardEmulator] = []

    def factory(**kwargs: Any) -> MyNumberCardEmulator:
        kwargs.setdefault("photo_jp2", photo_jp2)
        card = build_card(test_ca, **kwargs)
        made.append(card)
        return card

    yield factory
    assert_no_violations(*made)


@pytest.fixture
def card(make_card: MakeCard) -> MyNumberCardEmulator:
    return make_card()


@pytest.fixture
def slot(card: MyNumberCardEmulator) -> InProcessReader:
    """A reader with ``card`` on it."""
    reader = InProcessReader()
    reader.insert(card)
    return reader


@pytest.fixture
def my_number_card(slot: InProcessReader) -> Iterator[MyNumberCard]:
    with slot.connect() as transport:
        yield MyNumberCard(transport)
