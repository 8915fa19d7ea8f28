"""The watcher does not trust what it finds in its folders (issue 9, item 14).

Anyone who can write into ``req/`` / ``res/`` / ``face/`` (clinic software, another local user) may
pre-place links, FIFOs, devices, sockets, directories or huge files under the names the watcher
uses. Results are never written through a link, only regular files are read, reads are bounded,
and the watcher stops within a second or two whatever a worker is doing."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from clinic_terminal.xmlif.face import write_face_result
from clinic_terminal.xmlif.files import RESULT_FILE_MODE, temp_path
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import DB_NAME, StateError, TerminalState
from clinic_terminal.xmlif.watcher import REQUEST_SIZE_LIMIT, FolderWatcher
from testbed import xmlif_server as t

SECRET = b"not the terminal's file\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "oqs"
    for d in ("req", "res", "face"):
        (root / d).mkdir(parents=True)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the folders the watcher owns (e.g. another user's)."""
    path = tmp_path / "elsewhere" / "target.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def state(root: Path) -> Iterator[TerminalState]:
    with TerminalState.for_root(root) as st:
        yield st


def watcher(root: Path, server: t.InMemoryServer, state: TerminalState, **kwargs: object) -> FolderWatcher:
    return FolderWatcher(root, XmlTerminal(server, state, clock=lambda: t.CLOCK), durable=False, **kwargs)  # type: ignore[arg-type]


