"""Liveness on synthetic frames: a still image cannot blink, a blink is seen (no dlib needed)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from clinic_terminal.face import assess_liveness

# a crude 68-point face: only the layout matters (eyes at 36-47, rigid points around them)
_rng = np.random.default_rng(3)
BASE = np.column_stack([_rng.uniform(200, 440, 68), _rng.uniform(140, 360, 68)])
BASE[36:42] = [(250, 200), (262, 192), (276, 192), (288, 200), (276, 206), (262, 206)]
BASE[42:48] = [(352, 200), (364, 192), (378, 192), (390, 200), (378, 206), (364, 206)]


def _picture(closed: float = 0.0) -> npt.NDArray[np.uint8]:
    grey: npt.NDArray[np.uint8] = np.full((480, 640), 150, dtype=np.uint8)
    noise = np.random.default_rng(0).integers(0, 60, (480, 640), dtype=np.uint8)
    grey = np.asarray(cv2.add(grey, noise), dtype=np.uint8)
    for cx in (269, 371):
        cv2.ellipse(grey, (cx, 199), (20, max(1, round(8 * (1 - closed)))), 0, 0, 360, 255, -1)
        if closed < 0.8:
            cv2.circle(grey, (cx, 199), 5, 20, -1)
    return grey


def _shift(
    grey: npt.NDArray[np.uint8], points: npt.NDArray[np.float64], dx: float, dy: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    moved = np.asarray(cv2.warpAffine(grey, m, (640, 480), borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8)
    return moved, points + np.array([dx, dy])


def test_static_image_is_not_live() -> None:
    report = assess_liveness([_picture()] * 10, [BASE] * 10)
    assert not report.live
    assert report.eye_change == pytest.approx(0.0, abs=1e-6)


def test_rigidly_moved_image_is_not_live() -> None:
    greys, marks = [], []
    for i in range(10):
        grey, points = _shift(_picture(), BASE, 3 * np.sin(i), 2 * np.cos(i))
        greys.append(grey)
        marks.append(points)
    report = assess_liveness(greys, marks)
    assert not report.live
    assert report.eye_change < 0.06


def test_blink_is_live() -> None:
    closing = [0, 0, 0, 0.5, 0.9, 0.9, 0.5, 0, 0, 0]
    report = assess_liveness([_picture(c) for c in closing], [BASE] * len(closing))
    assert report.live
    assert report.eye_change >= 0.12
    assert report.per_frame[4] > report.per_frame[0]


def test_eyes_that_never_reopen_are_not_a_blink() -> None:
    closing = [0, 0, 0, 0, 0, 0.5, 0.9, 0.9, 0.9, 0.9]
    assert not assess_liveness([_picture(c) for c in closing], [BASE] * len(closing)).live


def test_too_few_frames_are_not_live() -> None:
    assert not assess_liveness([_picture(), _picture(0.9)], [BASE, BASE]).live


def test_one_landmark_set_per_frame() -> None:
    with pytest.raises(ValueError, match="per frame"):
        assess_liveness([_picture()] * 3, [BASE] * 2)


def test_capture_starting_with_closed_eyes_is_refused() -> None:
    # documented false reject: the first frame is the reference, so opening eyes are no blink
    closing = [0.9, 0.9, 0.5, 0, 0, 0, 0, 0, 0, 0]
    assert not assess_liveness([_picture(c) for c in closing], [BASE] * len(closing)).live


def test_degenerate_geometry_is_no_evidence_of_life() -> None:
    flat = np.zeros_like(BASE)  # all landmarks on one point: no homography
    greys = [_picture()] * 6 + [_picture(0.9)] * 2 + [_picture()] * 2
    marks = [BASE] * 6 + [flat] * 2 + [BASE] * 2
    report = assess_liveness(greys, marks)
    assert not report.live


def test_eye_region_warp_equals_the_whole_frame_warp() -> None:
    """Only the eye regions are warped back (cheap); the pixels are those of a whole-frame warp,
    including the zero border where the region maps outside the frame."""
    from clinic_terminal.face.liveness import _aligned_region

    grey = _picture()
    h = np.array([[1.03, 0.04, 12.5], [-0.03, 0.98, -7.25], [2e-5, -1e-5, 1.0]])
    whole = cv2.warpPerspective(grey, np.linalg.inv(h), (640, 480), flags=cv2.INTER_LINEAR)
    for left, top, right, bottom in [(240, 180, 300, 215), (0, 0, 40, 30), (590, 440, 640, 480)]:
        region = _aligned_region(grey, h, left, top, right, bottom)
        expected = whole[top:bottom, left:right]
        assert region.shape == expected.shape
        assert int(np.abs(region.astype(int) - expected.astype(int)).max()) <= 1
    assert int(np.count_nonzero(_aligned_region(grey, h, 590, 440, 640, 480) == 0)) > 0  # the border
