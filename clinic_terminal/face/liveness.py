"""Liveness across frames: a photo held up in front of the camera cannot blink.

Input: for each frame in which the patient's face was found, the greyscale frame and dlib's 68
landmarks of that face.

What is measured
----------------
1. **Rigid alignment.** For each frame a homography is fitted from the first frame's *rigid*
   landmarks (upper jaw line, eyebrows, nose, eye corners) to this frame's, and the frame is
   warped back onto the first one. A homography is exactly the motion of a flat picture (printed
   photo, phone screen held still) moved, scaled, rotated or tilted in front of the camera, so
   after this step a still image lines up with itself up to noise.
2. **Eye change.** Each eye region of the first frame (lids included) is searched for in the
   aligned frame within +-4 px (normalised cross-correlation, which ignores brightness and
   contrast changes). ``eye change = 1 - best correlation``, averaged over both eyes, then a
   running median over 3 frames (a blink lasts 100-400 ms, several frames; one-frame jitter is not
   a blink).
3. **Decision.** Live when the eye change reaches ``eye_change_min`` and the eyes come back
   (a later frame falls below half of it): a blink, i.e. non-rigid motion exactly where a still
   image cannot produce it. On the test clips a blink scores 0.2-0.35, a still image (static or
   moved rigidly, with sensor noise and MJPG compression) 0.05 or less.

Also reported, for diagnostics only: the **non-rigid residual**, the RMS distance of all 68
landmarks to the best single homography of the whole face, as a fraction of the inter-ocular
distance (max over frames).

Not caught (see docs/face.md): video replay on a screen, masks, photos with cut-out eyes,
injected camera streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Landmarks = npt.NDArray[np.float64]
Grey = npt.NDArray[np.uint8]

_RIGHT_EYE = slice(36, 42)
_LEFT_EYE = slice(42, 48)
_RIGID = np.array([0, 1, 2, 14, 15, 16, *range(17, 36), 36, 39, 42, 45])
_SEARCH_PX = 4

DEFAULT_EYE_CHANGE_MIN = 0.12


@dataclass(frozen=True, slots=True)
class LivenessReport:
    live: bool
    eye_change: float  # peak, after smoothing
    nonrigid: float
    frames: int
    per_frame: tuple[float, ...]  # smoothed eye change per frame (0 = as in the first frame)


def _fit_homography(src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    h, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
    if h is None:
        return None
    result: npt.NDArray[np.float64] = np.asarray(h, dtype=np.float64)
    return result


def _apply(h: npt.NDArray[np.float64], points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    mapped = cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), h)
    result: npt.NDArray[np.float64] = np.asarray(mapped, dtype=np.float64).reshape(-1, 2)
    return result


def _interocular(points: npt.NDArray[np.float64]) -> float:
    return float(np.linalg.norm(points[_RIGHT_EYE].mean(axis=0) - points[_LEFT_EYE].mean(axis=0)))


def _eye_box(eye: npt.NDArray[np.float64], shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Region around one eye with the upper lid, kept ``_SEARCH_PX`` inside the frame."""
    x0, y0 = eye.min(axis=0)
    x1, y1 = eye.max(axis=0)
    width = x1 - x0
    left = max(_SEARCH_PX, int(x0 - 0.2 * width))
    top = max(_SEARCH_PX, int(y0 - 0.5 * width))
    right = min(shape[1] - _SEARCH_PX, int(x1 + 0.2 * width))
    bottom = min(shape[0] - _SEARCH_PX, int(y1 + 0.3 * width))
    if right - left < 6 or bottom - top < 6:
        return None
    return left, top, right, bottom