def scan_within(w: FolderWatcher, seconds: float = 5.0) -> int:
    """``w.scan()`` in a thread; fails (instead of hanging the suite) if it blocks."""
    answered: list[int] = []
    thread = threading.Thread(target=lambda: answered.append(w.scan()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the scan blocked for more than {seconds}s"
    return answered[0]


def err_text(root: Path, name: str) -> str:
    return (root / "req" / f"{name}.err").read_text("utf-8")


# --- writing: temp names, links, modes


@pytest.mark.parametrize(
    ("request_name", "data"),
    [
        ("OQSsiquc01req_c.xml", t.single()),
        ("OQSmuquc01req_c.xml", t.bulk_registration(t.FULL_SEARCH, t.SIMPLE_SEARCH)),
    ],
)
@pytest.mark.parametrize("link", ["symlink", "dangling symlink", "hard link"])
def test_an_entry_pre_placed_at_the_temp_name_is_never_written_through(
    root: Path,
    outside: Path,
    server: t.InMemoryServer,
    state: TerminalState,
    request_name: str,
    data: bytes,
    link: str,
) -> None:
    final = root / "res" / request_name.replace("req_", "res_")
    tmp = temp_path(final)
    target = outside if link != "dangling symlink" else outside.with_name("created.txt")
    if link == "hard link":
        os.link(outside, tmp)
    else:
        tmp.symlink_to(target)
    (root / "req" / request_name).write_bytes(data)
    assert watcher(root, server, state).scan() == 1
    assert outside.read_bytes() == SECRET
    assert not outside.with_name("created.txt").exists()
    st = os.lstat(final)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert etree.fromstring(final.read_bytes()).findtext(".//ProcessingResultStatus") == "1"
    assert not os.path.lexists(tmp)


def test_the_err_file_of_a_bad_request_is_never_written_through_a_link(
    root: Path, outside: Path, server: t.InMemoryServer, state: TerminalState
) -> None:
    name = "OQSsiquc01req_bad.xml"
    temp_path(root / "req" / f"{name}.err").symlink_to(outside)
    (root / "req" / f"{name}.err").symlink_to(outside)  # the final name too: replaced, not followed
    (root / "req" / name).write_bytes(b"<broken")
    assert watcher(root, server, state, settle_seconds=0.0).scan() == 0
    assert outside.read_bytes() == SECRET
    assert not (root / "req" / f"{name}.err").is_symlink()
    assert "not well-formed XML" in err_text(root, name)


def test_results_are_created_owner_and_group_only(root: Path, server: t.InMemoryServer, state: TerminalState) -> None:
    old = os.umask(0)  # whatever the umask, no result is readable by other users
    try:
        (root / "req" / "OQSsiquc01req_1.xml").write_bytes(t.single())
        (root / "req" / "OQSsiquc01req_2.xml").write_bytes(b"<broken")
        watcher(root, server, state, settle_seconds=0.0).scan()
    finally:
        os.umask(old)
    assert RESULT_FILE_MODE == 0o640
    assert stat.S_IMODE(os.stat(root / "res" / "OQSsiquc01res_1.xml").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(root / "req" / "OQSsiquc01req_2.xml.err").st_mode) == 0o640


def test_file_mode_can_be_chosen(root: Path, server: t.InMemoryServer, state: TerminalState) -> None:
    (root / "req" / "OQSsiquc01req_1.xml").write_bytes(t.single())
    watcher(root, server, state, file_mode=0o600).scan()
    assert stat.S_IMODE(os.stat(root / "res" / "OQSsiquc01res_1.xml").st_mode) == 0o600


def test_face_file_temp_name_link_is_never_written_through(root: Path, outside: Path, state: TerminalState) -> None:
    now = dt.datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=t.CLOCK.tzinfo)
    file_id = f"OQSsiquc01res_face_{t.FACILITY_CODE}20261128093015123456_20261128093015"
    final = root / "face" / f"{file_id}.xml"
    temp_path(final).symlink_to(outside)
    path = write_face_result(root, t.full_result(query_kind="card"), None, t.FACILITY_CODE, now=now, state=state)
    assert path == final
    assert outside.read_bytes() == SECRET
    assert not final.is_symlink() and stat.S_IMODE(os.stat(final).st_mode) == 0o640
    assert etree.fromstring(final.read_bytes()).findtext(".//ReferenceClassification") == "1"


def test_a_dangling_link_at_a_face_file_name_counts_as_taken(root: Path, outside: Path, state: TerminalState) -> None:
    now = dt.datetime(2026, 11, 28, 9, 30, 15, 0, tzinfo=t.CLOCK.tzinfo)
    taken = root / "face" / f"OQSsiquc01res_face_{t.FACILITY_CODE}20261128093015000000_20261128093015.xml"
    taken.symlink_to(outside.with_name("nothing-here"))
    path = write_face_result(root, t.full_result(query_kind="card"), None, t.FACILITY_CODE, now=now, state=state)
    assert path != taken and taken.is_symlink()


def test_recovery_never_publishes_a_link_found_at_the_temp_name(
    root: Path, outside: Path, server: t.InMemoryServer, state: TerminalState
) -> None:
    data = t.single()
    name = "OQSsiquc01req_a.xml"
    final = root / "res" / "OQSsiquc01res_a.xml"
    (root / "req" / name).write_bytes(data)
    state.journal_set(name, hashlib.sha256(data).hexdigest(), "rendered", final.name)
    temp_path(final).symlink_to(outside)  # a crash left the entry rendered; someone put a link there
    w = watcher(root, server, state)
    w.recover()
    assert not os.path.lexists(final) and not os.path.lexists(temp_path(final))
    assert w.scan() == 1  # never delivered: answered afresh
    assert not final.is_symlink()
    assert etree.fromstring(final.read_bytes()).findtext(".//QualificationValidity") == "1"
    assert outside.read_bytes() == SECRET


# --- reading: regular files only, bounded


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _make_dir(path: Path) -> None:
    path.mkdir()


def _make_link_to_regular(path: Path) -> None:
    other = path.parent.parent / "request-elsewhere.xml"
    other.write_bytes(t.single())
    path.symlink_to(other)


def _make_link_to_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _make_dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nothing-here.xml")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_make_fifo, "not a regular file (a FIFO)"),
        (_make_dir, "not a regular file (a directory)"),
        (_make_link_to_regular, "a symbolic link"),
        (_make_link_to_zero, "a symbolic link"),
        (_make_dangling, "a symbolic link"),
    ],
    ids=["fifo", "directory", "symlink", "symlink-to-dev-zero", "dangling-symlink"],
)
def test_only_regular_files_are_read(
    root: Path, server: t.InMemoryServer, state: TerminalState, make: object, reason: str
) -> None:
    assert callable(make)
    name = "OQSsiquc01req_odd.xml"
    make(root / "req" / name)
    (root / "req" / "OQSsiquc01req_good.xml").write_bytes(t.single())
    w = watcher(root, server, state)
    assert scan_within(w) == 1
    assert reason in err_text(root, name)
    assert (root / "res" / "OQSsiquc01res_good.xml").exists()
    assert not (root / "res" / "OQSsiquc01res_odd.xml").exists()
    assert server.calls == 1
    assert scan_within(w) == 0  # refused once, not again and again
    assert w.stats.errors == 1


