"""Face-check settings (environment variables ``SHIKAKU_FACE_*``; every one optional)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinic_terminal.face.liveness import DEFAULT_EYE_CHANGE_MIN

# Stricter than face_recognition's 0.6; chosen from measurement, see docs/face.md.
DEFAULT_THRESHOLD = 0.5


class FaceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIKAKU_FACE_", extra="ignore", frozen=True)

    threshold: float = Field(DEFAULT_THRESHOLD, gt=0.0, le=1.0)
    """Largest accepted distance between card-photo and camera encodings."""
    frames: int = Field(30, ge=3, le=300)
    """Camera frames read for one check (about one second at 30 fps)."""
    max_width: int = Field(640, ge=160, le=1920)
    """Frames are scaled down to at most this width before detection."""
    upsample: int = Field(0, ge=0, le=2)
    """HOG upsampling on camera frames; 0 finds faces of about 80 px and larger."""
    full_detection_every: int = Field(5, ge=1, le=30)
    """Whole-frame detection (and the several-faces test) on every n-th frame; in between, only
    around the previous face. (3 before issue 13: a second face found at most 2 frames later
    instead of 4; see docs/face.md.)"""
    several_faces_ratio: float = Field(0.7, gt=0.0, le=1.0)
    """A second face at least this fraction of the largest face's width counts as comparable."""
    encode_frames: int = Field(3, ge=1, le=10)
    """Camera frames encoded and compared with the card photo (the largest distance counts)."""
    worker: bool = True
    """Run the face encodings in a worker process (the second core), started on first use and
    kept warm; off, everything runs in the calling process (same results, see docs/face.md)."""
    eye_change_min: float = Field(DEFAULT_EYE_CHANGE_MIN, gt=0.0, lt=1.0)
    """Minimum eye change (a blink) for liveness (see clinic_terminal.face.liveness)."""


@lru_cache
def get_face_settings() -> FaceSettings:
    return FaceSettings()
