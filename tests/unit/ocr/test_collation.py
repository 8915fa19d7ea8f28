"""collation_b_from_front with the in-process card: verify once, and never walk towards the lock."""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import pytest

from clinic_terminal.card import MyNumberCard
from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.face import InMemoryCamera
from clinic_terminal.ocr import (
    TRIES_MARGIN,
    CollationFallbackError,
    CollationOcrError,
    collation_b_from_front,
    read_collation_b,
    sharpest_front,
)
from testbed.card_emulator import CardState, MyNumberCardEmulator, build_card, sample_photo_jp2
from testbed.card_front import BGR, render_card_front
from testbed.pki import TestCA

BIRTH = dt.date(1980, 4, 1)
EXPIRY = dt.date(2034, 4, 1)
RIGHT = "55040120345831"
VERIFY_WITH_DATA = bytes.fromhex("002000800E")  # VERIFY of 14 bytes (照合番号B)


@cache
def front(code: str = "5831") -> BGR:
    return render_card_front(birth_date=BIRTH, expiry=EXPIRY, security_code=code, rotation=2.5, noise=5.0, blur=0.8)


def card(test_ca: TestCA, tries: int = 10, collation_b: str = RIGHT) -> MyNumberCardEmulator:
    return build_card(test_ca, collation_b=collation_b, photo_jp2=sample_photo_jp2(),
                      not_after=EXPIRY, state=CardState(collation_b_tries_left=tries))


def verifies(emulator: MyNumberCardEmulator) -> int:
    return sum(1 for apdu in emulator.command_log if apdu.startswith(VERIFY_WITH_DATA))


def insert(reader: InProcessReader, emulator: MyNumberCardEmulator) -> MyNumberCard:
    reader.insert(emulator)
    return MyNumberCard(reader.connect())


def test_ocr_then_verify_unlocks_the_photo(test_ca: TestCA) -> None:
    emulator = card(test_ca)
    reader = InProcessReader()
    session = insert(reader, emulator)
    assert collation_b_from_front(front(), session) == RIGHT
    assert session.read_face_photo() == emulator.profile.photo_jp2
    assert emulator.state.collation_b_tries_left == 10
    assert verifies(emulator) == 1


@pytest.mark.parametrize("tries", [TRIES_MARGIN, 1, 0])
def test_no_attempt_with_two_or_fewer_tries_left(test_ca: TestCA, tries: int) -> None:
    emulator = card(test_ca, tries=tries)
    session = insert(InProcessReader(), emulator)
    with pytest.raises(CollationFallbackError) as info:
        collation_b_from_front(front(), session)
    assert info.value.reason == "too_few_tries" and info.value.tries_left == tries
    assert verifies(emulator) == 0  # nothing was tried: the counter is untouched
    assert emulator.state.collation_b_tries_left == tries


def test_a_wrong_read_costs_one_try_and_stops(test_ca: TestCA) -> None:
    emulator = card(test_ca, collation_b="55040120349999")  # the print says 5831, the chip 9999
    session = insert(InProcessReader(), emulator)
    with pytest.raises(CollationFallbackError) as info:
        collation_b_from_front(front(), session)
    assert info.value.reason == "wrong_code" and info.value.tries_left == 9
    assert "5831" not in str(info.value)
    # the same insertion: no second automatic attempt, nothing sent
    with pytest.raises(CollationFallbackError) as again:
        collation_b_from_front(front(), session)
    assert again.value.reason == "already_tried"
    assert verifies(emulator) == 1 and emulator.state.collation_b_tries_left == 9


def test_repeated_insertions_never_lock_the_card(test_ca: TestCA) -> None:
    """A front that always reads wrong, inserted again and again: the counter stops at the margin."""
    emulator = card(test_ca, collation_b="55040120349999")
    reader = InProcessReader()
    reasons = []
    for _ in range(12):
        session = insert(reader, emulator)
        with pytest.raises(CollationFallbackError) as info:
            collation_b_from_front(front(), session, read=lambda _image: RIGHT)  # skip OCR: same digits, fast
        reasons.append(info.value.reason)
        reader.remove()
    assert reasons == ["wrong_code"] * 8 + ["too_few_tries"] * 4
    assert emulator.state.collation_b_tries_left == TRIES_MARGIN
    assert verifies(emulator) == 8


def test_an_unreadable_front_sends_nothing(test_ca: TestCA) -> None:
    emulator = card(test_ca)
    session = insert(InProcessReader(), emulator)
    with pytest.raises(CollationOcrError) as info:
        collation_b_from_front(np.full((480, 640, 3), 30, dtype=np.uint8), session)
    assert isinstance(info.value, CollationFallbackError)
    assert verifies(emulator) == 0 and emulator.state.collation_b_tries_left == 10
    # an OCR failure is not the automatic attempt: a better picture may still be tried
    assert collation_b_from_front(front(), session) == RIGHT


def test_locked_card(test_ca: TestCA) -> None:
    emulator = card(test_ca, tries=3)
    session = insert(InProcessReader(), emulator)
    emulator.state.collation_b_tries_left = 3

    class LockingCard:
        """The counter says 3, then the card answers 69 84 (another terminal used it meanwhile)."""

        def collation_b_tries_left(self) -> int:
            return session.collation_b_tries_left()

        def verify_collation_b(self, code: str) -> None:
            emulator.state.collation_b_tries_left = 0
            session.verify_collation_b(code)

    with pytest.raises(CollationFallbackError) as info:
        collation_b_from_front(front(), LockingCard())
    assert info.value.reason == "locked" and info.value.tries_left == 0


def test_sharpest_front_picks_the_focused_frame() -> None:
    blurred = render_card_front(birth_date=BIRTH, expiry=EXPIRY, security_code="5831", blur=4.0)
    sharp = front()
    chosen = sharpest_front(InMemoryCamera([blurred, sharp, blurred]))
    assert chosen is sharp
    assert read_collation_b(chosen) == RIGHT
    with pytest.raises(CollationOcrError) as info:
        sharpest_front(InMemoryCamera([]))
    assert info.value.reason == "image_unreadable"


def test_the_margin_cannot_be_lowered(test_ca: TestCA) -> None:
    emulator = card(test_ca, tries=2)
    session = insert(InProcessReader(), emulator)
    with pytest.raises(ValueError, match="never lowered"):
        collation_b_from_front(front(), session, margin=0)
    assert verifies(emulator) == 0