def test_a_socket_named_like_a_request_is_refused(
    root: Path, server: t.InMemoryServer, state: TerminalState, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "OQSsiquc01req_sock.xml"
    monkeypatch.chdir(root / "req")  # a short path for bind()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(name)
        assert scan_within(watcher(root, server, state)) == 0
    assert "not a regular file (a socket)" in err_text(root, name)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_named_like_a_request_is_refused(root: Path, server: t.InMemoryServer, state: TerminalState) -> None:
    name = "OQSsiquc01req_dev.xml"
    os.mknod(root / "req" / name, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    assert scan_within(watcher(root, server, state)) == 0
    assert "not a regular file (a device)" in err_text(root, name)


def test_an_oversized_request_is_refused_with_a_clear_error(
    root: Path, server: t.InMemoryServer, state: TerminalState
) -> None:
    data = t.single()
    padded = data.replace(b"<XmlMsg>", b"<!--" + b" " * REQUEST_SIZE_LIMIT + b"--><XmlMsg>")
    (root / "req" / "OQSsiquc01req_big.xml").write_bytes(padded)
    assert scan_within(watcher(root, server, state)) == 0
    assert f"larger than the limit of {REQUEST_SIZE_LIMIT} bytes" in err_text(root, "OQSsiquc01req_big.xml")
    assert server.calls == 0


def test_the_limit_is_one_mib_and_a_large_bulk_registration_still_fits(
    root: Path, server: t.InMemoryServer, state: TerminalState
) -> None:
    assert REQUEST_SIZE_LIMIT == 1024 * 1024
    data = t.bulk_registration(*[t.SIMPLE_SEARCH] * 4000)  # about 1.6 MB: one 一括照会 of 4,000 people
    assert len(data) > REQUEST_SIZE_LIMIT
    (root / "req" / "OQSmuquc01req_big.xml").write_bytes(data)
    assert scan_within(watcher(root, server, state)) == 1


def test_the_read_is_bounded_even_when_the_file_grows(
    root: Path, server: t.InMemoryServer, state: TerminalState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """st_size is not trusted: a file that grows while read is cut at the limit and refused."""
    name = "OQSsiquc01req_grow.xml"
    (root / "req" / name).write_bytes(t.single())
    real_fstat = os.fstat

    def small_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if stat.S_ISREG(st.st_mode):
            fields = list(st)
            fields[stat.ST_SIZE] = 10
            return os.stat_result(fields)
        return st

    read_sizes: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        read_sizes.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "fstat", small_fstat)
    monkeypatch.setattr(os, "read", counting_read)
    w = watcher(root, server, state, max_request_bytes=100)
    assert w.scan() == 0
    assert "larger than the limit of 100 bytes" in err_text(root, name)
    assert sum(read_sizes) <= 101


# --- stopping while a worker is busy


def test_run_stops_within_two_seconds_while_a_worker_waits_for_the_server(root: Path, state: TerminalState) -> None:
    slow = t.InMemoryServer.with_samples(delay=30.0)
    w = watcher(root, slow, state, mode="poll", poll_interval=0.02, workers=1)
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()
    (root / "req" / "OQSsiquc01req_1.xml").write_bytes(t.single())
    deadline = time.monotonic() + 5
    while slow.calls == 0:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.01)
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.5
    # the interrupted request is left for the next start: no result, no .err, not journalled
    assert not (root / "res" / "OQSsiquc01res_1.xml").exists()
    assert not (root / "req" / "OQSsiquc01req_1.xml.err").exists()
    assert state.journal_get("OQSsiquc01req_1.xml") is None


def test_pending_requests_are_left_for_the_next_start_when_stopped(root: Path, state: TerminalState) -> None:
    slow = t.InMemoryServer.with_samples(delay=0.5)
    w = watcher(root, slow, state, mode="poll", poll_interval=0.02, workers=2, stop_grace=5.0)
    for i in range(20):
        (root / "req" / f"OQSsiquc01req_{i:02d}.xml").write_bytes(t.single())
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while slow.calls < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop.set()
    thread.join(3)
    assert not thread.is_alive()  # not 20 × 0.5 s / 2 workers
    assert 2 <= w.stats.answered <= 4  # the two in flight finish within the grace period
    assert slow.calls <= 4


# --- the terminal's own state


def test_state_folder_and_database_are_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with TerminalState(tmp_path / "state") as st:
            st.journal_set("OQSsiquc01req_1.xml", "0" * 64, "done", "OQSsiquc01res_1.xml")
            files = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in (tmp_path / "state").iterdir()}
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert files == {DB_NAME: 0o600, f"{DB_NAME}-wal": 0o600, f"{DB_NAME}-shm": 0o600}


def test_a_state_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").symlink_to(elsewhere)
    with pytest.raises(StateError, match="symbolic link"):
        TerminalState(tmp_path / "state")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_state_database_that_is_a_link_is_refused(tmp_path: Path, outside: Path, suffix: str) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / f"{DB_NAME}{suffix}").symlink_to(outside)
    with pytest.raises(StateError, match="not a regular file"):
        TerminalState(tmp_path / "state")
    assert outside.read_bytes() == SECRET


def test_an_existing_state_folder_loses_access_by_other_users(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", 0o777)  # noqa: S103 - the setting under test
    with TerminalState(tmp_path / "state"):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
