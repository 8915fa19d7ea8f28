"""The folder watcher in-process (inotify and polling) over the real ServerClient + MockTransport."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from lxml import etree

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.files import temp_path
from clinic_terminal.xmlif.model import XmlEncoding
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher, WatchMode
from testbed import xmlif_server as t

MODES: list[WatchMode] = ["inotify", "poll"]


def drop(root: Path, name: str, data: bytes) -> None:
    """As clinic software does: write a temp file elsewhere, then rename it into req/."""
    outbox = root / "outbox"
    outbox.mkdir(exist_ok=True)
    tmp = outbox / name
    tmp.write_bytes(data)
    os.rename(tmp, root / "req" / name)


def wait_for(path: Path, timeout: float = 5.0) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.005)
    return path


class Running:
    def __init__(self, root: Path, server: t.InMemoryServer, mode: WatchMode, encoding: XmlEncoding) -> None:
        self.root = root
        self.server = server
        self.client = ServerClient("http://server.test", "token", transport=t.contract_transport(server))
        self.state = TerminalState.for_root(root)
        self.watcher = FolderWatcher(
            root,
            XmlTerminal(self.client, self.state, clock=lambda: t.CLOCK),
            encoding=encoding,
            mode=mode,
            poll_interval=0.02,
            settle_seconds=0.5,
            durable=False,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.client.close()
        self.state.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "oqs"


def running(root: Path, server: t.InMemoryServer, mode: WatchMode, encoding: XmlEncoding = "utf-8") -> Running:
    return Running(root, server, mode, encoding)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("encoding", ["utf-8", "shift_jis"])
def test_dropped_request_is_answered(
    root: Path, server: t.InMemoryServer, mode: WatchMode, encoding: XmlEncoding
) -> None:
    with running(root, server, mode, encoding) as r:
        for folder in ("req", "res", "face"):
            assert (root / folder).is_dir()
        drop(root, "OQSsiquc01req_0001.xml", t.single(encoding="Shift_JIS"))
        res = wait_for(root / "res" / "OQSsiquc01res_0001.xml")
        data = res.read_bytes()
        assert validation_errors("OQSsiquc01res", data) == []
        declared = b'encoding="UTF-8"' if encoding == "utf-8" else b'encoding="Shift_JIS"'
        assert declared in data.splitlines()[0]
        assert etree.fromstring(data).findtext(".//QualificationValidity") == "1"
        assert (root / "req" / "OQSsiquc01req_0001.xml").exists()
        assert r.state.journal_get("OQSsiquc01req_0001.xml") is not None
        assert not [p for p in (root / "res").iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("mode", MODES)
def test_request_written_in_place_is_read_only_when_complete(
    root: Path, server: t.InMemoryServer, mode: WatchMode
) -> None:
    data = t.single()
    with running(root, server, mode):
        with open(root / "req" / "OQSsiquc01req_slow.xml", "wb") as fh:
            fh.write(data[:100])
            fh.flush()
            time.sleep(0.15)
            fh.write(data[100:])
        wait_for(root / "res" / "OQSsiquc01res_slow.xml")
    assert not (root / "req" / "OQSsiquc01req_slow.xml.err").exists()


@pytest.mark.parametrize("mode", MODES)
def test_unreadable_request_gets_err_and_watching_goes_on(
    root: Path, server: t.InMemoryServer, mode: WatchMode
) -> None:
    with running(root, server, mode) as r:
        r.watcher.settle_seconds = 0.0
        drop(root, "OQSsiquc01req_bad.xml", t.single().replace(b"19500401", b"19500431"))
        drop(root, "OQSsiquc01req_junk.xml", b"\x00\x01 not xml")
        drop(root, "OQSsiquc01req_good.xml", t.single())
        err = wait_for(root / "req" / "OQSsiquc01req_bad.xml.err").read_text("utf-8")
        assert "Birthdate '19500431' is not a date" in err
        assert "not well-formed XML" in wait_for(root / "req" / "OQSsiquc01req_junk.xml.err").read_text("utf-8")
        wait_for(root / "res" / "OQSsiquc01res_good.xml")
    assert not (root / "res" / "OQSsiquc01res_bad.xml").exists()


def test_server_down_is_answered_as_abnormal_end(root: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    root.mkdir()
    with (
        ServerClient("http://server.test", "x", transport=httpx.MockTransport(refuse)) as client,
        TerminalState.for_root(root) as state,
    ):
        watcher = FolderWatcher(root, XmlTerminal(client, state), durable=False)
        (root / "req" / "OQSsiquc01req_1.xml").write_bytes(t.single())
        (root / "req" / "OQSsiquc01req_2.xml").write_bytes(t.single())
        assert watcher.scan() == 2
    doc = etree.fromstring((root / "res" / "OQSsiquc01res_1.xml").read_bytes())
    assert doc.findtext(".//SegmentOfResult") == "9"
    assert doc.findtext(".//ErrorCode") == "unavailable"
    assert doc.findtext(".//ProcessingResultStatus") == "2"


def _watcher(root: Path, server: t.InMemoryServer, state: TerminalState) -> FolderWatcher:
    return FolderWatcher(root, XmlTerminal(server, state, clock=lambda: t.CLOCK), durable=False)


def test_a_request_is_answered_once_even_after_its_result_was_taken(root: Path, server: t.InMemoryServer) -> None:
    root.mkdir()
    (root / "req").mkdir()
    (root / "req" / "OQSsiquc01req_1.xml").write_bytes(t.single())
    with TerminalState.for_root(root) as state:
        assert _watcher(root, server, state).scan() == 1
    (root / "res" / "OQSsiquc01res_1.xml").unlink()  # clinic software took it
    os.utime(root / "req" / "OQSsiquc01req_1.xml")  # and the request is touched
    with TerminalState.for_root(root) as state:  # a restarted terminal
        assert _watcher(root, server, state).scan() == 0
    assert server.calls == 1
    assert not (root / "res" / "OQSsiquc01res_1.xml").exists()


def test_existing_result_is_never_rewritten(root: Path, server: t.InMemoryServer) -> None:
    root.mkdir()
    for d in ("req", "res"):
        (root / d).mkdir()
    (root / "req" / "OQSsiquc01req_1.xml").write_bytes(t.single())
    (root / "res" / "OQSsiquc01res_1.xml").write_bytes(b"delivered earlier")
    with TerminalState.for_root(root) as state:
        assert _watcher(root, server, state).scan() == 0
        entry = state.journal_get("OQSsiquc01req_1.xml")
        assert entry is not None and entry.state == "done"
    assert (root / "res" / "OQSsiquc01res_1.xml").read_bytes() == b"delivered earlier"
    assert server.calls == 0


def test_reused_name_with_other_content_is_refused(root: Path, server: t.InMemoryServer) -> None:
    root.mkdir()
    (root / "req").mkdir()
    req = root / "req" / "OQSsiquc01req_1.xml"
    req.write_bytes(t.single())
    with TerminalState.for_root(root) as state:
        watcher = _watcher(root, server, state)
        watcher.scan()
        first = (root / "res" / "OQSsiquc01res_1.xml").read_bytes()
        req.write_bytes(t.single(t.SIMPLE_SEARCH))
        watcher.scan()
    assert "already answered" in (root / "req" / "OQSsiquc01req_1.xml.err").read_text("utf-8")
    assert (root / "res" / "OQSsiquc01res_1.xml").read_bytes() == first


def test_crash_after_rendering_is_finished_at_start(root: Path, server: t.InMemoryServer) -> None:
    root.mkdir()
    for d in ("req", "res"):
        (root / d).mkdir()
    data = t.single()
    digest = hashlib.sha256(data).hexdigest()
    (root / "req" / "OQSsiquc01req_a.xml").write_bytes(data)
    (root / "req" / "OQSsiquc01req_b.xml").write_bytes(data)
    # a: killed after the temp was journalled, before os.replace
    temp_path(root / "res" / "OQSsiquc01res_a.xml").write_bytes(b"rendered before the crash")
    # b: killed after os.replace, and clinic software already took the result
    with TerminalState.for_root(root) as state:
        state.journal_set("OQSsiquc01req_a.xml", digest, "rendered", "OQSsiquc01res_a.xml")
        state.journal_set("OQSsiquc01req_b.xml", digest, "rendered", "OQSsiquc01res_b.xml")
        watcher = _watcher(root, server, state)
        watcher.recover()
        assert watcher.scan() == 0
    assert (root / "res" / "OQSsiquc01res_a.xml").read_bytes() == b"rendered before the crash"
    assert not (root / "res" / "OQSsiquc01res_b.xml").exists()
    assert server.calls == 0


def test_bulk_and_reference_registration_through_the_folders(root: Path, server: t.InMemoryServer) -> None:
    with running(root, server, "inotify"):
        drop(root, "OQSsiimm01req_1.xml", t.reference_registration("24434"))
        reg = etree.fromstring(wait_for(root / "res" / "OQSsiimm01res_1.xml").read_bytes())
        assert reg.findtext(".//ProcessingResultStatus") == "1"
        drop(root, "OQSmuquc01req_1.xml", t.bulk_registration(t.FULL_SEARCH, t.UNKNOWN_SEARCH))
        res = etree.fromstring(wait_for(root / "res" / "OQSmuquc01res_1.xml").read_bytes())
        reception = res.findtext(".//ReceptionNumber")
        assert reception
        drop(root, "OQSmuquc02req_1.xml", t.bulk_download(reception))
        pending = etree.fromstring(wait_for(root / "res" / "OQSmuquc02res_1.xml").read_bytes())
        assert pending.findtext(".//SegmentOfResult") == "2"
        server.finish_batches()
        drop(root, "OQSmuquc02req_2.xml", t.bulk_download(reception))
        done = wait_for(root / "res" / "OQSmuquc02res_2.xml").read_bytes()
        assert validation_errors("OQSmuquc02res", done) == []
        units = etree.fromstring(done).findall(".//BulkConfirmUnit")
        assert [u.findtext("QualificationValidity") for u in units] == ["1", "4"]
        assert units[0].findtext("ReferenceNumber") == "24434"
        drop(root, "OQSsiquc01req_1.xml", t.single())
        single = etree.fromstring(wait_for(root / "res" / "OQSsiquc01res_1.xml").read_bytes())
        assert single.findtext(".//ResultOfQualificationConfirmation/ReferenceNumber") == "24434"


def test_falls_back_to_polling_without_inotify(
    root: Path, server: t.InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inotify_simple

    def unavailable(*args: object, **kwargs: object) -> None:
        raise OSError(38, "inotify not available")

    monkeypatch.setattr(inotify_simple.INotify, "__init__", unavailable)
    with running(root, server, "inotify"):
        drop(root, "OQSsiquc01req_1.xml", t.single())
        wait_for(root / "res" / "OQSsiquc01res_1.xml")


def test_burst_is_answered_once_per_request_with_several_workers(root: Path, server: t.InMemoryServer) -> None:
    names = [f"OQSsiquc01req_{i:03d}.xml" for i in range(40)]
    with running(root, server, "inotify") as r:
        assert r.watcher.workers == 4
        for name in names:
            drop(root, name, t.single(t.SIMPLE_SEARCH))
        for name in names:
            wait_for(root / "res" / name.replace("req_", "res_"))
        time.sleep(0.1)
        assert r.watcher.stats.answered == 40
        assert server.calls == 40
        listed = r.state.list_results(limit=1000, kind="single")
        assert {x["file_id"] for x in listed} == {n.replace("req_", "res_").removesuffix(".xml") for n in names}


def test_refused_request_fixed_under_the_same_name_is_answered(root: Path, server: t.InMemoryServer) -> None:
    root.mkdir()
    (root / "req").mkdir()
    req = root / "req" / "OQSsiquc01req_1.xml"
    req.write_bytes(t.single().replace(b"19500401", b"1950-04-01"))
    os.utime(req, (time.time() - 60, time.time() - 60))  # old enough not to be "still being written"
    with TerminalState.for_root(root) as state:
        watcher = _watcher(root, server, state)
        assert watcher.scan() == 0
        assert (root / "req" / "OQSsiquc01req_1.xml.err").exists()
        assert watcher.scan() == 0  # not refused again and again
        req.write_bytes(t.single())
        assert watcher.scan() == 1
    assert not (root / "req" / "OQSsiquc01req_1.xml.err").exists()
    assert (root / "res" / "OQSsiquc01res_1.xml").exists()
    assert server.calls == 1
