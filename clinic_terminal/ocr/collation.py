"""The kiosk's automatic 照合番号B step: OCR the card front, verify on the card, never near the lock.

The card locks 照合番号B after 10 wrong tries (reset only at the municipal office), and a wrong
OCR read costs one try on the card's counter. So the kiosk makes **at most one automatic attempt
per card insertion** and **none at all when 2 or fewer tries are left** (:data:`TRIES_MARGIN`):
the last tries are kept for the staff's keyed entry. Every refusal is a
:class:`CollationFallbackError`: fall back to the PIN or to staff entry.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Final, Protocol, Self

import cv2

from clinic_terminal.card.errors import CollationBFormatError, CollationBLockedError, CollationBWrongError
from clinic_terminal.ocr.errors import CollationFallbackError, CollationOcrError
from clinic_terminal.ocr.reader import Image, read_collation_b

logger = logging.getLogger(__name__)

#: No automatic attempt when the card has this many tries left or fewer.
TRIES_MARGIN: Final = 2


class CollationCard(Protocol):
    """What this step needs of :class:`clinic_terminal.card.MyNumberCard`."""

    def collation_b_tries_left(self) -> int: ...

    def verify_collation_b(self, code: str) -> None: ...


class FrameSource(Protocol):
    """A camera as ``clinic_terminal.face.CameraSource`` has it (``OpenCVCamera`` fits); not
    imported from there so that this package does not load the face models."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def read(self) -> Image | None: ...


#: Card sessions (one ``MyNumberCard`` per insertion) that already had their automatic attempt.
_attempted: weakref.WeakSet[CollationCard] = weakref.WeakSet()


def collation_b_from_front(
    image: Image | bytes,
    card: CollationCard,
    *,
    read: Callable[[Image | bytes], str] = read_collation_b,
    margin: int = TRIES_MARGIN,
) -> str:
    """OCR 照合番号B from ``image`` and verify it on ``card``; returns the verified code.

    On success the card-face photo can be read in this card session. Raises
    :class:`CollationFallbackError` (or its subclass :class:`~clinic_terminal.ocr.CollationOcrError`)
    when the kiosk must fall back:

    * ``too_few_tries`` — the card has ``margin`` or fewer tries left: nothing is sent;
    * ``already_tried`` — this card session already had its automatic attempt;
    * an OCR reason — the front could not be read: nothing is sent to the card;
    * ``wrong_code`` — the card refused the code read (one try used);
    * ``locked`` — the card reports 照合番号B locked.
    """
    if margin < TRIES_MARGIN:
        raise ValueError(f"the margin may be raised, never lowered below {TRIES_MARGIN}")
    if card in _attempted:
        raise CollationFallbackError("already_tried", "one automatic attempt per card insertion")
    tries = card.collation_b_tries_left()
    if tries <= margin:
        logger.info("ocr: 照合番号B not tried automatically (%d tries left)", tries)
        raise CollationFallbackError("too_few_tries", "keep the last tries for staff entry", tries_left=tries)
    code = read(image)  # CollationOcrError: nothing reaches the card
    _attempted.add(card)
    try:
        card.verify_collation_b(code)
    except CollationBWrongError as exc:
        logger.info("ocr: 照合番号B read by OCR was refused by the card (%d tries left)", exc.tries_left)
        raise CollationFallbackError(
            "wrong_code", "the card refused the code read", tries_left=exc.tries_left
        ) from None
    except CollationBLockedError:
        raise CollationFallbackError("locked", "照合番号B is locked on the card", tries_left=0) from None
    except CollationBFormatError:  # read_collation_b validates the shape: a bug if this happens
        raise CollationFallbackError("wrong_code", "the code read has the wrong shape") from None
    return code


def sharpest_front(camera: FrameSource, frames_n: int = 8) -> Image:
    """The sharpest of up to ``frames_n`` frames from the card-front camera (variance of the
    Laplacian), in memory. ``image_unreadable`` when no frame arrives; the camera's own errors
    (``CameraError``, ``camera_unavailable``) pass through."""
    best: Image | None = None
    best_score = -1.0
    with camera:
        for _ in range(frames_n):
            frame = camera.read()
            if frame is None:
                break
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
            score = float(cv2.Laplacian(grey, cv2.CV_64F).var())
            if score > best_score:
                best, best_score = frame, score
    if best is None:
        raise CollationOcrError("image_unreadable", "no frame of the card front arrived")
    return best
