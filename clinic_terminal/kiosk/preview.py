"""The face screen's live preview and guidance, in memory only.

``PreviewCamera`` wraps the kiosk's camera: every frame the face check reads is also offered to a
``LivePreview``, which keeps only the latest one as JPEG bytes in memory (never a file) for the
patient screen to draw, and a guidance code from what the face module finds in it
(``clinic_terminal.face.find_faces``) and from the frame's brightness: closer, lighter, look at
the camera, blink. ``clear()`` drops the frame when the face step ends.

``PreviewCamera.frame()`` runs before the check reads its frames: the patient sees themselves
and the guidance until they are framed (a face, alone, near enough) for ``FRAMED_S``, or for at
most ``FRAMING_MAX_S``; those frames are shown and dropped, never given to the check.
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
FRAMED_S: Final = 1.0  # framed this long before the check starts: the patient has seen themselves
FRAMING_MAX_S: Final = 6.0  # then the check starts anyway (its own result says what went wrong)


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

    def offer(self, frame: Frame, *, now_too: bool = False) -> Guidance | None:
        """A frame the camera just gave (called from the face job's thread); ``now_too``: shown
        and assessed whatever the intervals (framing). Returns the guidance when assessed."""
        now = self._clock()
        if not now_too and now - self._last < self._min_interval:
            return None
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
        if now_too or now - self._last_detect >= self._detect_interval:
            self._last_detect = now
            guidance = assess(small, self._faces(small))
        with self._lock:
            if ok:
                self._jpeg = encoded.tobytes()
            if guidance is not None:
                self._guidance = guidance
        del small, encoded
        return guidance

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

    def __init__(self, camera: CameraSource, preview: LivePreview, *, clock: Callable[[], float] = time.monotonic,
                 framed_s: float = FRAMED_S, max_s: float = FRAMING_MAX_S) -> None:
        self._camera = camera
        self._preview = preview
        self._clock = clock
        self._framed_s = framed_s
        self._max_s = max_s

    def frame(self) -> bool:
        """Show the camera before the check: until the face has been framed (guidance ``blink``)
        for ``framed_s``, or ``max_s`` at most. Each frame is assessed as it comes (paced by the
        detection, so a file plays no faster than it is shown) and then dropped. True if framed.
        A recording (a video file, the demo's clip) then starts again, so that the check reads
        the clip it was made of rather than what framing left of it; a live camera goes on."""
        try:
            return self._frame()
        finally:
            rewind = getattr(self._camera, "rewind", None)
            if rewind is not None:
                rewind()

    def _frame(self) -> bool:
        started = self._clock()
        framed_since: float | None = None
        while (now := self._clock()) - started < self._max_s:
            frame = self._camera.read()
            if frame is None:
                return False
            try:
                guidance = self._preview.offer(frame, now_too=True)
            except Exception:  # the preview must never stop the check
                logger.debug("kiosk: a preview frame could not be shown", exc_info=True)
                return False
            finally:
                del frame
            if guidance != "blink":
                framed_since = None
            elif framed_since is None:
                framed_since = now
            elif now - framed_since >= self._framed_s:
                return True
        return False

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
