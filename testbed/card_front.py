"""A synthetic My Number card FRONT, as a camera would see it, for the 照合番号B OCR tests.

Real cards are not available to the project, so this draws one with Pillow in a fixed layout
(our own, modelled loosely on the public sample images: name, address, birth date, sex, the
validity box, a photo area and the 4-digit security code). Japanese text uses Noto Sans CJK JP;
the digits use DejaVu Sans (a plain Latin font), so Tesseract's ``eng`` data can read them.

* :func:`render_card_front` -- the card, optionally rotated on a dark table with noise and blur
  (a camera frame), as a BGR ``uint8`` array (the terminal's frame format). Nothing is written.
* :func:`encode_png` -- the same as PNG bytes (the reader also accepts encoded bytes).

Birth date style: ``"western"`` (``1980年 4月 1日生``) is the default — what the card shows for
cards issued from the 2026 design on; ``"era"`` (``昭和55年 4月 1日生``) is the older style.
The validity line is always western (``2034年 4月 1日まで有効``).

Canonical card size is 856 x 540 px (10 px per mm of the 85.6 x 54 mm ID-1 card). The regions
the reader crops (``clinic_terminal.ocr.reader.REGIONS``) are fractions of this size.
"""

from __future__ import annotations

import datetime as dt
import io
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

__all__ = ["BGR", "CARD_SIZE", "BirthStyle", "encode_png", "era_of", "render_card_front"]

BGR = npt.NDArray[np.uint8]
BirthStyle = Literal["western", "era"]

CARD_SIZE = (856, 540)  # width, height in px: 10 px / mm

CJK_FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"  # index 0: Noto Sans CJK JP
CJK_BOLD_FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
DIGIT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DIGIT_BOLD_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

INK = (25, 25, 30)
LABEL = (90, 90, 100)
PAPER = (246, 246, 242)
TINT = (228, 236, 246)

# Era starts, independent of the terminal's table on purpose (a cross-check in the tests).
_ERAS = (
    ("令和", dt.date(2019, 5, 1)),
    ("平成", dt.date(1989, 1, 8)),
    ("昭和", dt.date(1926, 12, 25)),
    ("大正", dt.date(1912, 7, 30)),
    ("明治", dt.date(1868, 1, 25)),
)


def era_of(day: dt.date) -> tuple[str, int]:
    """(era name, era year) of a date; 元年 is year 1."""
    for name, start in _ERAS:
        if day >= start:
            return name, day.year - start.year + 1
    raise ValueError(f"{day} is before 明治")


@lru_cache(maxsize=32)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=0)


def _mixed(draw: ImageDraw.ImageDraw, xy: tuple[int, int], parts: list[str], size: int, *, bold: bool = False) -> int:
    """Draw text where runs of ASCII digits use the Latin font and the rest Noto CJK; returns the end x."""
    x, y = xy
    digit_font = _font(DIGIT_BOLD_FONT if bold else DIGIT_FONT, size)
    cjk_font = _font(CJK_BOLD_FONT if bold else CJK_FONT, size)
    for part in parts:
        font = digit_font if part.isascii() else cjk_font
        # align the digits' baseline with the CJK text: both fonts drawn from their ascender line
        dy = 0 if font is cjk_font else round(size * 0.12)
        draw.text((x, y + dy), part, fill=INK, font=font)
        x += round(draw.textlength(part, font=font))
    return x


def _date_parts(day: dt.date, *, era: bool, tail: str) -> list[str]:
    if era:
        name, year = era_of(day)
        year_text = "元" if year == 1 else str(year)
        head = [name, year_text] if year_text.isascii() else [name + year_text]
    else:
        head = [str(day.year)]
    return [*head, "年 ", str(day.month), "月 ", str(day.day), f"日{tail}"]