def _aligned_region(grey: Grey, h_rigid: npt.NDArray[np.float64], left: int, top: int, right: int, bottom: int) -> Grey:
    """Region [left, right) x [top, bottom) of ``grey`` warped back onto the reference frame
    (``h_rigid`` maps reference coordinates to this frame's); only the region is warped, not the
    whole frame. Pixels that fall outside the frame are 0, as with a whole-frame warp."""
    shift = np.array([[1.0, 0.0, left], [0.0, 1.0, top], [0.0, 0.0, 1.0]])
    region = cv2.warpPerspective(
        grey, h_rigid @ shift, (right - left, bottom - top), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    result: Grey = np.asarray(region, dtype=np.uint8)
    return result


def _median3(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Running median over 3 frames, ignoring NaN (frames left out)."""
    if values.size < 3:
        return values
    padded = np.concatenate([values[:1], values, values[-1:]])
    out = np.full(values.shape, np.nan, dtype=np.float64)
    for i in range(values.size):
        window = padded[i : i + 3]
        window = window[np.isfinite(window)]
        if window.size:
            out[i] = float(np.median(window))
    return out


class LivenessTracker:
    """The liveness measurement fed one frame at a time, as the frames arrive (see the module
    docstring); :func:`assess_liveness` is the same over whole lists. The first frame added is the
    reference, and only its two eye regions are kept: a frame's eye change depends on that frame
    and the reference alone, so the per-frame work is done while the camera is still delivering
    and nothing else of the earlier frames needs to be held."""

    def __init__(self, *, eye_change_min: float = DEFAULT_EYE_CHANGE_MIN, min_frames: int = 3) -> None:
        self._eye_change_min = eye_change_min
        self._min_frames = min_frames
        self._ref: Landmarks | None = None
        self._eye_boxes: list[tuple[int, int, int, int]] = []
        # the reference frame's eye regions (only they are kept of it) and whether each is flat
        self._templates: list[tuple[Grey, bool]] = []
        self._changes: list[float] = []
        self._residuals: list[float] = [0.0]

    @property
    def frames(self) -> int:
        return len(self._changes)

    def add(self, grey: Grey, landmarks: Landmarks) -> float:
        """Add the next frame; returns its eye change against the reference before smoothing
        (0 for the reference itself, NaN where no homography exists or no eye region is usable)."""
        points = np.asarray(landmarks, dtype=np.float64)
        if self._ref is None:
            self._ref = points
            boxes = [_eye_box(points[_RIGHT_EYE], grey.shape), _eye_box(points[_LEFT_EYE], grey.shape)]
            self._eye_boxes = [b for b in boxes if b is not None]
            for left, top, right, bottom in self._eye_boxes:
                template = np.ascontiguousarray(grey[top:bottom, left:right])
                self._templates.append((template, float(template.std()) < 1e-3))
        ref = self._ref
        if not self._eye_boxes:
            self._changes.append(float("nan"))
            return float("nan")
        h_rigid = _fit_homography(ref[_RIGID], points[_RIGID])
        h_all = _fit_homography(ref, points)
        if h_rigid is None or h_all is None or abs(np.linalg.det(h_rigid)) < 1e-9:
            # degenerate geometry is no evidence of life: the frame is left out
            self._changes.append(float("nan"))
            return float("nan")
        scores = []
        for (left, top, right, bottom), (template, flat) in zip(self._eye_boxes, self._templates, strict=True):
            if flat:
                scores.append(0.0)  # a flat patch cannot show a blink
                continue
            search = _aligned_region(
                grey, h_rigid, left - _SEARCH_PX, top - _SEARCH_PX, right + _SEARCH_PX, bottom + _SEARCH_PX
            )
            correlation = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
            best = float(correlation.max())  # NaN when any is NaN (a flat search region): no change
            scores.append(1.0 - (1.0 if math.isnan(best) else best))
        change = float(np.mean(scores))
        self._changes.append(change)
        iod = max(_interocular(points), 1e-6)
        residual = np.linalg.norm(_apply(h_all, ref) - points, axis=1)
        self._residuals.append(float(np.sqrt(np.mean(residual**2))) / iod)
        return change

    def report(self) -> LivenessReport:
        """The decision over every frame added so far."""
        n = len(self._changes)
        not_live = LivenessReport(False, 0.0, 0.0, n, tuple(0.0 for _ in range(n)))
        if n < self._min_frames or not self._eye_boxes:
            return not_live
        smoothed = _median3(np.asarray(self._changes, dtype=np.float64))
        nonrigid = max(self._residuals)
        if int(np.count_nonzero(np.isfinite(smoothed))) < self._min_frames:
            return not_live
        filled = np.nan_to_num(smoothed, nan=0.0)
        peak_at = int(np.argmax(filled))
        peak = float(filled[peak_at])
        later = smoothed[peak_at + 1 :]
        reopened = bool(np.any(later[np.isfinite(later)] < self._eye_change_min / 2))
        live = peak >= self._eye_change_min and reopened
        return LivenessReport(live, peak, nonrigid, n, tuple(float(v) for v in filled))


def assess_liveness(
    greys: Sequence[Grey],
    landmarks: Sequence[Landmarks],
    *,
    eye_change_min: float = DEFAULT_EYE_CHANGE_MIN,
    min_frames: int = 3,
) -> LivenessReport:
    """Decide whether a face seen over several frames blinked (see the module docstring).

    The first frame is the reference: a capture that starts with the eyes closed fails (a false
    reject; the patient tries again).
    """
    if len(landmarks) != len(greys):
        raise ValueError("one landmark set per frame is required")
    tracker = LivenessTracker(eye_change_min=eye_change_min, min_frames=min_frames)
    for grey, points in zip(greys, landmarks, strict=True):
        tracker.add(grey, points)
    return tracker.report()
