"""Face encodings: aligned face chips, dlib's ResNet here or in a worker process kept warm.

An encoding is dlib's 5-point landmarks -> an aligned 150 x 150 chip (``dlib.get_face_chip``,
padding 0.25) -> the ResNet (``compute_face_descriptor`` on the chip): bit for bit what
``face_recognition.face_encodings(rgb, [box], num_jitters=1, model="small")`` would return (tested).

The ResNet is ~90 ms per face on this CPU and dlib holds the GIL while it runs, so threads cannot
overlap it with the rest of a check. :class:`EncoderWorker` runs it in a second process, started
once (lazily, by the first check, or by :func:`start_encoder_worker`) and kept warm; a check hands
it chips as soon as it has chosen them and goes on with the next frames. Chips travel over a
socket pair in memory -- never a file, never shared memory in /dev/shm -- and are dropped on both
sides as soon as their encoding is back. The worker is an accelerator only: when it is switched
off (``SHIKAKU_FACE_WORKER=false``), not ready yet, busy with another check, or fails, the chips
are encoded in this process, with the same result.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import dlib
import numpy as np
import numpy.typing as npt

from clinic_terminal.closing import Closing
from clinic_terminal.face import _dlib

logger = logging.getLogger(__name__)

RGBImage = npt.NDArray[np.uint8]
Chip = npt.NDArray[np.uint8]
Encoding = npt.NDArray[np.float64]
# face_recognition's (top, right, bottom, left)
Box = tuple[int, int, int, int]

CHIP_SIZE = 150  # what dlib's ResNet takes
CHIP_PADDING = 0.25  # as compute_face_descriptor(image, shape) extracts it
_WORKER_SCRIPT = Path(__file__).with_name("_encoder_worker.py")
_HEADER = struct.Struct("<IHH")
_JOB = struct.Struct("<I")
_ENCODING_BYTES = 128 * 8
# Two chips (2 x 67.5 KB) fit the socket buffer: sending never blocks the check.
_MAX_IN_FLIGHT = 2
_REPLY_TIMEOUT_S = 5.0  # one encoding is ~0.1 s; only a stuck or starved worker takes this long
_MAX_FAILURES = 3  # after this many crashes or time-outs the process encodes by itself


def _model_path() -> str:
    return str(_dlib.model_dir() / _dlib.ENCODER_MODEL)


def face_chip(rgb: RGBImage, box: Box) -> Chip:
    """The aligned 150 x 150 RGB chip of the face in ``box`` (dlib's 5-point landmarks)."""
    top, right, bottom, left = box
    shape = _dlib.models().pose_5(rgb, dlib.rectangle(left, top, right, bottom))
    chip: Chip = np.asarray(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING), dtype=np.uint8)
    return chip


def describe(chip: Chip) -> Encoding:
    """The 128-d encoding of an aligned chip, computed in this process."""
    result: Encoding = np.asarray(_dlib.models().encoder.compute_face_descriptor(chip), dtype=np.float64)
    return result


class WorkerError(Exception):
    """The worker process failed (died, stuck, or answered out of turn)."""


