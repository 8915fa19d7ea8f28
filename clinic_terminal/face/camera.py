"""Camera sources: a narrow Protocol, the OpenCV implementation and an in-memory fake.

``OpenCVCamera`` is the only module that talks to ``cv2.VideoCapture``; its failures are
translated into :class:`CameraError` (code ``camera_unavailable``) at this boundary.
Frames are BGR ``uint8`` arrays of shape (height, width, 3), kept in memory only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, Self, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt

from clinic_terminal.closing import Closing
from clinic_terminal.face.errors import CameraError

Frame = npt.NDArray[np.uint8]
DEVICE_WARMUP_FRAMES = 5


@runtime_checkable
class CameraSource(AbstractContextManager["CameraSource", None], Protocol):
    """Something that yields BGR frames; used as a context manager."""

    def read(self) -> Frame | None:
        """The next BGR frame, or ``None`` at the end of the stream."""
        ...


def frames(camera: CameraSource, max_n: int) -> Iterator[Frame]:
    """Up to ``max_n`` frames from an opened camera, stopping early at the end of the stream."""
    for _ in range(max_n):
        frame = camera.read()
        if frame is None:
            return
        yield frame


def _parse_source(source: str | int) -> str | int:
    if isinstance(source, int):
        return source
    text = source.strip()
    if text.isdigit():
        return int(text)
    return text


class OpenCVCamera(Closing):
    """``cv2.VideoCapture`` on a device index (``0`` or ``"0"``), a video file or a stream URL."""

    def __init__(self, source: str | int, *, warmup_frames: int | None = None) -> None:
        self._source = _parse_source(source)
        # a device's first frames are dark while auto-exposure settles; files and streams are not
        if warmup_frames is None:
            warmup_frames = DEVICE_WARMUP_FRAMES if isinstance(self._source, int) else 0
        self._warmup_frames = warmup_frames
        self._capture: cv2.VideoCapture | None = None

    def __repr__(self) -> str:
        return f"OpenCVCamera(source={self._source!r})"

    def open(self) -> None:
        try:
            capture = cv2.VideoCapture(self._source)
            opened = bool(capture.isOpened())
        except cv2.error as exc:
            raise CameraError(f"cannot open camera {self._source!r}") from exc
        if not opened:
            capture.release()
            raise CameraError(f"cannot open camera {self._source!r}")
        self._capture = capture
        for _ in range(self._warmup_frames):
            if self.read() is None:
                break

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def rewind(self) -> bool:
        """A recording (a video file) starts again from its first frame; a live device or stream
        goes on. True if it started again."""
        if self._capture is None or isinstance(self._source, int) or "://" in str(self._source):
            return False
        try:
            return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))
        except cv2.error:
            return False

    def read(self) -> Frame | None:
        if self._capture is None:
            raise CameraError("camera is not open")
        try:
            ok, frame = self._capture.read()
        except cv2.error as exc:
            raise CameraError(f"camera {self._source!r} failed while reading") from exc
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        result: Frame = np.ascontiguousarray(frame, dtype=np.uint8)
        return result


class InMemoryCamera(Closing):
    """A camera that plays back a list of BGR frames (fast tests, no codec involved)."""

    def __init__(self, frames: Sequence[Frame], *, fail_on_open: bool = False) -> None:
        self._frames = list(frames)
        self._fail_on_open = fail_on_open
        self._index = 0
        self._open = False

    def __repr__(self) -> str:
        return f"InMemoryCamera(frames={len(self._frames)})"

    def __enter__(self) -> Self:
        if self._fail_on_open:
            raise CameraError("in-memory camera configured to fail")
        self._open = True
        self._index = 0
        return self

    def close(self) -> None:
        self._open = False

    def rewind(self) -> bool:
        """Play the frames again from the first."""
        self._index = 0
        return True

    def read(self) -> Frame | None:
        if not self._open:
            raise CameraError("camera is not open")
        if self._index >= len(self._frames):
            return None
        frame = self._frames[self._index]
        self._index += 1
        return frame
