"""Errors of the 照合番号B OCR. Every one tells the kiosk to fall back to the PIN or to staff entry."""

from __future__ import annotations

from typing import Literal

OcrReason = Literal[
    "image_unreadable",
    "tesseract_unavailable",
    "birth_date_unreadable",
    "expiry_unreadable",
    "security_code_unreadable",
    "implausible",
]
FallbackReason = Literal["too_few_tries", "already_tried", "wrong_code", "locked"]


class CollationFallbackError(Exception):
    """No (further) automatic 照合番号B attempt: use the PIN, or let staff key the code in.

    ``reason`` is stable; ``tries_left`` is the card's counter when known. No digit of the code
    is ever put in the message.
    """

    code = "collation_b_fallback"

    def __init__(self, reason: str, detail: str | None = None, *, tries_left: int | None = None) -> None:
        self.reason = reason
        self.tries_left = tries_left
        text = f"{reason}: {detail}" if detail else reason
        if tries_left is not None:
            text += f" (tries left: {tries_left})"
        super().__init__(text)


class CollationOcrError(CollationFallbackError):
    """The card front could not be read into a plausible 照合番号B; nothing was sent to the card."""

    code = "collation_b_ocr"

    def __init__(self, reason: OcrReason, detail: str | None = None) -> None:
        super().__init__(reason, detail)
