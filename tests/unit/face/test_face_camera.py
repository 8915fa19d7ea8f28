"""Camera sources: the Protocol, OpenCV on files and devices, the in-memory fake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from clinic_terminal.face import CameraError, CameraSource, InMemoryCamera, OpenCVCamera, frames
from clinic_terminal.face.camera import _parse_source


def _frame(value: int) -> npt.NDArray[np.uint8]:
    return np.full((48, 64, 3), value, dtype=np.uint8)


def test_in_memory_camera_plays_back_then_ends() -> None:
    camera = InMemoryCamera([_frame(1), _frame(2)])
    assert isinstance(camera, CameraSource)
    with camera:
        got = list(frames(camera, 10))
        assert camera.read() is None
    assert [int(f[0, 0, 0]) for f in got] == [1, 2]


def test_frames_stops_at_max_n() -> None:
    with InMemoryCamera([_frame(i) for i in range(5)]) as camera:
        assert len(list(frames(camera, 3))) == 3


def test_read_before_open_is_an_error() -> None:
    with pytest.raises(CameraError):
        InMemoryCamera([_frame(1)]).read()
    with pytest.raises(CameraError):
        OpenCVCamera("x.avi").read()


def test_in_memory_camera_can_fail_on_open() -> None:
    with pytest.raises(CameraError) as caught, InMemoryCamera([], fail_on_open=True):
        pass
    assert caught.value.code == "camera_unavailable"


@pytest.mark.parametrize(("source", "parsed"), [("0", 0), (" 2 ", 2), (1, 1), ("rtsp://cam/1", "rtsp://cam/1")])
def test_source_parsing(source: str | int, parsed: str | int) -> None:
    assert _parse_source(source) == parsed


def test_opencv_camera_reads_a_video_file(clip_files: dict[str, Path]) -> None:
    camera = OpenCVCamera(str(clip_files["static"]))
    assert isinstance(camera, CameraSource)
    with camera:
        got = list(frames(camera, 100))
    assert len(got) == 30
    assert got[0].shape == (480, 640, 3)
    assert got[0].dtype == np.uint8


def test_opencv_camera_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CameraError) as caught, OpenCVCamera(str(tmp_path / "missing.avi")):
        pass
    assert caught.value.code == "camera_unavailable"
    assert "missing.avi" in repr(caught.value)


def test_opencv_camera_missing_device() -> None:
    # no video device exists in the test environment (index 99 never does)
    with pytest.raises(CameraError) as caught, OpenCVCamera("99"):
        pass
    assert caught.value.code == "camera_unavailable"


def test_face_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinic_terminal.face import DEFAULT_THRESHOLD, FaceSettings

    assert FaceSettings().threshold == DEFAULT_THRESHOLD == 0.5
    monkeypatch.setenv("SHIKAKU_FACE_THRESHOLD", "0.45")
    monkeypatch.setenv("SHIKAKU_FACE_FRAMES", "24")
    settings = FaceSettings()
    assert settings.threshold == 0.45
    assert settings.frames == 24
    monkeypatch.setenv("SHIKAKU_FACE_THRESHOLD", "1.5")
    with pytest.raises(ValueError, match="threshold"):
        FaceSettings()
