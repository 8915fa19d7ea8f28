"""Stable outcome codes and errors of the face check.

Messages never carry image data, encodings or file contents: only a code and a short text.
"""

from __future__ import annotations

from typing import Literal

FaceReason = Literal[
    "no_face",
    "several_faces",
    "no_match",
    "liveness_failed",
    "camera_unavailable",
    "card_photo_unreadable",
]

REASONS: tuple[FaceReason, ...] = (
    "no_face",
    "several_faces",
    "no_match",
    "liveness_failed",
    "camera_unavailable",
    "card_photo_unreadable",
)


class FaceCheckError(Exception):
    """A face check that could not be carried out (hardware or input), as opposed to a refusal."""

    code: FaceReason = "camera_unavailable"

    def __init__(self, message: str, *, code: FaceReason | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={str(self)!r})"


class CameraError(FaceCheckError):
    """The camera could not be opened or delivered no frame."""

    code: FaceReason = "camera_unavailable"


class CardPhotoError(FaceCheckError):
    """The card photo could not be decoded, or holds no usable face."""

    code: FaceReason = "card_photo_unreadable"
