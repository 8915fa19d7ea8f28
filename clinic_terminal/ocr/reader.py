"""Read 照合番号B from a photo of the card front with Tesseract (``eng`` data, digits only).

Steps, all in memory (nothing is written; the image and crops are local variables):

1. **Card**: the largest bright quadrilateral in the frame (the card on the reader's dark tray)
   is warped to the canonical 856 x 540 px (10 px/mm); when none is found the whole frame is
   taken as the card. This removes rotation, scale and mild perspective.
2. **Regions**: fixed fractions of the card (:data:`REGIONS`): the birth-date line, the validity
   line, the security-code box. Each crop is enlarged 2x and binarised (Otsu).
3. **Digits among kanji**: ``eng`` cannot read 年/月/日, and with a digit whitelist Tesseract turns
   them into digits. So glyphs are separated first (connected components merged by horizontal
   overlap) and a glyph counts as a digit when it is clearly *shorter* than the line's tallest
   glyph (Latin digits are about 0.73 em tall, ideographs about 0.88 em) and not wider than tall.
   Consecutive digit glyphs form a group; the groups of all three regions are drawn on one clean
   canvas, one per line, and read in ONE Tesseract run (``--psm 6``,
   ``tessedit_char_whitelist=0123456789``; the PNG goes through stdin, the text comes back on
   stdout: no temporary file). A group must read as exactly as many digits as it has glyphs.
4. **Parse**: birth line → first three groups: a 4-digit year is western (converted to the era
   year), 1–2 digits are already the era year; validity line → the 4-digit year; box → 4 digits.
   The 14 digits are checked for shape (:func:`~clinic_terminal.ocr.era.validate_collation_b`).

Any failure raises :class:`CollationOcrError` with a reason; no digit is put in a message or log.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
import pytesseract

from clinic_terminal.ocr.era import era_yymmdd, validate_collation_b
from clinic_terminal.ocr.errors import CollationOcrError, OcrReason

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

CARD_SIZE: Final = (856, 540)
#: (left, top, right, bottom) as fractions of the card, for the layout of ``testbed.card_front``.
REGIONS: Final[dict[str, tuple[float, float, float, float]]] = {
    "birth": (92 / 856, 172 / 540, 432 / 856, 242 / 540),
    "expiry": (132 / 856, 264 / 540, 556 / 856, 324 / 540),
    "code": (233 / 856, 431 / 540, 377 / 856, 491 / 540),
}
DIGITS_CONFIG: Final = "--psm 6 -c tessedit_char_whitelist=0123456789"
_SCALE: Final = 2.0
_DIGIT_MAX_HEIGHT: Final = 0.86  # of the tallest glyph on the line
_DIGIT_MIN_HEIGHT: Final = 0.55
_MAX_PIXELS: Final = 6000 * 6000
_UNREADABLE: Final[dict[str, OcrReason]] = {
    "birth": "birth_date_unreadable",
    "expiry": "expiry_unreadable",
    "code": "security_code_unreadable",
}
_TESSERACT_TIMEOUT_S: Final = 10


@dataclass(frozen=True, slots=True)
class _Glyph:
    left: int
    top: int
    right: int
    bottom: int
    labels: tuple[int, ...]

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def read_collation_b(image: Image | bytes) -> str:
    """The 14-digit 照合番号B printed on the card front in ``image`` (BGR/grey array or encoded bytes)."""
    grey = _to_grey(image)
    card = _find_card(grey)
    groups = _read_all(card)
    birth, expiry, code_groups = groups["birth"], groups["expiry"], groups["code"]
    yymmdd = _birth_yymmdd(birth)
    if not expiry or len(expiry[0]) != 4:
        raise CollationOcrError("expiry_unreadable", "no 4-digit year on the validity line")
    security = "".join(code_groups)
    if len(security) != 4:
        raise CollationOcrError("security_code_unreadable", f"{len(security)} digits instead of 4")
    return validate_collation_b(yymmdd + expiry[0] + security)


# --- image → card -----------------------------------------------------------------------------------


def _to_grey(image: Image | bytes) -> Image:
    if isinstance(image, bytes | bytearray | memoryview):
        buffer = np.frombuffer(bytes(image), dtype=np.uint8)
        if buffer.size == 0:
            raise CollationOcrError("image_unreadable", "empty image")
        decoded = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
        if decoded is None:
            raise CollationOcrError("image_unreadable", "the bytes are not an image OpenCV can decode")
        image = np.asarray(decoded, dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or array.size == 0:
        raise CollationOcrError("image_unreadable", "expected a uint8 grey or BGR image")
    if array.shape[0] * array.shape[1] > _MAX_PIXELS:
        raise CollationOcrError("image_unreadable", "the image is too large")
    if array.ndim == 3:
        if array.shape[2] == 4:
            array = np.asarray(cv2.cvtColor(array, cv2.COLOR_BGRA2GRAY), dtype=np.uint8)
        elif array.shape[2] == 3:
            array = np.asarray(cv2.cvtColor(array, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        else:
            raise CollationOcrError("image_unreadable", "unexpected number of channels")
    return np.ascontiguousarray(array, dtype=np.uint8)


def _order_corners(points: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Top-left, top-right, bottom-right, bottom-left; the long side is horizontal."""
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    ordered = points[np.argsort(angles)]  # clockwise in image coordinates, starting near top-left
    start = int(np.argmin(ordered.sum(axis=1)))
    ordered = np.roll(ordered, -start, axis=0)
    top = float(np.linalg.norm(ordered[1] - ordered[0]))
    side = float(np.linalg.norm(ordered[3] - ordered[0]))
    if side > top:  # the card stands upright: turn it so the long side is the top
        ordered = np.roll(ordered, 1, axis=0)
    return np.asarray(ordered, dtype=np.float32)


