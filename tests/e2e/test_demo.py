"""`python -m testbed.demo` (what `scripts/demo.sh` runs) as a subprocess: it comes up, answers, stops cleanly."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from testbed.demo import READY_LINE

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_banner(process: subprocess.Popen[str], pump: threading.Thread, lines: queue.Queue[str | None],
                timeout: float) -> str:
    """Everything the demo prints up to its ready line (fails on exit or timeout).

    A reader thread feeds a queue: ``select`` on a buffered text pipe misses lines already read ahead.
    """
    pump.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"the demo exited ({process.wait()}) before it was ready:\n{''.join(seen)}", pytrace=False)
        seen.append(line)
        if line.strip() == READY_LINE:
            return "".join(seen)
    pytest.fail(f"the demo was not ready within {timeout:.0f} s:\n{''.join(seen)}", pytrace=False)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_demo_starts_answers_and_stops(tmp_path: Path) -> None:
    port, kiosk_port = free_port(), free_port()
    state = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed.demo", "--dir", str(state), "--port", str(port),
         "--kiosk-port", str(kiosk_port), "--people", "200"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
    )
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    pump = threading.Thread(target=drain, name="demo-stdout", daemon=True)
    pids: list[int] = []
    try:
        banner = read_banner(process, pump, lines, START_TIMEOUT)
        server, kiosk = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{kiosk_port}"
        for url in (f"{kiosk}/", f"{kiosk}/staff", f"{server}/docs"):
            assert url in banner
        assert "PIN: 1234" in banner
        pids = [int(p) for p in re.findall(r" pid (\d+)", banner)]
        assert len(pids) == 2, banner
        token = re.search(r"facility token \(reception\): (\S+)", banner)
        assert token is not None, banner
        assert token.group(1) in (state / "tokens.env").read_text(encoding="utf-8")

        assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
        answer = httpx.post(
            f"{server}/v1/eligibility/by-number", timeout=10,
            headers={"Authorization": f"Bearer {token.group(1)}"},
            json={"insurer_number": "01130012", "symbol": "123", "number": "4567", "branch": "00",
                  "birth_date": "1980-04-01"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["validity"] == 1
        assert body["insured"]["name"] == "山田 太郎"

        page = httpx.get(f"{kiosk}/", timeout=10)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        kiosk_state = httpx.get(f"{kiosk}/api/kiosk/state", timeout=10).json()
        assert kiosk_state["demo"] is True
        assert kiosk_state["screen"] == "place_card"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            pump.join(timeout=10)
            stdout.close()
    assert code == 0
    deadline = time.monotonic() + 5
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(pid) for pid in pids), pids