def render_card_front(
    *,
    birth_date: dt.date,
    expiry: dt.date,
    security_code: str,
    name: str = "試験 太郎",
    address: str = "東京都千代田区霞が関一丁目2番2号",
    sex: str = "1",
    birth_style: BirthStyle = "western",
    rotation: float = 0.0,
    noise: float = 0.0,
    blur: float = 0.0,
    on_table: bool = True,
    seed: int = 0,
) -> BGR:
    """The card front as a BGR frame: upright card (``on_table=False``) or photographed on a table.

    ``rotation`` in degrees (counter-clockwise), ``noise`` the sensor noise sigma in grey levels,
    ``blur`` the Gaussian blur sigma in px (defocus).
    """
    if len(security_code) != 4 or not security_code.isdigit():
        raise ValueError("the security code has 4 digits")
    width, height = CARD_SIZE
    card = Image.new("RGB", CARD_SIZE, PAPER)
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, height - 130, width, height), fill=TINT)
    draw.rounded_rectangle((2, 2, width - 3, height - 3), radius=30, outline=(200, 200, 205), width=3)

    label = _font(CJK_FONT, 20)
    draw.text((30, 34), "氏名", fill=LABEL, font=label)
    draw.text((100, 22), name, fill=INK, font=_font(CJK_FONT, 40))
    draw.text((30, 104), "住所", fill=LABEL, font=label)
    draw.text((100, 100), address, fill=INK, font=_font(CJK_FONT, 26))

    # birth date and sex
    _mixed(draw, (100, 184), _date_parts(birth_date, era=birth_style == "era", tail="生"), 34)
    draw.text((440, 190), "性別", fill=LABEL, font=label)
    draw.text((495, 184), {"1": "男", "2": "女"}.get(sex, ""), fill=INK, font=_font(CJK_FONT, 34))

    # the validity box
    draw.rectangle((28, 262, 560, 326), outline=INK, width=2)
    draw.text((40, 282), "有効期限", fill=LABEL, font=label)
    _mixed(draw, (140, 272), _date_parts(expiry, era=False, tail="まで有効"), 32)

    # photo area (the chip's photo is what the terminal compares; this is only the print)
    draw.rectangle((610, 40, 826, 316), fill=(205, 205, 210), outline=(160, 160, 170), width=2)
    draw.ellipse((660, 80, 776, 210), fill=(180, 180, 188))
    draw.rectangle((640, 220, 796, 316), fill=(180, 180, 188))

    # security code box (bottom left) and the card title
    draw.text((30, 448), "セキュリティコード", fill=LABEL, font=label)
    draw.rectangle((230, 428, 380, 494), fill=(255, 255, 255), outline=INK, width=2)
    draw.text((248, 436), security_code, fill=INK, font=_font(DIGIT_BOLD_FONT, 40))
    draw.text((560, 440), "個人番号カード", fill=INK, font=_font(CJK_BOLD_FONT, 36))

    rgb = np.asarray(card, dtype=np.uint8)
    frame = np.ascontiguousarray(rgb[:, :, ::-1])
    if on_table:
        frame = _on_table(frame, rotation)
    elif rotation:
        m = cv2.getRotationMatrix2D((width / 2, height / 2), rotation, 1.0)
        frame = np.asarray(
            cv2.warpAffine(frame, m, (width, height), borderMode=cv2.BORDER_CONSTANT, borderValue=PAPER[::-1]),
            dtype=np.uint8,
        )
    if blur > 0:
        frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), blur), dtype=np.uint8)
    if noise > 0:
        rng = np.random.default_rng(seed)
        noisy = frame.astype(np.float32) + rng.normal(0.0, noise, frame.shape).astype(np.float32)
        frame = np.clip(noisy, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def _on_table(card: BGR, rotation: float) -> BGR:
    """The card in the middle of a 1100 x 760 dark frame (the reader's tray), rotated."""
    out_w, out_h = 1100, 760
    h, w = card.shape[:2]
    m = np.asarray(cv2.getRotationMatrix2D((w / 2, h / 2), rotation, 1.0), dtype=np.float64)
    m[:, 2] += ((out_w - w) / 2, (out_h - h) / 2)
    table = (52, 48, 44)
    return np.asarray(
        cv2.warpAffine(card, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=table), dtype=np.uint8
    )


def encode_png(frame: BGR) -> bytes:
    """PNG bytes of a BGR frame, in memory."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])).save(buffer, format="PNG")
    return buffer.getvalue()
