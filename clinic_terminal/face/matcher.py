"""Compare the card-face photo with live camera frames, in memory, and judge liveness.

Pipeline for one check: decode the card photo (JPEG 2000 or any format Pillow reads) -> HOG
detection, largest face -> aligned chip, handed to the encoder at once (it is encoded while the
frames are read); read N camera frames -> scale to <= ``max_width`` -> HOG detection on the whole
frame every ``full_detection_every`` frames and only around the previous face in between ->
refuse when comparable faces appear -> 68 landmarks per frame -> the frame's eye change for
liveness, and its quality; the best frame of each sampling window is handed to the encoder as
soon as its window is over -> the largest distance of those frames to the card encoding decides.
See docs/face.md.

Nothing here writes files or logs image data or encodings; the result holds scalars only.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field

import cv2
import dlib
import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from clinic_terminal.face import _dlib
from clinic_terminal.face.camera import CameraSource, Frame, frames
from clinic_terminal.face.config import FaceSettings, get_face_settings
from clinic_terminal.face.encoder import Chip, EncoderWorker, Encodings, describe, face_chip, shared_worker
from clinic_terminal.face.errors import CameraError, CardPhotoError, FaceReason
from clinic_terminal.face.liveness import LivenessTracker

logger = logging.getLogger(__name__)
_MODELS = _dlib.models()  # loaded at import, as face_recognition did

RGBImage = npt.NDArray[np.uint8]
Encoding = npt.NDArray[np.float64]
# face_recognition's (top, right, bottom, left)
Box = tuple[int, int, int, int]

_MAX_CARD_PIXELS = 4000 * 4000
_HOG_MIN_FACE = 80  # px: dlib's HOG window; smaller faces are not found at upsample 0
_PYRAMID_STEP = 5 / 6  # dlib's HOG detector scans an image pyramid with this step
# A scaled-down whole-frame detection finds every face of at least this fraction of the previous
# face's width: below several_faces_ratio (0.7) with room for HOG's box-size steps (~20 %).
_FULL_MIN_FRACTION = 0.55
# Between whole-frame detections the face is looked for at about this width (at least; a step of
# the pyramid): 100 px cut 45 ms more per check but doubled the landmark jitter (still images'
# eye change 0.055 instead of 0.045), 120 px keeps the liveness margin of full-resolution tracking.
_TRACK_FACE_PX = 120
# The tracking window reaches this fraction of the face box beyond it on each side (a fifth: 43 px
# for a 215 px face, far more than a head moves in 1/30 s; a third before, 0.6 ms more per frame;
# a face that leaves the window is looked for in the whole next frame).
_TRACK_MARGIN = 1 / 5
# The sampling windows (one encoded frame each) cover the first 80 % of the frames: the last
# window's encoding then runs in the worker while the remaining frames are analysed, instead of
# after them. The tail is still analysed (faces, liveness) and used only when a window is empty.
_SAMPLED_SHARE = 0.8
# Quality of a frame for encoding: sharpness measured on the face scaled to this size.
_SHARPNESS_PX = 64
_GOOD_FACE_PX = 150  # the ResNet's chip size: larger faces carry no more detail


@dataclass(frozen=True, slots=True)
class FaceCheckResult:
    """Outcome of one face check. Scalars only: no image, frame or encoding is kept."""

    match: bool
    distance: float | None
    threshold: float
    liveness: bool
    reason: FaceReason | None
    elapsed_ms: int
    frames_used: int
    eye_change: float = field(default=0.0, compare=False)

    @property
    def accepted(self) -> bool:
        """The face path succeeded: the same person, and alive."""
        return self.match and self.liveness and self.reason is None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "match": self.match,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": self.threshold,
            "liveness": self.liveness,
            "elapsed_ms": self.elapsed_ms,
            "reason": self.reason,
            "frames_used": self.frames_used,
        }


def decode_card_photo(data: bytes) -> RGBImage:
    """Card photo bytes (greyscale JPEG 2000 on the card; any Pillow format) -> RGB array."""
    if not data:
        raise CardPhotoError("card photo is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > _MAX_CARD_PIXELS:
                raise CardPhotoError("card photo is too large")
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except CardPhotoError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # deliberately not chained: decoder errors may quote the input
        raise CardPhotoError("card photo cannot be decoded") from None
    return np.ascontiguousarray(rgb)


def _scale(rgb: RGBImage, max_width: int) -> RGBImage:
    height, width = rgb.shape[:2]
    if width <= max_width:
        return rgb
    factor = max_width / width
    size = (max_width, max(1, round(height * factor)))
    scaled: RGBImage = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return scaled


def _area(box: Box) -> int:
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def _trim(box: Box, shape: tuple[int, ...]) -> Box:
    top, right, bottom, left = box
    return max(top, 0), min(right, shape[1]), min(bottom, shape[0]), max(left, 0)


def find_faces(image: npt.NDArray[np.uint8], *, upsample: int = 0, scale: float = 1.0) -> list[Box]:
    """HOG face boxes in ``image`` pixels, largest first.

    ``scale`` < 1 runs the detector on the image scaled down by that factor (and maps the boxes
    back): the HOG window is 80 px, so only faces of about ``80 / scale`` px and larger are found,
    at a fraction of the cost (the cost grows with the pixel count).
    """
    height, width = image.shape[:2]
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        fx, fy = width / size[0], height / size[1]
    else:
        small, fx, fy = image, 1.0, 1.0
    rects = _MODELS.detector(small, upsample)
    boxes = [
        _trim((round(r.top() * fy), round(r.right() * fx), round(r.bottom() * fy), round(r.left() * fx)), image.shape)
        for r in rects
    ]
    return sorted(boxes, key=_area, reverse=True)


def _pyramid_scale(wanted: float) -> float:
    """The smallest step of dlib's HOG image pyramid (each level 5/6 of the previous) that is at
    least ``wanted``: detection on the frame scaled by it sees the pyramid's coarser levels only,
    so faces get the same box sizes as in a full-resolution detection."""
    if wanted >= 1.0:
        return 1.0
    steps = math.floor(math.log(max(wanted, 1e-3)) / math.log(_PYRAMID_STEP) + 1e-9)
    return float(_PYRAMID_STEP**steps)


def _full_scale(previous: Box | None) -> float:
    """Scale for a whole-frame detection: small enough to be cheap, large enough that every face
    of at least ``_FULL_MIN_FRACTION`` of the previous face's width is found (a comparable
    second face, a person leaning in, is larger than that)."""
    if previous is None:
        return 1.0
    width = previous[1] - previous[3]
    return _pyramid_scale(_HOG_MIN_FACE / (_FULL_MIN_FRACTION * max(width, 1)))


def _find_all(image: npt.NDArray[np.uint8], previous: Box | None, *, upsample: int) -> list[Box]:
    """Whole-frame detection, scaled down as far as the several-faces test allows; at full
    resolution again when that finds no face (the face moved away or left)."""
    scale = _full_scale(previous)
    boxes = find_faces(image, upsample=upsample, scale=scale)
    if not boxes and scale < 1.0:
        boxes = find_faces(image, upsample=upsample)
    return boxes


def _find_near(image: npt.NDArray[np.uint8], box: Box, *, upsample: int) -> list[Box]:
    """HOG detection in a window around ``box`` (the face rarely moves far in 1/30 s), scaled so
    that the face is about ``_TRACK_FACE_PX`` wide."""
    top, right, bottom, left = box
    height, width = image.shape[:2]
    margin_x, margin_y = int((right - left) * _TRACK_MARGIN), int((bottom - top) * _TRACK_MARGIN)
    x0, y0 = max(0, left - margin_x), max(0, top - margin_y)
    x1, y1 = min(width, right + margin_x), min(height, bottom + margin_y)
    window = np.ascontiguousarray(image[y0:y1, x0:x1])
    scale = _pyramid_scale(_TRACK_FACE_PX / max(1, right - left))
    return [(t + y0, r + x0, b + y0, lft + x0) for t, r, b, lft in find_faces(window, upsample=upsample, scale=scale)]


def _distance(card: Encoding, camera: Encoding) -> float:
    return float(np.linalg.norm(camera - card))


def _card_chip(data: bytes, *, max_width: int) -> Chip:
    """Decode the card photo and cut the aligned chip of its largest face; :class:`CardPhotoError`
    when there is none.

    Detection runs on the greyscale image (the card photo is greyscale: the same boxes at a
    third of the cost) with upsample 0 first when the photo can hold a face of the HOG window's
    size, then upsample 1 and 2 for smaller faces.
    """
    rgb = _scale(decode_card_photo(data), max_width)
    grey = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    upsamples = (0, 1, 2) if min(grey.shape[:2]) >= 2 * _HOG_MIN_FACE else (1, 2)
    for upsample in upsamples:
        boxes = find_faces(grey, upsample=upsample)
        if boxes:
            return face_chip(rgb, boxes[0])
    raise CardPhotoError("no face found in the card photo")


def _worker_for(settings: FaceSettings) -> EncoderWorker | None:
    return shared_worker() if settings.worker else None


def encode_card_photo(data: bytes, *, max_width: int = 640, settings: FaceSettings | None = None) -> Encoding:
    """Decode the card photo and encode its largest face; :class:`CardPhotoError` when none.

    Also starts the encoder worker (when enabled), so that it is warm for :func:`compare_frames`.
    """
    _worker_for(settings or get_face_settings())
    return describe(_card_chip(data, max_width=max_width))


def landmarks_68(rgb: RGBImage, box: Box) -> npt.NDArray[np.float64]:
    """dlib's 68 landmarks of one face as a (68, 2) array."""
    top, right, bottom, left = box
    shape = _MODELS.pose_68(rgb, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _several_comparable(boxes: Sequence[Box], ratio: float) -> bool:
    if len(boxes) < 2:
        return False
    width0 = boxes[0][1] - boxes[0][3]
    width1 = boxes[1][1] - boxes[1][3]
    return width1 >= ratio * width0


def _quality(grey: npt.NDArray[np.uint8], box: Box, landmarks: npt.NDArray[np.float64]) -> float:
    """How well a frame's face suits encoding: sharpness x frontalness x size, each in (0, 1]-ish.

    Sharpness: variance of the Laplacian of the face scaled to 64 px, over the variance of the
    face itself (contrast and lighting cancel out; blur lowers it). Frontalness: where the nose
    tip (landmark 30) sits between the jaw's outer points (0 and 16): 1 when centred, towards 0 as
    the head turns. Size: the face box width up to the chip's 150 px.
    """
    top, right, bottom, left = _trim(box, grey.shape)
    face = np.asarray(
        cv2.resize(grey[top:bottom, left:right], (_SHARPNESS_PX, _SHARPNESS_PX), interpolation=cv2.INTER_AREA),
        dtype=np.float32,
    )
    contrast = float(face.var())
    sharpness = float(cv2.Laplacian(face, cv2.CV_32F).var()) / contrast if contrast > 1.0 else 0.0
    jaw = landmarks[16, 0] - landmarks[0, 0]
    turn = abs((landmarks[30, 0] - landmarks[0, 0]) / jaw - 0.5) if jaw > 1.0 else 0.5
    frontal = max(0.05, 1.0 - 2.0 * turn)
    size = min(1.0, (right - left) / _GOOD_FACE_PX)
    return sharpness * frontal * size


def _openness(change: float, eye_change_min: float) -> int:
    """2: eyes as open as in the first frame (eye change below a quarter of the blink minimum);
    1: below half of it (liveness's "the eyes came back"); 0: closing, closed, or not measured."""
    if change < eye_change_min / 4:
        return 2
    return 1 if change < eye_change_min / 2 else 0


@dataclass(slots=True, eq=False)
class _Candidate:
    openness: int
    quality: float
    index: int
    rgb: RGBImage = field(repr=False)
    box: Box

    @property
    def key(self) -> tuple[int, float, int]:
        # open eyes first (a blinking face encodes worse), then quality, then the earlier frame
        return self.openness, self.quality, -self.index


class _Sampler:
    """Chooses the frames to encode while the frames arrive: the clip's first ``_SAMPLED_SHARE``
    is cut into ``k`` windows; when a window is over, its best candidate (eyes open, then quality,
    then the earlier frame) goes to ``submit`` at once. The samples are spread over the clip as
    before (the check's distance is the largest of them, so a face swapped in for a whole window
    is caught); ``finish`` fills up from the other candidates when windows held no usable face, so
    that ``min(k, frames with a face)`` frames are encoded, as before."""

    def __init__(self, expected_frames: int, k: int, submit: Callable[[_Candidate], object]) -> None:
        sampled = max(k, math.ceil(expected_frames * _SAMPLED_SHARE))
        self._ends = [math.ceil((i + 1) * sampled / k) for i in range(k)]
        self._k = k
        self._submit = submit
        self._windows: list[list[_Candidate]] = [[] for _ in range(k + 1)]  # the last: the tail
        self._closed = 0
        self._faces = 0
        self.chosen: list[_Candidate] = []

    def _window(self, index: int) -> int:
        return next((w for w, end in enumerate(self._ends) if index < end), self._k)

    def advance(self, index: int) -> None:
        """Frame ``index`` is next: every window that ended before it is decided."""
        while self._closed < self._k and index >= self._ends[self._closed]:
            self._decide(self._closed)
            self._closed += 1

    def offer(self, candidate: _Candidate) -> None:
        self._faces += 1
        window = self._windows[self._window(candidate.index)]
        window.append(candidate)
        window.sort(key=lambda c: c.key, reverse=True)
        del window[self._k :]  # only as many as could ever be needed

    def finish(self) -> None:
        self.advance(self._ends[-1])
        wanted = min(self._k, self._faces)
        spare = sorted((c for w in self._windows for c in w), key=lambda c: c.key, reverse=True)
        for candidate in spare[: max(0, wanted - len(self.chosen))]:
            self._take(candidate)
        self._windows.clear()

    def _decide(self, w: int) -> None:
        window = self._windows[w]
        if window:
            self._take(window.pop(0))

    def _take(self, candidate: _Candidate) -> None:
        for window in self._windows:
            window[:] = [c for c in window if c is not candidate]
        self.chosen.append(candidate)
        self._submit(candidate)


def _expected(camera_frames: Iterable[Frame], settings: FaceSettings) -> int:
    return len(camera_frames) if isinstance(camera_frames, Sized) else settings.frames


def compare_frames(
    card_encoding: Encoding,
    camera_frames: Iterable[Frame],
    *,
    settings: FaceSettings,
    threshold: float,
    started: float | None = None,
    expected_frames: int | None = None,
) -> FaceCheckResult:
    """Judge camera frames (BGR) against an already encoded card photo.

    ``expected_frames`` (default: the length of ``camera_frames`` when it has one, else
    ``settings.frames``) places the sampling windows.
    """
    t0 = time.perf_counter() if started is None else started
    expected = expected_frames if expected_frames is not None else _expected(camera_frames, settings)
    with Encodings(_worker_for(settings)) as encodings:
        return _compare(card_encoding, encodings, camera_frames, settings, threshold, t0, expected)


def _compare(
    card: Encoding | int,
    encodings: Encodings,
    camera_frames: Iterable[Frame],
    settings: FaceSettings,
    threshold: float,
    t0: float,
    expected: int,
) -> FaceCheckResult:
    """The check proper; ``card`` is the card encoding, or the index of its chip in ``encodings``."""
    tracker = LivenessTracker(eye_change_min=settings.eye_change_min)
    sampler = _Sampler(expected, settings.encode_frames, lambda c: encodings.submit(face_chip(c.rgb, c.box)))
    several = 0
    faces = 0
    read = 0
    previous: Box | None = None
    for index, bgr in enumerate(camera_frames):
        read += 1
        sampler.advance(index)
        rgb = _scale(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8), settings.max_width)
        grey = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        if previous is None or index % settings.full_detection_every == 0:
            boxes = _find_all(grey, previous, upsample=settings.upsample)
            if boxes and _several_comparable(boxes, settings.several_faces_ratio):
                several += 1
                previous = None
                encodings.pump()
                continue
        else:
            # between full detections, look again only around the face of the previous frame
            boxes = _find_near(grey, previous, upsample=settings.upsample)
        if not boxes:
            previous = None
            encodings.pump()
            continue
        previous = box = boxes[0]
        faces += 1
        points = landmarks_68(rgb, box)
        change = tracker.add(grey, points)
        openness = _openness(change, settings.eye_change_min)
        sampler.offer(_Candidate(openness, _quality(grey, box, points), index, rgb, box))
        encodings.pump()
    if read == 0:
        raise CameraError("camera delivered no frame")

    def result(
        *, match: bool, distance: float | None, live: bool, reason: FaceReason | None, blink: float = 0.0
    ) -> FaceCheckResult:
        elapsed = round((time.perf_counter() - t0) * 1000)
        return FaceCheckResult(match, distance, threshold, live, reason, elapsed, read, blink)

    if several and several * 4 >= several + faces:
        logger.info("face check refused: several faces (frames=%d, with several=%d)", read, several)
        return result(match=False, distance=None, live=False, reason="several_faces")
    if faces < max(3, math.ceil(read / 2)):
        logger.info("face check refused: no face (frames=%d, with a face=%d)", read, faces)
        return result(match=False, distance=None, live=False, reason="no_face")

    sampler.finish()
    report = tracker.report()
    encoded = encodings.results()
    if isinstance(card, int):
        card_encoding, sampled = encoded[card], [e for i, e in enumerate(encoded) if i != card]
    else:
        card_encoding, sampled = card, encoded
    distances = [_distance(card_encoding, e) for e in sampled]
    distance = max(distances)
    match = distance <= threshold
    reason: FaceReason | None = None
    if not report.live:
        reason = "liveness_failed"
    elif not match:
        reason = "no_match"
    outcome = result(match=match, distance=distance, live=report.live, reason=reason, blink=report.eye_change)
    logger.debug(
        "face check: frames=%d faces=%d encoded=%s remote=%d distance=%.3f threshold=%.3f eye_change=%.3f"
        " nonrigid=%.4f reason=%s ms=%d",
        read,
        faces,
        ",".join(str(c.index) for c in sampler.chosen),
        encodings.remote,
        distance,
        threshold,
        report.eye_change,
        report.nonrigid,
        reason,
        outcome.elapsed_ms,
    )
    return outcome


def check_face(
    card_photo: bytes,
    camera: CameraSource,
    *,
    threshold: float | None = None,
    frames_n: int | None = None,
    settings: FaceSettings | None = None,
) -> FaceCheckResult:
    """One complete face check: card photo bytes against frames read from ``camera``.

    The card photo's chip goes to the encoder before the camera is opened, so it is encoded while
    the frames are read. Raises :class:`CardPhotoError` (``card_photo_unreadable``, before the
    camera is touched) or :class:`CameraError` (``camera_unavailable``); every other outcome is a
    :class:`FaceCheckResult`.
    """
    settings = settings or get_face_settings()
    limit = threshold if threshold is not None else settings.threshold
    n = frames_n if frames_n is not None else settings.frames
    started = time.perf_counter()
    with Encodings(_worker_for(settings)) as encodings:
        card = encodings.submit(_card_chip(card_photo, max_width=settings.max_width))
        with camera:
            # frames are analysed as they arrive: detection (~25 ms) keeps up with a 30 fps camera
            return _compare(card, encodings, frames(camera, n), settings, limit, started, n)
