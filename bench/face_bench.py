"""Face-check benchmark: latency on this CPU and accuracy on every pair the test images give.

    .venv/bin/python bench/face_bench.py [--rounds 5] [--checks 10] [--baseline REF] [--configs ...]

Each configuration runs in a process of its own, kept warm for the whole run, and the parent
interleaves them: every round runs ``--checks`` checks in each configuration, in a rotating order,
so that the other load on this shared machine weighs on all alike. Configurations (``--configs``,
default ``after,after_no_worker,before``):

* ``after``: this tree, the encoder worker on (waited for before the first round);
* ``after_no_worker``: this tree with ``SHIKAKU_FACE_WORKER=false`` (everything in one process);
* ``after_2_frames``: this tree, the worker on, ``SHIKAKU_FACE_ENCODE_FRAMES=2`` (not the default);
* ``before`` (with ``--baseline REF``): ``clinic_terminal``, ``schemas`` and ``testbed`` of git
  revision REF (``git archive`` into a temporary directory), driven by this same script.

Latency: complete checks (card photo decode + encode, 30 frames of 640x480, HOG detection,
landmarks, liveness, encodings) through an InMemoryCamera holding pre-decoded frames, so camera
warm-up and video decoding are excluded; one warm-up check first (model loading). Also timed, in
the same process and interleaved: one bare ``face_recognition.face_encodings(frame)`` call
(detection with the library's defaults + one encoding), for the ratio. Reported per configuration:
wall p50 / p99 / mean over all rounds, the calling process's CPU p50 (the worker's CPU is not in
it), and per round the p50 ratio to ``before`` (and to ``after_no_worker``).

Accuracy, per configuration: every test photo as the card photo against a live-looking clip of
every photo (genuine = same person; the photo against its own clip counts as genuine too) ->
false accepts and false rejects at the threshold, with every distance; and every photo as a
still-image attack (static and moved rigidly) against its own card photo -> attacks accepted.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ---------------------------------------------------------------- one configuration (child)


def _bare_encodings() -> Any:
    """What ``face_recognition.face_encodings(rgb)`` does with its defaults (HOG at upsample 1,
    5-point landmarks, one encoding per face), through the tree's own dlib models (``_dlib``), or
    through face_recognition in a baseline tree from before them."""
    try:
        from clinic_terminal.face import _dlib
    except ImportError:  # a baseline tree that still used face_recognition
        import face_recognition  # only in baseline trees (mypy: ignore_missing_imports)

        return face_recognition.face_encodings
    models = _dlib.models()

    def encodings(rgb: Any) -> list[Any]:
        return [models.encoder.compute_face_descriptor(rgb, models.pose_5(rgb, r), 1) for r in models.detector(rgb, 1)]

    return encodings


def _serve(threshold: float | None) -> None:
    """Child: build the clips, warm up, then answer ``latency N`` / ``accuracy`` / ``quit`` lines
    on stdin with one JSON line each on stdout."""
    from clinic_terminal.face import FaceSettings, InMemoryCamera, check_face
    from clinic_terminal.face.camera import Frame
    from testbed import faces as tf

    settings = FaceSettings() if threshold is None else FaceSettings(threshold=threshold)
    cards = {name: tf.card_photo_jp2(name) for name in tf.PHOTOS}
    clips: dict[tuple[str, str], list[Frame]] = {}
    with tempfile.TemporaryDirectory(prefix="face-bench-") as tmp:
        for name in tf.PHOTOS:
            stem = Path(name).stem
            for kind, make in (
                ("natural", tf.natural_frames),
                ("static", tf.static_frames),
                ("rigid", tf.rigid_frames),
            ):
                clips[kind, name] = tf.read_clip(tf.write_clip(make(name), Path(tmp) / f"{kind}_{stem}"))
    bare_encodings = _bare_encodings()
    worker_ready = None
    try:
        from clinic_terminal.face.encoder import start_encoder_worker
    except ImportError:  # the baseline has no worker
        pass
    else:
        worker_ready = start_encoder_worker(wait=120.0) if settings.worker else False
    genuine_card, genuine_clip = cards["obama.jpg"], clips["natural", "obama2.jpg"]
    rgb = np.ascontiguousarray(genuine_clip[0][:, :, ::-1])
    check_face(genuine_card, InMemoryCamera(genuine_clip), settings=settings)  # warm-up
    bare_encodings(rgb)
    print(json.dumps({"ready": True, "worker_ready": worker_ready}), flush=True)

    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            return
        if command[0] == "latency":
            check_ms: list[float] = []
            check_cpu_ms: list[float] = []
            bare_ms: list[float] = []
            for _ in range(int(command[1])):
                t0, c0 = time.perf_counter(), time.process_time()
                result = check_face(genuine_card, InMemoryCamera(genuine_clip), settings=settings)
                check_ms.append((time.perf_counter() - t0) * 1000)
                check_cpu_ms.append((time.process_time() - c0) * 1000)
                assert result.accepted
                t0 = time.perf_counter()
                bare_encodings(rgb)
                bare_ms.append((time.perf_counter() - t0) * 1000)
            print(json.dumps({"check_ms": check_ms, "check_cpu_ms": check_cpu_ms, "bare_ms": bare_ms}), flush=True)
        elif command[0] == "accuracy":
            pairs = []
            for card_name in tf.PHOTOS:
                for camera_name in tf.PHOTOS:
                    r = check_face(cards[card_name], InMemoryCamera(clips["natural", camera_name]), settings=settings)
                    pairs.append(
                        {
                            "card": card_name,
                            "camera": camera_name,
                            "genuine": tf.same_person(card_name, camera_name),
                            "distance": None if r.distance is None else round(r.distance, 4),
                            "liveness": r.liveness,
                            "eye_change": round(r.eye_change, 4),
                            "accepted": r.accepted,
                            "reason": r.reason,
                        }
                    )
            attacks = []
            for name in tf.PHOTOS:
                for kind in ("static", "rigid"):
                    r = check_face(cards[name], InMemoryCamera(clips[kind, name]), settings=settings)
                    attacks.append(
                        {
                            "photo": name,
                            "attack": kind,
                            "eye_change": round(r.eye_change, 4),
                            "match": r.match,
                            "reason": r.reason,
                            "accepted": r.accepted,
                        }
                    )
            print(json.dumps({"pairs": pairs, "attacks": attacks, "threshold": settings.threshold}), flush=True)


# ---------------------------------------------------------------- the run (parent)


class _Config:
    def __init__(self, name: str, pythonpath: Path, env: dict[str, str], threshold: float | None) -> None:
        self.name = name
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        if threshold is not None:
            argv += ["--threshold", str(threshold)]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env, "PYTHONPATH": str(pythonpath)},
        )
        self.check_ms: list[float] = []
        self.check_cpu_ms: list[float] = []
        self.bare_ms: list[float] = []
        self.round_p50: list[float] = []
        self.hello: dict[str, Any] = {}
        self.accuracy: dict[str, Any] = {}

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"configuration {self.name} ended unexpectedly")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


@contextmanager
def _baseline_tree(ref: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="face-bench-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", ref, "clinic_terminal", "schemas", "testbed"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def _distances(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    cross = [p["distance"] for p in pairs if p["genuine"] and p["card"] != p["camera"]]
    same = [p["distance"] for p in pairs if p["card"] == p["camera"]]
    impostor = [p["distance"] for p in pairs if not p["genuine"] and p["distance"] is not None]
    return {
        "genuine_cross_photo": sorted(cross),
        "genuine_same_photo": sorted(same),
        "impostor": {"min": min(impostor), "median": statistics.median(impostor), "max": max(impostor)},
        "impostor_all": sorted(impostor),
    }


def _summary(config: _Config) -> dict[str, Any]:
    pairs, attacks = config.accuracy["pairs"], config.accuracy["attacks"]
    return {
        "worker_ready": config.hello.get("worker_ready"),
        "check_ms": {
            "p50": round(_percentile(config.check_ms, 50), 1),
            "p99": round(_percentile(config.check_ms, 99), 1),
            "mean": round(statistics.fmean(config.check_ms), 1),
            "round_p50": [round(v, 1) for v in config.round_p50],
        },
        "check_cpu_ms_calling_process_p50": round(_percentile(config.check_cpu_ms, 50), 1),
        "bare_face_encodings_ms_p50": round(_percentile(config.bare_ms, 50), 1),
        "check_over_bare_encoding": round(_percentile(config.check_ms, 50) / _percentile(config.bare_ms, 50), 2),
        "false_accepts": sum(1 for p in pairs if p["accepted"] and not p["genuine"]),
        "false_rejects": sum(1 for p in pairs if p["genuine"] and not p["accepted"]),
        "genuine_pairs": sum(1 for p in pairs if p["genuine"]),
        "impostor_pairs": sum(1 for p in pairs if not p["genuine"]),
        "distances": _distances(pairs),
        "still_image_attacks": len(attacks),
        "still_image_attacks_accepted": sum(1 for a in attacks if a["accepted"]),
        "still_image_refusals": sorted({a["reason"] for a in attacks}),
        "max_still_image_eye_change": max(a["eye_change"] for a in attacks),
        "min_blink_eye_change": min(p["eye_change"] for p in pairs if p["card"] == p["camera"]),
        "pairs": pairs,
        "attacks": attacks,
    }


def _ratios(a: _Config, b: _Config) -> dict[str, Any]:
    per_round = [x / y for x, y in zip(a.round_p50, b.round_p50, strict=True)]
    return {
        "per_round": [round(v, 3) for v in per_round],
        "median": round(statistics.median(per_round), 3),
        "pooled_p50": round(_percentile(a.check_ms, 50) / _percentile(b.check_ms, 50), 3),
        "pooled_p99": round(_percentile(a.check_ms, 99) / _percentile(b.check_ms, 99), 3),
    }


def _run(args: argparse.Namespace, baseline: Path | None) -> dict[str, Any]:
    known = {
        "after": (REPO, {"SHIKAKU_FACE_WORKER": "true"}),
        "after_no_worker": (REPO, {"SHIKAKU_FACE_WORKER": "false"}),
        "after_2_frames": (REPO, {"SHIKAKU_FACE_WORKER": "true", "SHIKAKU_FACE_ENCODE_FRAMES": "2"}),
    }
    if baseline is not None:
        known["before"] = (baseline, {})
    configs = [_Config(name, *known[name], args.threshold) for name in args.configs.split(",") if name in known]
    try:
        for config in configs:
            config.hello = config.ask("")
        load_before = os.getloadavg()
        for round_no in range(args.rounds):
            shift = round_no % len(configs)
            for config in configs[shift:] + configs[:shift]:
                answer = config.ask(f"latency {args.checks}")
                config.check_ms += answer["check_ms"]
                config.check_cpu_ms += answer["check_cpu_ms"]
                config.bare_ms += answer["bare_ms"]
                config.round_p50.append(_percentile(answer["check_ms"], 50))
        load_after = os.getloadavg()
        for config in configs:
            config.accuracy = config.ask("accuracy")
    finally:
        for config in configs:
            config.close()
    by_name = {c.name: c for c in configs}
    report: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "frames_per_check": 30,
        "frame_size": [640, 480],
        "rounds": args.rounds,
        "checks_per_round": args.checks,
        "baseline": args.baseline,
        "load_average_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
    }
    compared = ("after", "before"), ("after_no_worker", "before"), ("after_2_frames", "before")
    for a, b in (*compared, ("after", "after_no_worker")):
        if a in by_name and b in by_name:
            report[f"ratio_{a}_over_{b}"] = _ratios(by_name[a], by_name[b])
    report["configs"] = {c.name: _summary(c) for c in configs}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checks", type=int, default=10, help="checks per configuration and round")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--baseline", default=None, help="git revision to compare with (e.g. 7013de7)")
    parser.add_argument(
        "--configs",
        default="after,after_no_worker,before",
        help="comma-separated: after, after_no_worker, after_2_frames, before (needs --baseline)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.threshold)
        return
    if args.baseline is None:
        report = _run(args, None)
    else:
        with _baseline_tree(args.baseline) as tree:
            report = _run(args, tree)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
