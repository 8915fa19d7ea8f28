"""The face screen's preview: the latest frame as JPEG in memory only, guidance from the frame."""

from __future__ import annotations

import numpy as np
import pytest

from clinic_terminal.face.camera import InMemoryCamera
from clinic_terminal.kiosk.preview import GUIDANCE_TEXT, LivePreview, PreviewCamera, assess


def frame(level: int = 128, width: int = 640, height: int = 480) -> np.ndarray:  # type: ignore[type-arg]
    return np.full((height, width, 3), level, dtype=np.uint8)


@pytest.mark.parametrize(
    ("level", "boxes", "expected"),
    [
        (20, [(100, 400, 400, 100)], "lighter"),  # too dark, whatever was found
        (128, [], "look"),
        (128, [(100, 400, 400, 100), (100, 600, 300, 450)], "alone"),
        (128, [(200, 360, 300, 260)], "closer"),  # 100 px of 640: too far
        (128, [(100, 420, 420, 100)], "blink"),
    ],
)
def test_guidance_follows_what_is_in_the_frame(level: int, boxes: list[tuple[int, int, int, int]],
                                               expected: str) -> None:
    assert assess(frame(level), boxes) == expected


def test_guidance_texts_are_the_patient_words() -> None:
    assert GUIDANCE_TEXT["closer"] == "もう少し近づいてください"
    assert "明るい場所" in GUIDANCE_TEXT["lighter"]
    assert GUIDANCE_TEXT["look"] == "カメラを見てください"
    assert "まばたき" in GUIDANCE_TEXT["blink"]


class Clip:
    def __init__(self, frames: list[np.ndarray]) -> None:  # type: ignore[type-arg]
        self.frames = frames
        self.closed = False

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *_: object) -> None:
        self.closed = True

    def read(self) -> np.ndarray | None:  # type: ignore[type-arg]
        return self.frames.pop(0) if self.frames else None


def test_the_camera_is_shown_as_read_and_forgotten_on_clear() -> None:
    now = [0.0]
    preview = LivePreview(clock=lambda: now[0], find_faces=lambda f: [])
    clip = Clip([frame(10), frame(200, width=1280, height=720)])
    with PreviewCamera(clip, preview) as camera:
        first = camera.read()
        assert first is not None and first.mean() == 10  # the check gets the frame itself
        assert preview.guidance() == "lighter"
        jpeg = preview.jpeg()
        assert jpeg is not None and jpeg[:3] == b"\xff\xd8\xff"
        now[0] += 1
        camera.read()
    assert clip.closed
    assert preview.guidance() == "look"
    assert preview.jpeg() != jpeg  # only the latest frame is kept
    preview.clear()
    assert (preview.jpeg(), preview.guidance()) == (None, None)


def test_frames_are_throttled() -> None:
    now = [0.0]
    preview = LivePreview(clock=lambda: now[0], find_faces=lambda f: [], min_interval_s=0.1)
    preview.offer(frame(50))
    kept = preview.jpeg()
    now[0] += 0.05
    preview.offer(frame(250))
    assert preview.jpeg() == kept


class Ticking:
    """A clock that moves ``step`` seconds each time it is read (one read per framing frame)."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


NEAR = [(100, 420, 420, 100)]  # a face near enough: the guidance is "blink" (framed)


def test_framing_shows_the_camera_until_the_face_is_framed_then_hands_over() -> None:
    clock = Ticking(0.25)
    boxes = iter([[], [], NEAR, NEAR, NEAR, NEAR, NEAR, NEAR])
    preview = LivePreview(clock=clock, find_faces=lambda f: next(boxes))
    clip = Clip([frame(100 + i) for i in range(10)])
    shown: list[str | None] = []
    with PreviewCamera(clip, preview, clock=clock, framed_s=1.0, max_s=6.0) as camera:
        real_offer = preview.offer

        def offer(f: np.ndarray, *, now_too: bool = False) -> str | None:  # type: ignore[type-arg]
            shown.append(real_offer(f, now_too=now_too))
            return shown[-1]

        preview.offer = offer  # type: ignore[method-assign,assignment]
        assert camera.frame() is True
        assert shown[:3] == ["look", "look", "blink"]  # every framing frame is shown and assessed
        assert preview.jpeg() is not None  # the patient saw themselves before the check
        framing = len(shown)
        rest = camera.read()
    assert rest is not None and rest.mean() == 100 + framing  # the check reads the frames after


def test_framing_gives_up_after_its_longest_time_and_at_the_end_of_the_stream() -> None:
    clock = Ticking(1.0)
    preview = LivePreview(clock=clock, find_faces=lambda f: [])
    clip = Clip([frame() for _ in range(20)])
    with PreviewCamera(clip, preview, clock=clock, framed_s=1.0, max_s=4.0) as camera:
        assert camera.frame() is False
    assert 0 < 20 - len(clip.frames) <= 4
    assert preview.guidance() == "look"
    with PreviewCamera(Clip([frame()]), LivePreview(find_faces=lambda f: NEAR)) as short:
        assert short.frame() is False


def test_a_recording_starts_again_after_framing_so_the_check_reads_all_of_it() -> None:
    """The demo's clip (a file, or frames in memory) is not used up by framing: on a fast machine
    framing read the whole clip and the check found no face."""
    clock = Ticking(0.01)
    clip = InMemoryCamera([frame(100 + i) for i in range(50)])
    preview = LivePreview(clock=clock, find_faces=lambda f: NEAR)
    with PreviewCamera(clip, preview, clock=clock, framed_s=0.2, max_s=6.0) as camera:
        assert camera.frame() is True
        first = camera.read()
    assert first is not None and first.mean() == 100
