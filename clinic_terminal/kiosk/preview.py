"""The face screen's live preview and guidance, in memory only.

``PreviewCamera`` wraps the kiosk's camera: every frame the face check reads is also offered to a
``LivePreview``, which keeps only the latest one as JPEG bytes in memory (never a file) for the
patient screen to draw, and a guidance code from what the face module finds in it
(``clinic_terminal.face.find_faces``) and from the frame's brightness: closer, lighter, look at
the camera, blink. ``clear()`` drops the frame when the face step ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, Self

if TYPE_CHECKING:
    from clinic_terminal.face.camera import CameraSource, Frame

logger = logging.getLogger(__name__)

Guidance = Literal["closer", "lighter", "look", "alone", "blink"]
GUIDANCE_TEXT: Final[dict[str, str]] = {
    "closer": "もう少し近づいてください",
    "lighter": "明るい場所でカメラを見てください",
    "look": "カメラを見てください",
    "alone": "お一人でカメラの前に立ってください",
    "blink": "そのまま、まばたきしてください",
}
DARK_MEAN: Final = 60  # mean grey level below which the picture is too dark to find a face
NEAR_WIDTH: Final = 0.22  # a face narrower than this part of the frame is too far away
PREVIEW_WIDTH: Final = 480  # the preview is scaled down to this width (the check keeps its own frames)


def assess(frame: Frame, boxes: list[tuple[int, int, int, int]]) -> Guidance:
    """The guidance for one frame and the face boxes found in it (largest first)."""
    import numpy as np

    if float(np.mean(frame)) < DARK_MEAN:
        return "lighter"
    if not boxes:
        return "look"
    if len(boxes) > 1:
        return "alone"
    _, right, _, left = boxes[0]
    if (right - left) < NEAR_WIDTH * frame.shape[1]:
        return "closer"
    return "blink"  # in frame and near enough: the liveness check wants a blink


class LivePreview:
    """The latest camera frame (JPEG, in memory) and its guidance; thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.1,
        detect_interval_s: float = 0.3,
        find_faces: Callable[[Frame], list[tuple[int, int, int, int]]] | None = None,
    ) -> None:
        self._clock = clock
        self._min_interval = min_interval_s
        self._detect_interval = detect_interval_s
        self._find_faces = find_faces
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._guidance: Guidance | None = None
        self._last = float("-inf")
        self._last_detect = float("-inf")

    def offer(self, frame: Frame) -> None:
        """A frame the camera just gave (called from the face job's thread)."""
        now = self._clock()
        if now - self._last < self._min_interval:
            return
        self._last = now
        import cv2
        import numpy as np

        height, width = frame.shape[:2]
        small = frame
        if width > PREVIEW_WIDTH:
            size = (PREVIEW_WIDTH, max(1, round(height * PREVIEW_WIDTH / width)))
            small = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
        guidance = None
        if now - self._last_detect >= self._detect_interval:
            self._last_detect = now
            guidance = assess(small, self._faces(small))
        with self._lock:
            if ok:
                self._jpeg = encoded.tobytes()
            if guidance is not None:
                self._guidance = guidance
        del small, encoded

    def _faces(self, frame: Frame) -> list[tuple[int, int, int, int]]:
        if self._find_faces is not None:
            return self._find_faces(frame)
        import cv2
        import numpy as np

        from clinic_terminal.face import find_faces

        rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        return find_faces(rgb)

    def jpeg(self) -> bytes | None:
        with self._lock:
            return self._jpeg

    def guidance(self) -> Guidance | None:
        with self._lock:
            return self._guidance

    def guidance_text(self) -> str | None:
        code = self.guidance()
        return None if code is None else GUIDANCE_TEXT[code]

    def clear(self) -> None:
        with self._lock:
            self._jpeg, self._guidance = None, None
            self._last = self._last_detect = float("-inf")


class PreviewCamera:
    """A camera that also shows what it reads (a ``CameraSource`` around a ``CameraSource``)."""

    def __init__(self, camera: CameraSource, preview: LivePreview) -> None:
        self._camera = camera
        self._preview = preview

    def __enter__(self) -> Self:
        self._camera.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._camera.__exit__(exc_type, exc, tb)

    def read(self) -> Frame | None:
        frame = self._camera.read()
        if frame is not None:
            try:
                self._preview.offer(frame)
            except Exception:  # the preview must never stop the check
                logger.debug("kiosk: a preview frame could not be shown", exc_info=True)
        return frame
