"""Privacy, tested: one full face check leaves no image, frame or encoding on disk or in logs.

A full check (card photo bytes, video file through OpenCVCamera) runs with logging at DEBUG, in a
fresh working directory and with a fresh TMPDIR / tempfile.tempdir. Three layers:

1. Attribution: a Python audit hook records every file this process opens for writing (or
   renames, links, creates as a temp file) while the check runs -- there must be none. Bytecode
   caches (``__pycache__``) written by a first import are the only exception.
2. Isolated directories (the check's working directory and TMPDIR): no file may appear at all;
   a file that did would also be searched for image magic bytes (JPEG, JPEG 2000, PNG) and the
   encodings' bytes.
3. Shared directories (the repository, tempfile.gettempdir(), /tmp, /dev/shm) are snapshotted
   before and after; every new or changed file is searched for content only this check can have
   produced: the float64 and float32 bytes of every encoding it computed (captured by a spy on the
   comparison, so encodings computed by the worker process count too) and the card photo's own
   bytes. Image magic bytes are NOT looked for there: other
   engineers' tests write screenshots and images into the same tree concurrently, and such a
   file says nothing about this check (layer 1 attributes writes to this process instead).

4. OS level: the real ``clinic-terminal face-check`` runs under strace; no syscall may create or
   open a file for writing (this also covers C-level writes by dlib, OpenCV and Pillow, which
   layer 1 cannot see); so does a check whose every encoding the encoder worker process computes,
   the worker's start included (``strace -f`` follows it). Skipped only where strace is missing
   or cannot trace.

The log text may hold no encoding value and no run of numbers. The test's own inputs (pytest's
temporary tree) are excluded from the shared snapshot.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from clinic_terminal.face import FaceSettings, OpenCVCamera, check_face
from clinic_terminal.face import matcher as matcher_module

REPO = Path(__file__).resolve().parents[3]
MAGIC = {
    "jpeg": re.compile(rb"\xff\xd8\xff[\xe0-\xef\xdb\xc0\xc4\xfe]"),
    "jp2": re.compile(re.escape(b"\x00\x00\x00\x0cjP  \r\n\x87\n")),
    "j2k": re.compile(re.escape(b"\xff\x4f\xff\x51")),
    "png": re.compile(re.escape(b"\x89PNG\r\n\x1a\n")),
}
_MAX_READ = 64 * 1024 * 1024

Snapshot = dict[str, tuple[int, int, int]]


def _snapshot(roots: Iterable[Path], excluded: tuple[str, ...]) -> Snapshot:
    seen: Snapshot = {}
    for root in roots:
        if not root.is_dir():
            continue
        for directory, subdirs, files in os.walk(root, followlinks=False):
            if directory.startswith(excluded):
                subdirs[:] = []
                continue
            subdirs[:] = [d for d in subdirs if not os.path.join(directory, d).startswith(excluded)]
            for name in files:
                path = os.path.join(directory, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                seen[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return seen


def _changed(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(path for path, meta in after.items() if before.get(path) != meta)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(_MAX_READ)
    except OSError:
        return b""


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {"os.rename", "os.replace", "os.link", "os.symlink", "os.truncate", "tempfile.mkstemp"}


class _WriteRecorder:
    """Audit hook (cannot be removed once added; inert while ``active`` is false)."""

    def __init__(self) -> None:
        self.active = False
        self.writes: list[str] = []

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = [*args, None, None, None][:3]
            writes = (isinstance(flags, int) and bool(flags & _WRITE_FLAGS)) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if writes and "__pycache__" not in str(path):
                self.writes.append(f"open {path}")
        elif event in _WRITE_EVENTS:
            self.writes.append(f"{event} {args[0] if args else ''}")


_RECORDER = _WriteRecorder()
sys.addaudithook(_RECORDER)


def _unique_card_photo(data: bytes) -> bytes:
    """The test card photo with invisible per-run noise: its bytes and its encoding are then
    unique to this run, so a concurrent test run elsewhere on the machine writing the same
    deterministic test card photo (kiosk and e2e tests do) cannot be mistaken for a leak."""
    with Image.open(io.BytesIO(data)) as image:
        grey = np.asarray(image.convert("L"), dtype=np.int16)
    noise = np.random.default_rng(secrets.randbits(64)).integers(-2, 3, grey.shape, dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(grey + noise, 0, 255).astype(np.uint8)).save(
        out, format="JPEG2000", quality_mode="rates", quality_layers=[12.0]
    )
    return out.getvalue()


def _search(paths: Iterable[str], patterns: list[bytes], *, magic: bool) -> None:
    for path in paths:
        content = _read(path)
        # pytest.fail rather than assert: a failure report must not print the bytes themselves
        if magic:
            for kind, regex in MAGIC.items():
                if regex.search(content):
                    pytest.fail(f"{path} holds {kind} image data after a face check")
        if any(pattern in content for pattern in patterns):
            pytest.fail(f"{path} holds face data (an encoding or the card photo) after a face check")


@pytest.mark.slow
def test_face_check_leaves_no_trace(
    card_photos: dict[str, bytes],
    clip_files: dict[str, Path],
    face_settings: FaceSettings,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # spy on the comparison to learn exactly which encodings this check computed (the card
    # photo's and every sampled frame's, whether the worker process or this one computed them)
    computed: list[npt.NDArray[np.float64]] = []
    real_distance = matcher_module._distance

    def spy(card: npt.NDArray[np.float64], camera: npt.NDArray[np.float64]) -> float:
        computed.extend((card.copy(), camera.copy()))
        return real_distance(card, camera)

    monkeypatch.setattr(matcher_module, "_distance", spy)
    workdir, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    shared = [REPO, Path(tempfile.gettempdir()), Path("/tmp"), Path("/dev/shm")]
    # the test's own inputs: pytest's temporary tree (clips, card file; also holds workdir/tmpdir)
    basetemp = str(tmp_path_factory.getbasetemp().resolve().parent)
    excluded = (basetemp + os.sep, os.path.join(str(REPO), ".git") + os.sep)
    before = _snapshot(shared, excluded)
    card = _unique_card_photo(card_photos["obama.jpg"])
    camera = OpenCVCamera(str(clip_files["genuine"]))

    caplog.set_level(logging.DEBUG)
    _RECORDER.writes.clear()
    _RECORDER.active = True
    try:
        result = check_face(card, camera, settings=face_settings)
    finally:
        _RECORDER.active = False

    after = _snapshot(shared, excluded)
    assert result.accepted
    assert len(computed) >= 2  # the card photo and at least one camera frame
    assert "face check:" in caplog.text  # DEBUG logging was really on

    # 1. nothing opened for writing by this process during the check
    assert _RECORDER.writes == []

    patterns: list[bytes] = [card[len(card) // 2 : len(card) // 2 + 64]]
    for encoding in computed:
        assert encoding.shape == (128,)
        as64 = encoding.astype(np.float64).tobytes()
        as32 = encoding.astype(np.float32).tobytes()
        patterns += [as64[:64], as64[512:576], as32[:32], as32[256:288]]

    # 2. isolated directories: empty
    isolated = [str(p) for root in (workdir, tmpdir) for p in root.rglob("*")]
    _search([p for p in isolated if os.path.isfile(p)], patterns, magic=True)
    assert isolated == [], "the face check wrote into its working or temp directory"

    # 3. shared directories: no content that only this check could have produced
    _search(_changed(before, after), patterns, magic=False)

    log_text = caplog.text
    for encoding in computed:
        for value in encoding[:32]:
            for text in (repr(float(value)), f"{value:.6f}", str(np.float32(value))):
                if text in log_text:
                    pytest.fail("the log holds a face encoding value")
    assert not re.search(r"(-?\d+\.\d+[,\s]+){8,}", log_text), "the log holds a run of numbers"
    assert "array(" not in log_text


def test_write_recorder_sees_writes(tmp_path: Path) -> None:
    """The audit hook really catches a Python-level write (guards layer 1 against rot)."""
    _RECORDER.writes.clear()
    _RECORDER.active = True
    try:
        (tmp_path / "x.bin").write_bytes(b"x")
        (tmp_path / "x.bin").read_bytes()
    finally:
        _RECORDER.active = False
    assert _RECORDER.writes == [f"open {tmp_path / 'x.bin'}"]


_WRITE_SYSCALL = re.compile(
    r"^\d+\s+(?P<call>open|openat|openat2|creat|rename|renameat|renameat2|link|linkat|symlink|symlinkat"
    r"|mkdir|mkdirat|mknod|mknodat|truncate|memfd_create)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)"
)


def _under_strace(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``argv`` and every process it starts under ``strace -f``; returns the run and every
    successful syscall that created, renamed, linked or opened a file for writing (``/dev/null``
    aside). Skips where strace is missing or cannot trace."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: OS-level attribution not available here")
    trace = cwd / "trace.txt"
    done = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=%file,memfd_create", "-o", str(trace), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if "ptrace" in done.stderr or not trace.exists():
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    writes = []
    for line in trace.read_text(errors="replace").splitlines():
        found = _WRITE_SYSCALL.match(line)
        if found is None or found["ret"].startswith("-"):
            continue
        if found["call"].startswith("open") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", found["args"]):
            continue
        if '"/dev/null"' in found["args"]:
            continue
        writes.append(line)
    return done, writes


@pytest.mark.slow
def test_console_check_opens_no_file_for_writing(
    card_photos: dict[str, bytes], clip_files: dict[str, Path], tmp_path: Path
) -> None:
    """Layer 4, at the OS level (catches C-level writes by dlib, OpenCV, Pillow too): the real
    `clinic-terminal face-check` under strace makes no syscall that creates or writes a file."""
    card = tmp_path / "card.jp2"
    card.write_bytes(card_photos["obama.jpg"])
    script = Path(sys.executable).parent / "clinic-terminal"
    done, writes = _under_strace(
        [str(script), "face-check", "--card-photo", str(card), "--camera", str(clip_files["genuine"])], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert '"match": true' in done.stdout
    assert writes == []


_WORKER_CHECK = """
import json, sys
from clinic_terminal.face import OpenCVCamera, check_face, encoder
local = []
real = encoder.describe
encoder.describe = lambda chip: local.append(1) or real(chip)
encoder._REPLY_TIMEOUT_S = 120.0  # under strace on a busy machine a reply can take > 5 s (a fallback, not a write)
encoder._MAX_IN_FLIGHT = 64  # every chip to the worker as it is chosen: none is left queued for this
# process to encode when the worker lags under strace on a busy machine (a CI run saw local == 1)
assert encoder.start_encoder_worker(wait=240.0), "worker not ready"
card = open(sys.argv[1], "rb").read()
result = check_face(card, OpenCVCamera(sys.argv[2]))
print(json.dumps({"accepted": result.accepted, "local": len(local)}))
"""


@pytest.mark.slow
def test_worker_process_opens_no_file_for_writing(
    card_photos: dict[str, bytes], clip_files: dict[str, Path], tmp_path: Path
) -> None:
    """Layer 4 for the encoder worker: a check whose every encoding is computed in the worker
    process (chips handed over through a socket pair), the worker's own start included, makes no
    syscall in any process that creates or writes a file -- no shared memory in /dev/shm, no
    temporary file, no semaphore file, no memfd."""
    card = tmp_path / "card.jp2"
    card.write_bytes(card_photos["obama.jpg"])
    done, writes = _under_strace(
        [sys.executable, "-c", _WORKER_CHECK, str(card), str(clip_files["genuine"])], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"accepted": True, "local": 0}
    assert writes == []