def _find_card(grey: Image) -> Image:
    """The card warped to :data:`CARD_SIZE`; the whole frame when no card outline is found."""
    height, width = grey.shape
    blurred = cv2.GaussianBlur(grey, (5, 5), 0)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    target = np.array(
        [[0, 0], [CARD_SIZE[0] - 1, 0], [CARD_SIZE[0] - 1, CARD_SIZE[1] - 1], [0, CARD_SIZE[1] - 1]],
        dtype=np.float32,
    )
    if contours:
        largest = max(contours, key=cv2.contourArea)
        area = float(cv2.contourArea(largest))
        if 0.15 * width * height <= area <= 0.97 * width * height:
            corners = np.asarray(cv2.boxPoints(cv2.minAreaRect(largest)), dtype=np.float32)
            hull = cv2.convexHull(largest)
            approx = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True)
            if len(approx) == 4:  # a true quadrilateral also corrects perspective
                corners = np.asarray(approx.reshape(4, 2), dtype=np.float32)
            matrix = cv2.getPerspectiveTransform(_order_corners(corners), target)
            warped = cv2.warpPerspective(grey, matrix, CARD_SIZE, flags=cv2.INTER_CUBIC,
                                         borderMode=cv2.BORDER_REPLICATE)
            return np.asarray(warped, dtype=np.uint8)
    return np.asarray(cv2.resize(grey, CARD_SIZE, interpolation=cv2.INTER_AREA), dtype=np.uint8)


# --- region → digit groups --------------------------------------------------------------------------


