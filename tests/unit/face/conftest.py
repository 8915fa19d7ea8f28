"""Face-path fixtures: card photos and camera clips built once per session from the test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinic_terminal.face import FaceSettings
from clinic_terminal.face.camera import Frame
from testbed import faces as tf


@pytest.fixture(scope="session")
def face_settings() -> FaceSettings:
    return FaceSettings()


@pytest.fixture(scope="session")
def card_photos() -> dict[str, bytes]:
    """Greyscale JPEG 2000 card photos, by source image name."""
    return {name: tf.card_photo_jp2(name) for name in ("obama.jpg", "biden.jpg")}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("face_clips")


@pytest.fixture(scope="session")
def clip_files(clip_dir: Path) -> dict[str, Path]:
    """MJPG clips on disk (test inputs): what a camera URL or file would deliver."""
    return {
        "genuine": tf.write_clip(tf.natural_frames("obama2.jpg"), clip_dir / "genuine"),
        "impostor": tf.write_clip(tf.natural_frames("biden.jpg"), clip_dir / "impostor"),
        "rigid": tf.write_clip(tf.rigid_frames("obama.jpg"), clip_dir / "rigid"),
        "static": tf.write_clip(tf.static_frames("obama.jpg"), clip_dir / "static"),
    }


@pytest.fixture(scope="session")
def clip_frames(clip_files: dict[str, Path]) -> dict[str, list[Frame]]:
    """The same clips decoded (codec artefacts included), for InMemoryCamera."""
    clips = {kind: tf.read_clip(path) for kind, path in clip_files.items()}
    clips["two_people"] = tf.two_people_frames(n=8)
    rng = np.random.default_rng(1)
    clips["empty_room"] = [np.clip(rng.normal(120, 20, (480, 640, 3)), 0, 255).astype(np.uint8) for _ in range(8)]
    return clips