class EncoderWorker:
    """A child process that runs the ResNet on chips sent to it (see the module docstring).

    One check at a time uses it (:attr:`lock`); a check that finds it taken encodes by itself.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._guard = threading.Lock()  # start / stop
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._owner_pid = 0
        self._ready = False
        self._failures = 0
        self._next_job = 0

    def __repr__(self) -> str:
        state = "ready" if self._ready else "starting" if self._process is not None else "stopped"
        return f"EncoderWorker({state})"

    @property
    def usable(self) -> bool:
        """Not given up on after repeated failures."""
        return self._failures < _MAX_FAILURES

    def start(self) -> None:
        """Start the process unless it runs already; returns at once (the model loads meanwhile)."""
        with self._guard:
            if self._process is not None and self._owner_pid != os.getpid():
                # inherited through fork: that process and its socket belong to the parent
                self._process, self._connection, self._ready = None, None, False
            if self._process is not None or not self.usable:
                return
            parent_end, child_end = socket.socketpair()
            try:
                # -I -B: no environment, no user site, no bytecode written; stdin is the socket,
                # stdout goes to our stderr (the worker prints nothing; the socket stays clean)
                process = subprocess.Popen(
                    [sys.executable, "-I", "-B", str(_WORKER_SCRIPT), _model_path()],
                    stdin=child_end.fileno(),
                    stdout=2,
                    close_fds=True,
                )
            except (OSError, ValueError):
                parent_end.close()
                self._failures += 1
                logger.warning("face encoder worker could not be started; encoding in this process")
                return
            finally:
                child_end.close()
            self._process = process
            self._connection = Connection(parent_end.detach())
            self._owner_pid = os.getpid()
            self._ready = False

    def is_ready(self) -> bool:
        """The model is loaded and the worker takes chips (never blocks)."""
        return self.wait_ready(0.0)

    def wait_ready(self, timeout: float) -> bool:
        if self._ready:
            return True
        connection = self._connection
        if connection is None or self._owner_pid != os.getpid():
            return False
        try:
            if not connection.poll(timeout):
                if self._process is not None and self._process.poll() is not None:
                    self.fail("exited while starting")
                return False
            ready = connection.recv_bytes() == b"ready"
        except (EOFError, OSError):
            self.fail("exited while starting")
            return False
        if not ready:
            self.fail("did not start properly")
            return False
        self._ready = True
        return True

    def send(self, chip: Chip) -> int:
        """Hand a chip over; returns its job number."""
        if not self._ready or self._connection is None:
            raise WorkerError("worker not ready")
        job = self._next_job
        self._next_job = (self._next_job + 1) % 2**32
        height, width = chip.shape[:2]
        try:
            self._connection.send_bytes(_HEADER.pack(job, height, width) + np.ascontiguousarray(chip).tobytes())
        except OSError as exc:
            raise WorkerError("worker gone") from exc
        return job

    def receive(self, timeout: float) -> tuple[int, Encoding | None] | None:
        """The next answer: (job, encoding, or None when the worker could not encode that chip);
        ``None`` when nothing arrived within ``timeout``."""
        connection = self._connection
        if connection is None:
            raise WorkerError("worker not running")
        try:
            if not connection.poll(timeout):
                return None
            message = connection.recv_bytes()
        except (EOFError, OSError) as exc:
            raise WorkerError("worker gone") from exc
        kind, body = message[:1], message[1:]
        if len(body) < _JOB.size:
            raise WorkerError("malformed answer")
        (job,) = _JOB.unpack_from(body)
        if kind == b"E":
            return job, None
        if kind != b"R" or len(body) != _JOB.size + _ENCODING_BYTES:
            raise WorkerError("malformed answer")
        encoding: Encoding = np.frombuffer(body, dtype=np.float64, offset=_JOB.size).copy()
        return job, encoding

    def fail(self, why: str) -> None:
        """Stop the process after a failure; a later :meth:`start` makes a new one."""
        self._failures += 1
        logger.warning("face encoder worker %s; encoding in this process", why)
        self.stop()

    def stop(self) -> None:
        with self._guard:
            connection, process = self._connection, self._process
            self._connection, self._process, self._ready = None, None, False
            if self._owner_pid != os.getpid():
                return
            if connection is not None:
                connection.close()  # the worker reads end of input and exits
            if process is not None:
                try:
                    process.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


_WORKER: EncoderWorker | None = None
_WORKER_GUARD = threading.Lock()


def shared_worker() -> EncoderWorker:
    """This process's encoder worker (created on first use, stopped at exit), started."""
    global _WORKER
    with _WORKER_GUARD:
        if _WORKER is None:
            _WORKER = EncoderWorker()
            atexit.register(_WORKER.stop)
        worker = _WORKER
    worker.start()
    return worker


def start_encoder_worker(*, wait: float = 0.0) -> bool:
    """Start the worker ahead of the first check (a kiosk at start-up); with ``wait`` > 0 wait up
    to that many seconds for its model to load. True when it is ready."""
    worker = shared_worker()
    return worker.wait_ready(wait) if wait > 0 else worker.is_ready()


