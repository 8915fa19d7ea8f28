"""End to end: `clinic-terminal watch` as its own process, a central server on a socket, and a
simulated clinic program that drops requests (temp + rename) and takes results away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from clinic_terminal.xmlif.schema import validation_errors
from testbed import xmlif_server as t

CLI = "from clinic_terminal.cli import main; main()"
WORKERS = 4  # the watcher's default


def start_watcher(root: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / "watcher.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "watch", "--root", str(root), "--server", url, "--token", "t", "-v", *extra],
            stdout=log,
            stderr=log,
        )


def drop(root: Path, name: str, data: bytes) -> None:
    outbox = root / "outbox"
    outbox.mkdir(exist_ok=True)
    (outbox / name).write_bytes(data)
    os.rename(outbox / name, root / "req" / name)


def wait_until(check: object, timeout: float = 15.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


class ClinicProgram:
    """Takes every result out of res/ (as clinic software does), counting each name it sees."""

    def __init__(self, root: Path) -> None:
        self.res = root / "res"
        self.taken = root / "taken"
        self.taken.mkdir(parents=True, exist_ok=True)
        self.seen: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.res.is_dir():
                for entry in os.scandir(self.res):
                    if entry.name.startswith(".") or not entry.name.endswith(".xml"):
                        continue
                    self.seen[entry.name] += 1
                    os.rename(entry.path, self.taken / f"{entry.name}.{self.seen[entry.name]}")
            time.sleep(0.005)

    def __enter__(self) -> ClinicProgram:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def test_cli_watch_answers_a_dropped_request(tmp_path: Path, central: t.ContractHttpServer) -> None:
    root = tmp_path / "oqs"
    proc = start_watcher(root, central.url, "--encoding", "shift_jis")
    try:
        wait_until(lambda: (root / "req").is_dir())
        time.sleep(0.2)  # let the watch be set up (a missed event is still caught by the start-up scan)
        drop(root, "OQSsiquc01req_20261128_0001.xml", t.single(encoding="UTF-8"))
        drop(root, "OQSsiquc01req_20261128_0002.xml", b"<broken")
        res = root / "res" / "OQSsiquc01res_20261128_0001.xml"
        wait_until(res.exists)
        data = res.read_bytes()
        assert data.startswith(b'<?xml version="1.0" encoding="Shift_JIS" standalone="no"?>')
        assert validation_errors("OQSsiquc01res", data) == []
        doc = etree.fromstring(data)
        assert doc.findtext(".//Name") == "吉田\u3000花子"  # Shift_JIS: 𠮷's substitute, marked
        assert doc.find(".//Name").get("{urn:shikaku:xmlif:gaiji}original") == "𠮷田\u3000花子"  # type: ignore[union-attr]
        assert doc.findtext(".//ArbitraryFileIdentifier") == "F-0001"
        err = root / "req" / "OQSsiquc01req_20261128_0002.xml.err"
        wait_until(err.exists, timeout=10)
        assert "not well-formed XML" in err.read_text("utf-8")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


@pytest.mark.slow
def test_killed_and_restarted_watcher_answers_each_request_exactly_once(
    tmp_path: Path, central: t.ContractHttpServer
) -> None:
    root = tmp_path / "oqs"
    total = 60
    names = [f"OQSsiquc01req_{i:04d}.xml" for i in range(total)]
    with ClinicProgram(root) as clinic:
        proc = start_watcher(root, central.url)
        wait_until(lambda: (root / "req").is_dir())
        for i, name in enumerate(names):
            drop(root, name, t.single(t.FULL_SEARCH if i % 2 else t.SIMPLE_SEARCH, "Shift_JIS" if i % 3 else "UTF-8"))
        wait_until(lambda: sum(clinic.seen.values()) >= total // 4)
        proc.kill()  # SIGKILL mid-way: no clean-up of any kind
        proc.wait(10)
        answered_before = sum(clinic.seen.values())
        assert answered_before < total, "the kill came too late to test anything"
        # restart polling this time (both modes end to end)
        proc = start_watcher(root, central.url, "--poll", "--poll-interval", "0.02")
        try:
            wait_until(lambda: sum(clinic.seen.values()) >= total, timeout=30)
            time.sleep(0.3)  # anything extra would show up now
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    expected = {n.replace("req_", "res_") for n in names}
    assert set(clinic.seen) == expected
    assert all(count == 1 for count in clinic.seen.values()), clinic.seen.most_common(3)
    # only the queries in flight at the kill (one per worker) were asked twice; the clinic saw each once
    assert total <= central.server.calls <= total + WORKERS
    for taken in (root / "taken").iterdir():
        assert validation_errors("OQSsiquc01res", taken.read_bytes()) == [], taken.name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watcher_stops_at_once_with_a_fifo_in_req_and_a_worker_waiting_for_the_server(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A FIFO named like a request used to block a worker for good, and a stop then never ended;
    a worker waiting for a slow server held the stop until the server answered."""
    root = tmp_path / "oqs"
    (root / "req").mkdir(parents=True)
    os.mkfifo(root / "req" / "OQSsiquc01req_fifo.xml")  # older than the request: handed out first
    slow = t.InMemoryServer.with_samples(delay=60.0)
    with t.ContractHttpServer(slow) as central:
        drop(root, "OQSsiquc01req_1.xml", t.single())
        proc = start_watcher(root, central.url, "--poll", "--poll-interval", "0.02")
        try:
            wait_until(lambda: slow.calls >= 1)  # a worker now waits for the server
            started = time.monotonic()
            proc.send_signal(signum)
            assert proc.wait(5) == 0
            stopped_in = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert stopped_in < 3.0, f"took {stopped_in:.1f}s to stop"  # 1 s grace + exit
    err = root / "req" / "OQSsiquc01req_fifo.xml.err"
    assert "not a regular file (a FIFO)" in err.read_text("utf-8")
    # the request in flight is left for the next start: no result, no .err
    assert not (root / "res" / "OQSsiquc01res_1.xml").exists()
    assert not (root / "req" / "OQSsiquc01req_1.xml.err").exists()
