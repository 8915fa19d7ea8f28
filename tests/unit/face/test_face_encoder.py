"""The encodings: chips, the worker process (same numbers, overlapping the capture), fallbacks."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import cv2
import dlib
import numpy as np
import numpy.typing as npt
import pytest

from clinic_terminal.face import FaceSettings, InMemoryCamera, _dlib, check_face, encoder, matcher
from clinic_terminal.face.camera import Frame
from clinic_terminal.face.encoder import EncoderWorker, Encodings, describe, face_chip


@pytest.fixture(scope="module")
def worker() -> Iterator[EncoderWorker]:
    """A worker of the tests' own (the shared one may be busy or absent)."""
    process = EncoderWorker()
    process.start()
    assert process.wait_ready(120.0), "the encoder worker did not start"
    yield process
    process.stop()


@pytest.fixture
def shared_ready() -> EncoderWorker:
    """The process-wide worker that check_face uses, started and ready."""
    assert encoder.start_encoder_worker(wait=120.0), "the encoder worker did not start"
    return encoder.shared_worker()


def _face(frames: list[Frame], i: int = 0) -> tuple[npt.NDArray[np.uint8], matcher.Box]:
    rgb = np.ascontiguousarray(cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB), dtype=np.uint8)
    grey = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    return rgb, matcher.find_faces(grey)[0]


def test_chip_encoding_is_face_recognitions_encoding(clip_frames: dict[str, list[Frame]]) -> None:
    rgb, box = _face(clip_frames["genuine"])
    chip = face_chip(rgb, box)
    assert chip.shape == (150, 150, 3)
    # what face_recognition.face_encodings(rgb, [box], num_jitters=1, model="small") computes
    models = _dlib.models()
    top, right, bottom, left = box
    shape = models.pose_5(rgb, dlib.rectangle(left, top, right, bottom))
    expected = np.asarray(models.encoder.compute_face_descriptor(rgb, shape, 1), dtype=np.float64)
    assert np.array_equal(describe(chip), expected)  # bit for bit


def test_worker_encodes_bit_for_bit_as_this_process(clip_frames: dict[str, list[Frame]], worker: EncoderWorker) -> None:
    chips = [face_chip(*_face(clip_frames[kind], i)) for kind, i in (("genuine", 0), ("impostor", 5), ("genuine", 20))]
    with Encodings(worker) as encodings:
        for chip in chips:
            encodings.submit(chip)
        results = encodings.results()
        assert encodings.remote >= 2  # the third may still wait when the results are asked for
    for chip, encoding in zip(chips, results, strict=True):
        assert np.array_equal(encoding, describe(chip))


def test_a_dead_worker_costs_time_not_the_check(clip_frames: dict[str, list[Frame]]) -> None:
    own = EncoderWorker()
    own.start()
    assert own.wait_ready(120.0)
    chips = [face_chip(*_face(clip_frames["genuine"], i)) for i in (0, 10)]
    process = own._process
    assert process is not None
    with Encodings(own) as encodings:
        encodings.submit(chips[0])
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        encodings.submit(chips[1])
        results = encodings.results()
        assert encodings.remote == 0
    assert [np.array_equal(r, describe(c)) for r, c in zip(results, chips, strict=True)] == [True, True]
    # the next use starts a new process
    own.start()
    try:
        assert own.wait_ready(120.0)
        assert own._process is not None and own._process.pid != process.pid
    finally:
        own.stop()