def _binarise(card: Image, region: str) -> Image:
    left, top, right, bottom = REGIONS[region]
    w, h = CARD_SIZE
    crop = card[round(top * h) : round(bottom * h), round(left * w) : round(right * w)]
    big = cv2.resize(crop, None, fx=_SCALE, fy=_SCALE, interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (3, 3), 0)
    _, ink = cv2.threshold(big, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return np.asarray(ink, dtype=np.uint8)


def _glyphs(ink: Image) -> tuple[list[_Glyph], npt.NDArray[np.int32]]:
    """Connected components (noise and anything touching the crop's edge dropped), merged into
    glyphs when their horizontal extents overlap; left to right."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    height, width = ink.shape
    min_area = max(12, int(height * height * 0.004))
    parts: list[list[int]] = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area or x == 0 or y == 0 or x + w >= width or y + h >= height:
            continue
        if h < 0.15 * height and w < 0.15 * height:  # specks
            continue
        parts.append([x, y, x + w, y + h, i])
    parts.sort()
    glyphs: list[_Glyph] = []
    for x0, y0, x1, y1, label in parts:
        if glyphs and x0 < glyphs[-1].right - 1:
            g = glyphs[-1]
            glyphs[-1] = _Glyph(min(g.left, x0), min(g.top, y0), max(g.right, x1), max(g.bottom, y1),
                                (*g.labels, label))
        else:
            glyphs.append(_Glyph(x0, y0, x1, y1, (label,)))
    return glyphs, np.asarray(labels, dtype=np.int32)


def _is_digit(glyph: _Glyph, tallest: int) -> bool:
    return (
        _DIGIT_MIN_HEIGHT * tallest <= glyph.height <= _DIGIT_MAX_HEIGHT * tallest
        and glyph.width <= 0.85 * glyph.height
    )


def _segment(card: Image, region: str) -> list[Image]:
    """One clean row image per digit group of ``region`` (only the group's own pixels), left to right."""
    ink = _binarise(card, region)
    glyphs, labels = _glyphs(ink)
    if not glyphs:
        return []
    groups: list[list[_Glyph]] = []
    if region == "code":  # the box holds digits only
        groups = [glyphs]
    else:
        tallest = max(g.height for g in glyphs)
        current: list[_Glyph] = []
        for glyph in glyphs:
            if _is_digit(glyph, tallest):
                current.append(glyph)
            elif current:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
    rows: list[Image] = []
    for group in groups:
        left, right = group[0].left, group[-1].right
        top, bottom = min(g.top for g in group), max(g.bottom for g in group)
        window = labels[top:bottom, left:right]
        keep = np.isin(window, [label for g in group for label in g.labels])
        rows.append(np.where(keep, 0, 255).astype(np.uint8))
    return rows


def _read_all(card: Image) -> dict[str, list[str]]:
    """The digit groups of every region, read in ONE Tesseract call (one row per group).

    Each row must read as exactly as many digits as it has glyphs (digits never touch in print).
    On a mismatch the regions are read one by one to name the unreadable one.
    """
    rows = {region: _segment(card, region) for region in REGIONS}
    flat = [row for region in REGIONS for row in rows[region]]
    if flat:
        lines = _read_rows(flat)
        if lines is not None:
            out: dict[str, list[str]] = {}
            for region in REGIONS:
                out[region], lines = lines[: len(rows[region])], lines[len(rows[region]) :]
            return out
    for region in REGIONS:
        if not rows[region] or _read_rows(rows[region]) is None:
            raise CollationOcrError(_UNREADABLE[region], f"the {region} digits could not be read consistently")
    raise CollationOcrError("implausible", "the digits could not be read consistently")  # pragma: no cover


def _read_rows(rows: list[Image]) -> list[str] | None:
    """The digits of each row, or None when a row does not read as one digit per glyph."""
    text = _tesseract(_compose(rows))
    lines = [line.strip().replace(" ", "") for line in text.splitlines() if line.strip()]
    if len(lines) != len(rows):
        return None
    for line, row in zip(lines, rows, strict=True):
        if not line.isdigit() or len(line) != _column_runs(row):
            return None
    return lines


def _column_runs(row: Image) -> int:
    """Glyphs in a row: runs of columns holding ink (digits never overlap horizontally)."""
    inked = (row < 128).any(axis=0).astype(np.int8)
    return int(np.count_nonzero(np.diff(np.concatenate(([0], inked))) == 1))


def _compose(rows: list[Image]) -> Image:
    """The rows on a white canvas, one per line, with generous spacing."""
    glyph_h = max(r.shape[0] for r in rows)
    pad = max(10, glyph_h // 2)
    width = max(r.shape[1] for r in rows) + 2 * pad
    height = sum(r.shape[0] for r in rows) + pad * (len(rows) + 1)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    y = pad
    for r in rows:
        canvas[y : y + r.shape[0], pad : pad + r.shape[1]] = r
        y += r.shape[0] + pad
    return canvas


def _tesseract(canvas: Image) -> str:
    """Run Tesseract on an in-memory PNG through stdin/stdout: no temporary file.

    (``pytesseract.image_to_string`` would write the image to a temporary file first; only its
    configured ``tesseract_cmd`` is used here.)
    """
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        raise CollationOcrError("image_unreadable", "the crop could not be encoded")
    command = [str(pytesseract.pytesseract.tesseract_cmd), "stdin", "stdout", "-l", "eng", *DIGITS_CONFIG.split()]
    try:
        done = subprocess.run(command, input=png.tobytes(), capture_output=True, timeout=_TESSERACT_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("ocr: tesseract failed: %s", type(exc).__name__)
        raise CollationOcrError("tesseract_unavailable", type(exc).__name__) from None
    if done.returncode != 0:
        logger.warning("ocr: tesseract exited with %d", done.returncode)
        raise CollationOcrError("tesseract_unavailable", f"exit status {done.returncode}")
    return done.stdout.decode("utf-8", errors="replace")


# --- groups → 照合番号B parts ------------------------------------------------------------------------


def _birth_yymmdd(groups: list[str]) -> str:
    if len(groups) < 3:
        raise CollationOcrError("birth_date_unreadable", f"{len(groups)} number groups instead of 3")
    year_text, month, day = groups[0], int(groups[1]), int(groups[2])
    if len(year_text) == 4:  # western: 1980年 4月 1日生
        try:
            birth = dt.date(int(year_text), month, day)
        except ValueError:
            raise CollationOcrError("birth_date_unreadable", "not a calendar date") from None
        try:
            return era_yymmdd(birth)
        except ValueError:
            raise CollationOcrError("birth_date_unreadable", "no era for this date") from None
    if len(year_text) in (1, 2):  # era: 昭和55年 4月 1日生 (the era name itself is not needed)
        year = int(year_text)
        if not 1 <= year <= 64 or not 1 <= month <= 12 or not 1 <= day <= 31:
            raise CollationOcrError("birth_date_unreadable", "the era date is out of range")
        return f"{year:02d}{month:02d}{day:02d}"
    raise CollationOcrError("birth_date_unreadable", "the year has neither 4 nor 1–2 digits")
