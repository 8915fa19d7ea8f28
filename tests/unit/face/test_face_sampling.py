"""Which frames are encoded: one per window of the clip, the best by open eyes and quality."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from clinic_terminal.face import matcher
from clinic_terminal.face.camera import Frame
from clinic_terminal.face.liveness import LivenessTracker, assess_liveness
from clinic_terminal.face.matcher import _Candidate, _openness, _quality, _Sampler

_RGB = np.zeros((2, 2, 3), dtype=np.uint8)


def _candidate(index: int, quality: float = 0.5, openness: int = 2) -> _Candidate:
    return _Candidate(openness, quality, index, _RGB, (0, 1, 1, 0))


def _run(
    expected: int, offers: list[_Candidate], k: int = 3
) -> tuple[list[int], list[tuple[int, list[int]]]]:
    """Feed candidates as frames arrive; returns the chosen frame indices and, per frame index,
    what had been submitted before that frame was analysed."""
    submitted: list[int] = []
    timeline: list[tuple[int, list[int]]] = []
    sampler = _Sampler(expected, k, lambda c: submitted.append(c.index))
    by_index = {c.index: c for c in offers}
    for index in range(expected):
        sampler.advance(index)
        timeline.append((index, list(submitted)))
        if index in by_index:
            sampler.offer(by_index[index])
    sampler.finish()
    return submitted, timeline


def test_one_frame_per_window_of_the_first_80_percent_each_as_soon_as_its_window_ends() -> None:
    # 30 frames, 3 windows: [0, 8), [8, 16), [16, 24); the tail 24..29 is a reserve
    qualities = {3: 0.9, 9: 0.8, 20: 0.7, 27: 0.99}
    chosen, timeline = _run(30, [_candidate(i, qualities.get(i, 0.5)) for i in range(30)])
    assert chosen == [3, 9, 20]
    assert dict(timeline)[8] == [3]  # decided when frame 8 comes, not at the end
    assert dict(timeline)[16] == [3, 9]
    assert dict(timeline)[24] == [3, 9, 20]


def test_open_eyes_come_before_quality() -> None:
    offers = [_candidate(i, 0.5) for i in range(30)]
    offers[2] = _candidate(2, 0.99, openness=0)  # the sharpest frame, mid-blink
    offers[4] = _candidate(4, 0.95, openness=1)  # eyes half back
    offers[5] = _candidate(5, 0.6, openness=2)
    chosen, _ = _run(30, offers)
    assert chosen[0] == 5


def test_equal_frames_give_the_earliest() -> None:
    chosen, _ = _run(30, [_candidate(i) for i in range(30)])
    assert chosen == [0, 8, 16]


def test_windows_without_a_face_are_filled_from_the_others() -> None:
    # the face only in frames 0..15 (enough for the no-face rule): still three frames encoded
    chosen, _ = _run(30, [_candidate(i, 0.5 + i / 100) for i in range(16)])
    assert len(chosen) == len(set(chosen)) == 3
    assert chosen[:2] == [7, 15]
    assert chosen[2] in range(16)


def test_fewer_faces_than_samples_encode_them_all() -> None:
    chosen, _ = _run(30, [_candidate(25), _candidate(26)])
    assert sorted(chosen) == [25, 26]


def test_short_clips_still_get_one_window_per_sample() -> None:
    chosen, _ = _run(3, [_candidate(i) for i in range(3)])
    assert chosen == [0, 1, 2]


def test_openness_levels() -> None:
    assert [_openness(c, 0.12) for c in (0.0, 0.029, 0.031, 0.059, 0.061, float("nan"))] == [2, 2, 1, 1, 0, 0]


def _face(frames: list[Frame]) -> tuple[npt.NDArray[np.uint8], matcher.Box, npt.NDArray[np.float64]]:
    rgb = np.ascontiguousarray(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), dtype=np.uint8)
    grey = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    box = matcher.find_faces(grey)[0]
    return grey, box, matcher.landmarks_68(rgb, box)


def test_quality_prefers_sharp_frontal_large_faces(clip_frames: dict[str, list[Frame]]) -> None:
    grey, box, points = _face(clip_frames["genuine"])
    sharp = _quality(grey, box, points)
    assert _quality(np.asarray(cv2.GaussianBlur(grey, (0, 0), 2.5), dtype=np.uint8), box, points) < 0.6 * sharp
    turned = points.copy()
    turned[30, 0] = points[0, 0] + 0.9 * (points[16, 0] - points[0, 0])  # nose near one side
    assert _quality(grey, box, turned) < 0.5 * sharp
    top, right, bottom, left = box
    small = (top, left + (right - left) // 2, top + (bottom - top) // 2, left)  # a box of half the size
    assert _quality(grey, small, points) < _quality(grey, box, points)
    dark = np.zeros_like(grey)
    assert _quality(dark, box, points) == 0.0


def test_quality_ignores_brightness_and_contrast(clip_frames: dict[str, list[Frame]]) -> None:
    grey, box, points = _face(clip_frames["genuine"])
    dimmer = np.asarray(np.clip(grey.astype(np.float32) * 0.7 + 10, 0, 255), dtype=np.uint8)
    assert _quality(dimmer, box, points) == pytest.approx(_quality(grey, box, points), rel=0.05)


def test_liveness_frame_by_frame_is_assess_liveness(clip_frames: dict[str, list[Frame]]) -> None:
    greys, marks = [], []
    for bgr in clip_frames["genuine"][:20]:
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        grey = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        box = matcher.find_faces(grey)[0]
        greys.append(grey)
        marks.append(matcher.landmarks_68(rgb, box))
    tracker = LivenessTracker()
    raw = [tracker.add(g, m) for g, m in zip(greys, marks, strict=True)]
    assert raw[0] == 0.0  # the reference against itself
    assert max(raw) > 0.12  # the blink, frame by frame, before smoothing
    assert tracker.report() == assess_liveness(greys, marks)
    assert tracker.report().live