def test_a_stuck_worker_costs_the_time_out_not_the_check(
    clip_frames: dict[str, list[Frame]], monkeypatch: pytest.MonkeyPatch
) -> None:
    own = EncoderWorker()
    own.start()
    assert own.wait_ready(120.0)
    process = own._process
    assert process is not None
    chips = [face_chip(*_face(clip_frames["genuine"], i)) for i in (0, 10, 20)]
    order: list[int] = []
    real_describe = encoder.describe

    def local(chip: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        order.append(next(i for i, c in enumerate(chips) if np.array_equal(c, chip)))
        return real_describe(chip)

    monkeypatch.setattr(encoder, "describe", local)
    monkeypatch.setattr(encoder, "_REPLY_TIMEOUT_S", 0.5)
    os.kill(process.pid, signal.SIGSTOP)
    try:
        with Encodings(own) as encodings:
            for chip in chips:
                encodings.submit(chip)
            results = encodings.results()
            assert encodings.remote == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
        own.stop()
    # the chip the worker had not taken yet first, then the two it never answered
    assert order == [2, 0, 1]
    assert [np.array_equal(r, real_describe(c)) for r, c in zip(results, chips, strict=True)] == [True] * 3
    assert process.returncode is not None  # the stuck process was killed; a later start() makes a new one


def test_a_busy_worker_is_not_shared(clip_frames: dict[str, list[Frame]], worker: EncoderWorker) -> None:
    chip = face_chip(*_face(clip_frames["genuine"]))
    with Encodings(worker) as first, Encodings(worker) as second:
        first.submit(chip)
        second.submit(chip)
        assert np.array_equal(second.results()[0], first.results()[0])
        assert (first.remote, second.remote) == (1, 0)  # the second check encoded by itself


class _RecordingCamera:
    """InMemoryCamera that notes each frame read in a shared event list."""

    def __init__(self, frames: list[Frame], events: list[str]) -> None:
        self._camera = InMemoryCamera(frames)
        self._events = events

    def __enter__(self) -> Self:
        self._events.append("open")
        self._camera.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._camera.__exit__(exc_type, exc, tb)

    def read(self) -> Frame | None:
        frame = self._camera.read()
        if frame is not None:
            self._events.append("frame")
        return frame


@pytest.mark.slow
def test_encodings_run_in_the_worker_while_the_frames_are_read(
    card_photos: dict[str, bytes],
    clip_frames: dict[str, list[Frame]],
    face_settings: FaceSettings,
    shared_ready: EncoderWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The card photo's chip is handed over before the camera opens, every sampled frame's chip
    before the capture ends; nothing is encoded in this process; the verdict and distance are
    those of the check without the worker."""
    events: list[str] = []
    real_send, real_describe = EncoderWorker.send, encoder.describe

    def send(self: EncoderWorker, chip: npt.NDArray[np.uint8]) -> int:
        events.append("send")
        return real_send(self, chip)

    def local(chip: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        events.append("local")
        return real_describe(chip)

    monkeypatch.setattr(EncoderWorker, "send", send)
    monkeypatch.setattr(encoder, "describe", local)
    # every chip straight to the worker: how many wait for it depends on the machine's load, and
    # those still waiting at the end would be encoded here (tested above)
    monkeypatch.setattr(encoder, "_MAX_IN_FLIGHT", 8)
    with_worker = check_face(
        card_photos["obama.jpg"], _RecordingCamera(clip_frames["genuine"], events), settings=face_settings
    )
    assert with_worker.accepted
    assert "local" not in events
    assert events.count("send") == 1 + face_settings.encode_frames
    assert events.index("send") < events.index("open")
    last_frame = len(events) - 1 - events[::-1].index("frame")
    last_send = len(events) - 1 - events[::-1].index("send")
    assert last_send < last_frame  # the last sampled frame's chip left before the capture ended

    events.clear()
    alone = check_face(
        card_photos["obama.jpg"],
        _RecordingCamera(clip_frames["genuine"], events),
        settings=face_settings.model_copy(update={"worker": False}),
    )
    assert "send" not in events and events.count("local") == 1 + face_settings.encode_frames
    assert (alone.distance, alone.eye_change, alone.reason) == (with_worker.distance, with_worker.eye_change, None)


def test_worker_off_starts_no_process(
    card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no(*_: object) -> EncoderWorker:
        raise AssertionError("no worker may be started")

    monkeypatch.setattr(matcher, "shared_worker", no)
    settings = FaceSettings(worker=False)
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(clip_frames["two_people"]), settings=settings)
    assert result.reason == "several_faces"
