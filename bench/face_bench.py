"""Face-check benchmark: latency on this CPU and accuracy on every pair the test images give.

    .venv/bin/python bench/face_bench.py [--checks 20] [--threshold 0.5]

Latency: complete checks (card photo decode + encode, 30 frames of 640x480, HOG detection,
landmarks, liveness, encodings of 3 frames) through an InMemoryCamera holding pre-decoded frames,
so camera warm-up and video decoding are excluded; one warm-up check first (model loading).
Also timed in the same run: one bare ``face_recognition.face_encodings(frame)`` equivalent (detection
with the library's defaults + one encoding), for the ratio.
Accuracy: every test photo as the card photo against a live-looking clip of every photo
(genuine = same person; the photo against its own clip counts as genuine too) -> false accepts
and false rejects at the threshold; and every photo as a still-image attack (static and moved
rigidly) against its own card photo -> attacks accepted. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from clinic_terminal.face import FaceSettings, InMemoryCamera, _dlib, check_face
from clinic_terminal.face.camera import Frame
from testbed import faces as tf


def _bare_encodings(rgb: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float64]]:
    """What ``face_recognition.face_encodings(rgb)`` does with its defaults: HOG at upsample 1,
    5-point landmarks, one ResNet encoding per face (num_jitters=1)."""
    models = _dlib.models()
    return [
        np.asarray(models.encoder.compute_face_descriptor(rgb, models.pose_5(rgb, rect), 1), dtype=np.float64)
        for rect in models.detector(rgb, 1)
    ]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _clips(directory: Path) -> dict[tuple[str, str], list[Frame]]:
    clips: dict[tuple[str, str], list[Frame]] = {}
    for name in tf.PHOTOS:
        stem = Path(name).stem
        for kind, make in (("natural", tf.natural_frames), ("static", tf.static_frames), ("rigid", tf.rigid_frames)):
            clips[kind, name] = tf.read_clip(tf.write_clip(make(name), directory / f"{kind}_{stem}"))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args()
    settings = FaceSettings() if args.threshold is None else FaceSettings(threshold=args.threshold)
    cards = {name: tf.card_photo_jp2(name) for name in tf.PHOTOS}
    with tempfile.TemporaryDirectory(prefix="face-bench-") as tmp:
        clips = _clips(Path(tmp))

    # ---- latency
    genuine_card, genuine_clip = cards["obama.jpg"], clips["natural", "obama2.jpg"]
    rgb = np.ascontiguousarray(genuine_clip[0][:, :, ::-1])
    check_face(genuine_card, InMemoryCamera(genuine_clip), settings=settings)  # warm-up
    _bare_encodings(rgb)
    load_before = os.getloadavg()[0]
    # interleaved, so that other load on the machine weighs on both alike; wall and CPU time
    check_ms: list[float] = []
    check_cpu_ms: list[float] = []
    bare_ms: list[float] = []
    bare_cpu_ms: list[float] = []
    for _ in range(args.checks):
        t0, c0 = time.perf_counter(), time.process_time()
        result = check_face(genuine_card, InMemoryCamera(genuine_clip), settings=settings)
        check_ms.append((time.perf_counter() - t0) * 1000)
        check_cpu_ms.append((time.process_time() - c0) * 1000)
        assert result.accepted
        t0, c0 = time.perf_counter(), time.process_time()
        _bare_encodings(rgb)
        bare_ms.append((time.perf_counter() - t0) * 1000)
        bare_cpu_ms.append((time.process_time() - c0) * 1000)

    # ---- accuracy
    pairs = []
    false_accepts = false_rejects = 0
    for card_name in tf.PHOTOS:
        for camera_name in tf.PHOTOS:
            r = check_face(cards[card_name], InMemoryCamera(clips["natural", camera_name]), settings=settings)
            genuine = tf.same_person(card_name, camera_name)
            false_accepts += int(r.accepted and not genuine)
            false_rejects += int(genuine and not r.accepted)
            pairs.append(
                {
                    "card": card_name,
                    "camera": camera_name,
                    "genuine": genuine,
                    "distance": None if r.distance is None else round(r.distance, 4),
                    "liveness": r.liveness,
                    "accepted": r.accepted,
                    "reason": r.reason,
                }
            )
    attacks = []
    for name in tf.PHOTOS:
        for kind in ("static", "rigid"):
            r = check_face(cards[name], InMemoryCamera(clips[kind, name]), settings=settings)
            attacks.append(
                {"photo": name, "attack": kind, "eye_change": round(r.eye_change, 4), "accepted": r.accepted}
            )
    genuine_d = [float(str(p["distance"])) for p in pairs if p["genuine"] and p["card"] != p["camera"]]
    impostor_d = [float(str(p["distance"])) for p in pairs if not p["genuine"] and p["distance"] is not None]
    live_changes = [
        round(check_face(cards[n], InMemoryCamera(clips["natural", n]), settings=settings).eye_change, 4)
        for n in tf.PHOTOS
    ]
    report = {
        "cpu": platform.processor() or platform.machine(),
        "frames_per_check": settings.frames,
        "frame_size": [640, 480],
        "checks": args.checks,
        "cpus": os.cpu_count(),
        "load_average_1m": round(load_before, 2),
        "check_ms": {
            "p50": round(_percentile(check_ms, 50), 1),
            "p99": round(_percentile(check_ms, 99), 1),
            "mean": round(statistics.fmean(check_ms), 1),
        },
        "check_cpu_ms": {
            "p50": round(_percentile(check_cpu_ms, 50), 1),
            "p99": round(_percentile(check_cpu_ms, 99), 1),
        },
        "bare_face_encodings_ms": {
            "p50": round(_percentile(bare_ms, 50), 1),
            "cpu_p50": round(_percentile(bare_cpu_ms, 50), 1),
        },
        "check_over_bare_encoding": round(_percentile(check_ms, 50) / _percentile(bare_ms, 50), 2),
        "check_over_bare_encoding_cpu": round(_percentile(check_cpu_ms, 50) / _percentile(bare_cpu_ms, 50), 2),
        "threshold": settings.threshold,
        "genuine_pairs": sum(1 for p in pairs if p["genuine"]),
        "impostor_pairs": sum(1 for p in pairs if not p["genuine"]),
        "false_accepts": false_accepts,
        "false_rejects": false_rejects,
        "max_genuine_distance_cross_photo": max(genuine_d),
        "min_impostor_distance": min(impostor_d),
        "still_image_attacks": len(attacks),
        "still_image_attacks_accepted": sum(1 for a in attacks if a["accepted"]),
        "max_still_image_eye_change": max(a["eye_change"] for a in attacks),
        "min_blink_eye_change": min(live_changes),
        "eye_change_min": settings.eye_change_min,
        "pairs": pairs,
        "attacks": attacks,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
