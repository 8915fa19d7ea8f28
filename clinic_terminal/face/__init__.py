"""Face authentication at the kiosk: card-face photo vs live camera, nothing stored.

Public API: :func:`check_face` (one complete check), :class:`FaceCheckResult`, the camera
sources (:class:`CameraSource` Protocol, :class:`OpenCVCamera`, :class:`InMemoryCamera`) and the
errors carrying stable codes (:class:`FaceCheckError`, :class:`CameraError`,
:class:`CardPhotoError`).

Without the face libraries (``pip install 'shikaku[terminal]'``) importing this package raises
:class:`FaceLibrariesMissingError` (an ``ImportError``) whose message names what to install.
"""

from __future__ import annotations

from clinic_terminal.face._dlib import INSTALL_HINT, FaceLibrariesMissingError, missing_libraries

try:
    from clinic_terminal.face.attest import attestation_claims
    from clinic_terminal.face.camera import CameraSource, Frame, InMemoryCamera, OpenCVCamera, frames
    from clinic_terminal.face.config import DEFAULT_THRESHOLD, FaceSettings, get_face_settings
    from clinic_terminal.face.errors import REASONS, CameraError, CardPhotoError, FaceCheckError, FaceReason
    from clinic_terminal.face.liveness import LivenessReport, assess_liveness
    from clinic_terminal.face.matcher import (
        FaceCheckResult,
        check_face,
        compare_frames,
        decode_card_photo,
        encode_card_photo,
        find_faces,
        landmarks_68,
    )
except ImportError as exc:  # say what to install, not which module happened to be imported first
    _missing = missing_libraries()
    if not _missing:
        raise
    raise FaceLibrariesMissingError(_missing) from exc

__all__ = [
    "DEFAULT_THRESHOLD",
    "INSTALL_HINT",
    "REASONS",
    "CameraError",
    "CameraSource",
    "CardPhotoError",
    "FaceCheckError",
    "FaceCheckResult",
    "FaceLibrariesMissingError",
    "FaceReason",
    "FaceSettings",
    "Frame",
    "InMemoryCamera",
    "LivenessReport",
    "OpenCVCamera",
    "assess_liveness",
    "attestation_claims",
    "check_face",
    "compare_frames",
    "decode_card_photo",
    "encode_card_photo",
    "find_faces",
    "frames",
    "get_face_settings",
    "landmarks_68",
]
