"""Camera clips and card photos built from the shared face test images (no download, no model).

* :func:`card_photo_jp2` -- the card-face photo as stored on the chip: greyscale, portrait
  300 x 400, JPEG 2000 bytes.
* :func:`natural_frames` -- a "live" clip: a 640 x 480 frame from a photo with non-rigid motion
  (a blink made by squashing each eye region around its landmarks, a slight mouth opening) plus
  small head sway, scale and lighting changes and sensor noise.
* :func:`rigid_frames` -- a printed photo held up and moved: the same frame with only a rigid
  planar motion (translation, scale, in-plane rotation, a slight tilt), lighting and noise.
* :func:`static_frames` -- a perfectly still image.
* :func:`two_people_frames` -- two faces of comparable size side by side.
* :func:`write_clip` -- frames to an MJPG ``.avi`` in the caller's directory.

Geometry (face box, landmarks) is computed once per source image and cached; frames are not.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np
import numpy.typing as npt
from PIL import Image

from clinic_terminal.face import _dlib

# public-domain test portraits kept in the repository (see data/faces/README.md)
FACES_DIR = Path(__file__).parent / "data" / "faces"
PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg", "astronaut.png")
SAME_PERSON = frozenset({frozenset({"obama.jpg", "obama2.jpg"})})

FRAME_SIZE = (640, 480)
CARD_SIZE = (300, 400)  # width, height: portrait like the card-face photo

BGR = npt.NDArray[np.uint8]
Points = npt.NDArray[np.float64]


def same_person(a: str, b: str) -> bool:
    return a == b or frozenset({a, b}) in SAME_PERSON


@lru_cache(maxsize=16)
def _photo(name: str, faces_dir: Path = FACES_DIR) -> BGR:
    with Image.open(faces_dir / name) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    bgr.setflags(write=False)
    return bgr


@lru_cache(maxsize=16)
def _geometry(name: str, faces_dir: Path = FACES_DIR) -> tuple[tuple[int, int, int, int], Points]:
    """Largest face box (top, right, bottom, left) and its 68 landmarks, in source pixels."""
    bgr = _photo(name, faces_dir)
    height, width = bgr.shape[:2]
    factor = min(1.0, 800 / width)
    small = cv2.resize(bgr, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(small[:, :, ::-1])
    models = _dlib.models()
    boxes = sorted(  # face_recognition.face_locations(rgb, 1): HOG at upsample 1, trimmed to the image
        ((max(r.top(), 0), min(r.right(), rgb.shape[1]), min(r.bottom(), rgb.shape[0]), max(r.left(), 0))
         for r in models.detector(rgb, 1)),
        key=lambda b: (b[2] - b[0]) * (b[1] - b[3]),
        reverse=True,
    )
    if not boxes:
        raise ValueError(f"no face in {name}")
    box = boxes[0]
    top, right, bottom, left = box
    shape = models.pose_68(rgb, dlib.rectangle(left, top, right, bottom))
    points = [(p.x, p.y) for p in shape.parts()]
    full = np.array(points[:68], dtype=np.float64) / factor
    scaled_box = tuple(round(v / factor) for v in box)
    return (scaled_box[0], scaled_box[1], scaled_box[2], scaled_box[3]), full


def _eye_centres(points: Points) -> tuple[Points, Points, float]:
    right = points[36:42].mean(axis=0)
    left = points[42:48].mean(axis=0)
    width = float(np.linalg.norm(points[36] - points[39]) + np.linalg.norm(points[42] - points[45])) / 2
    return right, left, width


def card_photo_jp2(
    name: str, *, size: tuple[int, int] = CARD_SIZE, rate: float = 12.0, faces_dir: Path = FACES_DIR
) -> bytes:
    """Greyscale portrait card photo of the person in ``name`` as JPEG 2000 bytes."""
    bgr = _photo(name, faces_dir)
    box, _ = _geometry(name, faces_dir)
    top, right, bottom, left = box
    face_w = right - left
    cx, cy = (left + right) / 2, (top + bottom) / 2
    crop_w = face_w * 2.0
    crop_h = crop_w * size[1] / size[0]
    x0, y0 = cx - crop_w / 2, cy - crop_h * 0.45
    # affine crop with border replication (photos may be tight around the head)
    m = np.array([[size[0] / crop_w, 0, -x0 * size[0] / crop_w], [0, size[1] / crop_h, -y0 * size[1] / crop_h]])
    crop = cv2.warpAffine(bgr, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG2000", quality_mode="rates", quality_layers=[rate])
    return buffer.getvalue()


def _placement(name: str, face_width: float, centre: tuple[float, float], faces_dir: Path) -> npt.NDArray[np.float64]:
    """Affine 2x3 from source pixels to frame pixels putting the face at ``centre``."""
    box, _ = _geometry(name, faces_dir)
    top, right, bottom, left = box
    scale = face_width / (right - left)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return np.array([[scale, 0, centre[0] - cx * scale], [0, scale, centre[1] - cy * scale]])


def _base(name: str, faces_dir: Path, face_width: float = 190.0) -> tuple[BGR, Points]:
    m = _placement(name, face_width, (FRAME_SIZE[0] / 2, FRAME_SIZE[1] * 0.46), faces_dir)
    frame = cv2.warpAffine(
        _photo(name, faces_dir), m, FRAME_SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    _, points = _geometry(name, faces_dir)
    mapped = points @ m[:, :2].T + m[:, 2]
    return np.asarray(frame, dtype=np.uint8), mapped


def _lid_map(
    ys: npt.NDArray[np.float32], top: float, bottom: float, above: float, blink: float
) -> npt.NDArray[np.float32]:
    """Source rows for an upper eyelid closing by ``blink``: the skin above the eye is stretched
    down over it while the eye opening is compressed against the lower lid."""
    lid = top + blink * (bottom - top)
    out = ys.copy()
    upper = (ys >= above) & (ys < lid)
    out[upper] = above + (ys[upper] - above) * (top - above) / max(lid - above, 1e-3)
    lower = (ys >= lid) & (ys <= bottom)
    out[lower] = top + (ys[lower] - lid) * (bottom - top) / max(bottom - lid, 1e-3)
    return out


def _local_warp(frame: BGR, points: Points, blink: float, mouth: float) -> BGR:
    """Close both upper eyelids by ``blink`` (0 open .. 1 closed); open the mouth by ``mouth``."""
    if blink <= 0 and mouth <= 0:
        return frame.copy()
    height, width = frame.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_y = ys.copy()
    if blink > 0:
        for eye in (points[36:42], points[42:48]):
            left, right = float(eye[0, 0]), float(eye[3, 0])
            eye_w = right - left
            top = float(min(eye[1, 1], eye[2, 1])) - 1.0
            bottom = float(max(eye[4, 1], eye[5, 1])) + 1.0
            above = top - 0.3 * eye_w
            centre = (left + right) / 2
            # horizontal weight: 1 across the eye, fading out beyond the corners
            weight = np.clip(1.0 - ((xs - centre) / (0.5 * eye_w + 0.25 * eye_w)) ** 4, 0.0, 1.0)
            target = _lid_map(ys, top, bottom, above, blink)
            map_y = map_y + weight * (target - ys)
    if mouth > 0:
        mc = points[60:68].mean(axis=0)
        mouth_w = float(np.linalg.norm(points[48] - points[54]))
        g = np.exp(-(((xs - mc[0]) / (0.6 * mouth_w)) ** 2 + ((ys - mc[1]) / (0.35 * mouth_w)) ** 2))
        map_y -= (mouth * 0.35) * (ys - mc[1]) * g
    warped: BGR = np.asarray(
        cv2.remap(frame, xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8
    )
    return warped


def _rigid(
    frame: BGR,
    *,
    dx: float,
    dy: float,
    scale: float,
    angle: float,
    tilt: float,
    gain: float,
    rng: np.random.Generator,
    noise: float,
) -> BGR:
    width, height = FRAME_SIZE
    m = np.asarray(cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale), dtype=np.float64)
    m[:, 2] += (dx, dy)
    h = np.vstack([m, [0.0, tilt, 1.0]])
    moved = cv2.warpPerspective(frame, h, FRAME_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = moved.astype(np.float32) * gain
    if noise > 0:
        out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    result: BGR = np.clip(out, 0, 255).astype(np.uint8)
    return result


def _blink_curve(i: int, n: int) -> float:
    """0 = open; a blink of about 5 frames centred a little before the middle of the clip."""
    centre = n * 0.45
    return float(min(0.9, max(0.0, 1.3 - abs(i - centre) / 2.5)))


def natural_frames(name: str, n: int = 30, *, seed: int = 0, faces_dir: Path = FACES_DIR) -> list[BGR]:
    """A live-looking clip: blink, slight mouth motion, head sway, lighting drift, noise."""
    rng = np.random.default_rng(seed)
    base, points = _base(name, faces_dir)
    out: list[BGR] = []
    for i in range(n):
        t = i / max(1, n - 1)
        local = _local_warp(base, points, _blink_curve(i, n), 0.5 + 0.5 * math.sin(2 * math.pi * t))
        out.append(
            _rigid(
                local,
                dx=4 * math.sin(2 * math.pi * t),
                dy=2 * math.cos(2 * math.pi * t),
                scale=1 + 0.02 * math.sin(math.pi * t),
                angle=1.5 * math.sin(2 * math.pi * t),
                tilt=0.0,
                gain=1 + 0.04 * math.sin(3 * t),
                rng=rng,
                noise=2.0,
            )
        )
    return out


def rigid_frames(name: str, n: int = 30, *, seed: int = 0, faces_dir: Path = FACES_DIR) -> list[BGR]:
    """A still photo moved in front of the camera: rigid planar motion only, plus light and noise."""
    rng = np.random.default_rng(seed)
    base, _ = _base(name, faces_dir)
    out: list[BGR] = []
    for i in range(n):
        t = i / max(1, n - 1)
        out.append(
            _rigid(
                base,
                dx=25 * math.sin(2 * math.pi * t),
                dy=10 * math.sin(4 * math.pi * t),
                scale=1 + 0.08 * math.sin(math.pi * t),
                angle=5 * math.sin(2 * math.pi * t),
                tilt=0.0004 * math.sin(2 * math.pi * t),
                gain=1 + 0.08 * math.sin(5 * t),
                rng=rng,
                noise=2.0,
            )
        )
    return out


def static_frames(name: str, n: int = 30, *, faces_dir: Path = FACES_DIR) -> list[BGR]:
    """A perfectly still image: the same frame ``n`` times."""
    base, _ = _base(name, faces_dir)
    return [base.copy() for _ in range(n)]


def two_people_frames(
    first: str = "obama.jpg", second: str = "biden.jpg", n: int = 10, *, faces_dir: Path = FACES_DIR
) -> list[BGR]:
    """Two faces of comparable size side by side (the second person leaning in)."""
    width, height = FRAME_SIZE
    halves = []
    for name, cx in ((first, width * 0.25), (second, width * 0.75)):
        m = _placement(name, 150.0, (cx, height * 0.45), faces_dir)
        halves.append(
            cv2.warpAffine(
                _photo(name, faces_dir), m, FRAME_SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
            )
        )
    frame = np.concatenate([halves[0][:, : width // 2], halves[1][:, width // 2 :]], axis=1)
    frame = np.ascontiguousarray(frame)
    return [frame.copy() for _ in range(n)]


def write_clip(frames: Sequence[BGR], path: Path, *, fps: float = 30.0) -> Path:
    """Write frames as an MJPG ``.avi`` (the suffix is forced) and return the path."""
    path = path.with_suffix(".avi")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def read_clip(path: Path) -> list[BGR]:
    """Decode a clip written by :func:`write_clip` (for tests that want codec artefacts in memory)."""
    capture = cv2.VideoCapture(str(path))
    out: list[BGR] = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            out.append(np.ascontiguousarray(frame))
    finally:
        capture.release()
    return out
