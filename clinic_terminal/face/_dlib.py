"""The face libraries, behind one door: the check that they are installed, and dlib's four models.

The face check needs dlib (the ``dlib-bin`` wheel: prebuilt), OpenCV, NumPy, Pillow and the model
files of ``face_recognition_models``; ``pip install 'shikaku[terminal]'`` installs them all. The
``face_recognition`` package is not used: it pins ``dlib`` (a source build of a quarter of an
hour) and the project needs only the four objects it builds at import, which :func:`models`
builds the same way from the same files:

* ``dlib.get_frontal_face_detector()`` -- HOG face detection;
* ``dlib.shape_predictor`` on ``shape_predictor_5_face_landmarks.dat`` and
  ``shape_predictor_68_face_landmarks.dat`` -- landmarks (encoding, liveness);
* ``dlib.face_recognition_model_v1`` on ``dlib_face_recognition_resnet_model_v1.dat`` -- the
  128-d encoding.

The model files are located without importing ``face_recognition_models`` (its ``__init__``
imports ``pkg_resources``, which newer setuptools no longer has).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'shikaku[terminal]'"

# import name -> distribution that provides it
_REQUIRED: tuple[tuple[str, str], ...] = (
    ("numpy", "numpy"),
    ("cv2", "opencv-python-headless"),
    ("PIL", "pillow"),
    ("dlib", "dlib-bin"),
    ("face_recognition_models", "face_recognition_models"),
)

ENCODER_MODEL = "dlib_face_recognition_resnet_model_v1.dat"  # also read by the encoding worker
_MODEL_FILES = {
    "pose_5": "shape_predictor_5_face_landmarks.dat",
    "pose_68": "shape_predictor_68_face_landmarks.dat",
    "encoder": ENCODER_MODEL,
}


class FaceLibrariesMissingError(ImportError):
    """The face libraries are not installed; the message names the distributions and the command."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f"the face check needs {', '.join(missing)} (not installed): {INSTALL_HINT}",
            name=missing[0] if missing else None,
        )


def missing_libraries() -> list[str]:
    """Distributions of the face check that are not installed (without importing them)."""
    return [dist for module, dist in _REQUIRED if importlib.util.find_spec(module) is None]


def require() -> None:
    """Raise :class:`FaceLibrariesMissingError` unless every face library is installed."""
    missing = missing_libraries()
    if missing:
        raise FaceLibrariesMissingError(missing)


def model_dir() -> Path:
    """The ``models`` folder of the installed ``face_recognition_models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "models"
        if all((folder / name).is_file() for name in _MODEL_FILES.values()):
            return folder
    raise FaceLibrariesMissingError(["face_recognition_models"])


@dataclass(frozen=True, slots=True)
class Models:
    """dlib's detector, the two shape predictors and the ResNet encoder (dlib objects: untyped)."""

    detector: Any
    pose_5: Any
    pose_68: Any
    encoder: Any


@functools.cache
def models() -> Models:
    """The four dlib models, loaded once per process (about 0.2 s, 130 MB of model files read)."""
    require()
    import dlib

    folder = model_dir()
    return Models(
        detector=dlib.get_frontal_face_detector(),
        pose_5=dlib.shape_predictor(str(folder / _MODEL_FILES["pose_5"])),
        pose_68=dlib.shape_predictor(str(folder / _MODEL_FILES["pose_68"])),
        encoder=dlib.face_recognition_model_v1(str(folder / _MODEL_FILES["encoder"])),
    )
