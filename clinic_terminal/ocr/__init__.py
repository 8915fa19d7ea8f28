"""照合番号B by OCR of the card front (Tesseract, digits only), and the kiosk's safe use of it.

Public API: :func:`read_collation_b` (image → 14 digits), :func:`collation_b_from_front` (OCR +
VERIFY on the card, stopping well before the card's 10-try lock), the era helpers
(:func:`era_yymmdd`, :func:`era_of`, :func:`collation_b`, :func:`validate_collation_b`) and the
errors (:class:`CollationFallbackError`, :class:`CollationOcrError`). See ``docs/ocr.md``.
"""

from __future__ import annotations

from clinic_terminal.ocr.collation import (
    TRIES_MARGIN,
    CollationCard,
    FrameSource,
    collation_b_from_front,
    sharpest_front,
)
from clinic_terminal.ocr.era import ERAS, Era, collation_b, era_of, era_yymmdd, validate_collation_b
from clinic_terminal.ocr.errors import CollationFallbackError, CollationOcrError
from clinic_terminal.ocr.reader import read_collation_b

__all__ = [
    "ERAS",
    "TRIES_MARGIN",
    "CollationCard",
    "CollationFallbackError",
    "CollationOcrError",
    "Era",
    "FrameSource",
    "collation_b",
    "collation_b_from_front",
    "era_of",
    "era_yymmdd",
    "read_collation_b",
    "sharpest_front",
    "validate_collation_b",
]
