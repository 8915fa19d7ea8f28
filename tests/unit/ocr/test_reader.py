"""OCR of rendered card fronts (testbed.card_front) into the exact 14 digits of 照合番号B."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cv2
import numpy as np
import pytest

from clinic_terminal.ocr import CollationOcrError, read_collation_b
from testbed.card_front import BirthStyle, encode_png, render_card_front

# (birth date, expiry, security code, birth style, rotation °, noise σ, blur σ) → expected 照合番号B
CASES: list[tuple[dt.date, dt.date, str, BirthStyle, float, float, float, str]] = [
    (dt.date(1980, 4, 1), dt.date(2034, 4, 1), "5831", "western", 0.0, 0.0, 0.0, "55040120345831"),
    (dt.date(1980, 4, 1), dt.date(2034, 4, 1), "5831", "era", 0.0, 0.0, 0.0, "55040120345831"),
    (dt.date(2003, 12, 28), dt.date(2031, 12, 28), "0472", "western", 3.5, 6.0, 1.0, "15122820310472"),
    (dt.date(1958, 10, 9), dt.date(2029, 10, 9), "9160", "era", -5.0, 8.0, 1.2, "33100920299160"),
    (dt.date(2019, 5, 1), dt.date(2030, 5, 1), "3388", "western", 2.0, 4.0, 0.8, "01050120303388"),
    (dt.date(1989, 1, 7), dt.date(2033, 1, 7), "7125", "western", -2.0, 10.0, 1.5, "64010720337125"),
    (dt.date(1926, 12, 24), dt.date(2027, 2, 14), "2096", "western", 7.0, 5.0, 1.0, "15122420272096"),
    (dt.date(1968, 2, 29), dt.date(2036, 2, 29), "8803", "era", -10.0, 6.0, 1.0, "43022920368803"),
]


@pytest.mark.parametrize(
    ("birth", "expiry", "code", "style", "rotation", "noise", "blur", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[3]}-rot{c[4]}" for c in CASES],
)
def test_reads_the_exact_14_digits(
    birth: dt.date, expiry: dt.date, code: str, style: BirthStyle, rotation: float, noise: float, blur: float,
    expected: str,
) -> None:
    frame = render_card_front(
        birth_date=birth, expiry=expiry, security_code=code, birth_style=style,
        rotation=rotation, noise=noise, blur=blur, seed=int(code),
    )
    assert read_collation_b(frame) == expected


def test_encoded_bytes_and_a_card_filling_the_frame() -> None:
    frame = render_card_front(birth_date=dt.date(1995, 11, 3), expiry=dt.date(2035, 11, 3), security_code="4410",
                              on_table=False)
    assert read_collation_b(encode_png(frame)) == "07110320354410"  # 平成7年
    grey = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    assert read_collation_b(grey) == "07110320354410"


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(np.random.default_rng(1).integers(0, 256, (600, 900, 3), dtype=np.uint8), id="noise"),
        pytest.param(np.full((540, 856, 3), 240, dtype=np.uint8), id="blank"),
        pytest.param(b"not an image", id="bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(np.zeros((10, 10), dtype=np.float64), id="float"),
    ],
)
def test_garbled_images_raise_a_clear_error(image: Any) -> None:
    with pytest.raises(CollationOcrError) as info:
        read_collation_b(image)
    assert info.value.reason in {
        "image_unreadable", "birth_date_unreadable", "expiry_unreadable", "security_code_unreadable", "implausible",
    }
    assert info.value.code == "collation_b_ocr"


def test_heavily_blurred_card_is_refused_not_guessed() -> None:
    frame = render_card_front(birth_date=dt.date(1980, 4, 1), expiry=dt.date(2034, 4, 1), security_code="5831",
                              blur=6.0, noise=20.0)
    with pytest.raises(CollationOcrError):
        read_collation_b(frame)


@pytest.mark.parametrize("rotation", [180.0, 90.0])
def test_card_upside_down_or_sideways_is_refused(rotation: float) -> None:
    frame = render_card_front(birth_date=dt.date(1980, 4, 1), expiry=dt.date(2034, 4, 1), security_code="5831",
                              rotation=rotation)
    with pytest.raises(CollationOcrError):
        read_collation_b(frame)


def test_scrambled_card_is_refused() -> None:
    """A card front cut into strips and shuffled: the regions hold no date."""
    frame = render_card_front(birth_date=dt.date(1980, 4, 1), expiry=dt.date(2034, 4, 1), security_code="5831",
                              on_table=False)
    strips = np.array_split(frame, 12, axis=1)
    order = np.random.default_rng(3).permutation(len(strips))
    scrambled = np.ascontiguousarray(np.concatenate([strips[i] for i in order], axis=1)[::-1])
    with pytest.raises(CollationOcrError):
        read_collation_b(scrambled)


def test_error_messages_carry_no_digits() -> None:
    frame = render_card_front(birth_date=dt.date(1980, 4, 1), expiry=dt.date(2034, 4, 1), security_code="5831",
                              on_table=False)
    frame[430:500, 220:400] = 255  # the security code box wiped out
    with pytest.raises(CollationOcrError) as info:
        read_collation_b(frame)
    assert info.value.reason == "security_code_unreadable"
    assert "5831" not in str(info.value) and "550401" not in str(info.value)