def stop_encoder_worker() -> None:
    """Stop this process's worker (a later check starts a new one)."""
    with _WORKER_GUARD:
        worker = _WORKER
    if worker is not None:
        worker.stop()


class Encodings(Closing):
    """The encodings one check needs, in the order they were submitted.

    :meth:`submit` queues a chip; :meth:`pump` (called between frames; never blocks) hands queued
    chips to the worker and collects its answers; :meth:`results` encodes here whatever the worker
    has not taken, waits for the rest and returns every encoding. Chips are dropped as soon as
    their encoding is known. Use as a context manager: leaving it releases the worker.
    """

    def __init__(self, worker: EncoderWorker | None) -> None:
        self._worker = worker if worker is not None and worker.lock.acquire(blocking=False) else None
        self._chips: list[Chip | None] = []
        self._encodings: list[Encoding | None] = []
        self._queued: list[int] = []  # submitted, not sent
        self._sent: dict[int, int] = {}  # worker job -> index
        self.remote = 0  # encodings the worker computed (diagnostics)

    def submit(self, chip: Chip) -> int:
        self._chips.append(chip)
        self._encodings.append(None)
        index = len(self._chips) - 1
        self._queued.append(index)
        self.pump()
        return index

    def pump(self) -> None:
        worker = self._worker
        if worker is None:
            return
        try:
            while self._sent:
                answer = worker.receive(0.0)
                if answer is None:
                    break
                self._settle(*answer)
            if not worker.is_ready():
                return
            while self._queued and len(self._sent) < _MAX_IN_FLIGHT:
                index = self._queued.pop(0)
                chip = self._chips[index]
                assert chip is not None
                self._sent[worker.send(chip)] = index
        except WorkerError as exc:
            self._lose_worker(str(exc))

    def results(self) -> list[Encoding]:
        self.pump()
        # what the worker has not taken is encoded here, meanwhile it finishes what it has
        while self._queued:
            index = self._queued.pop()
            self._local(index)
            self.pump()
        deadline = time.monotonic() + _REPLY_TIMEOUT_S
        while self._sent and self._worker is not None:
            try:
                answer = self._worker.receive(max(0.0, deadline - time.monotonic()))
                if answer is None:
                    raise WorkerError("did not answer in time")
                self._settle(*answer)
            except WorkerError as exc:
                self._lose_worker(str(exc))
        out: list[Encoding] = []
        for index, encoding in enumerate(self._encodings):
            out.append(encoding if encoding is not None else self._local(index))
        return out

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                # answers still due to this check must not reach the next one
                deadline = time.monotonic() + _REPLY_TIMEOUT_S
                while self._sent:
                    answer = worker.receive(max(0.0, deadline - time.monotonic()))
                    if answer is None:
                        worker.fail("did not answer in time")
                        break
                    self._sent.pop(answer[0], None)
            except WorkerError as exc:
                worker.fail(str(exc))
            finally:
                worker.lock.release()
        self._sent.clear()
        self._queued.clear()
        self._chips.clear()
        self._encodings.clear()

    def _settle(self, job: int, encoding: Encoding | None) -> None:
        index = self._sent.pop(job, None)
        if index is None:
            raise WorkerError("answer to a job it was not given")
        if encoding is None:
            self._local(index)
            return
        self.remote += 1
        self._encodings[index] = encoding
        self._chips[index] = None

    def _local(self, index: int) -> Encoding:
        encoding = self._encodings[index]
        if encoding is None:
            chip = self._chips[index]
            assert chip is not None
            encoding = describe(chip)
            self._encodings[index] = encoding
            self._chips[index] = None
        return encoding

    def _lose_worker(self, why: str) -> None:
        worker, self._worker = self._worker, None
        assert worker is not None
        self._sent.clear()  # their chips are still here: encoded by results()
        self._queued = [i for i, e in enumerate(self._encodings) if e is None]
        worker.fail(why)
        worker.lock.release()
