"""`python -m testbed.demo` (what `scripts/demo.sh` runs) as a subprocess: it comes up, answers,
walks a patient with the 2026 card (ECDSA P-384) through the second kiosk, and stops cleanly."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

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


@dataclass
class Demo:
    banner: str
    state: Path
    server: str
    kiosk: str
    kiosk_2026: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``python -m testbed.demo`` with 200 people on free ports, up to its ready line; at the end
    SIGTERM, and the demo exits 0 with every child process gone (checked at teardown)."""
    port, kiosk_port, kiosk_2026_port = free_port(), free_port(), free_port()
    state = tmp_path_factory.mktemp("demo") / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed.demo", "--dir", str(state), "--port", str(port),
         "--kiosk-port", str(kiosk_port), "--kiosk-2026-port", str(kiosk_2026_port), "--people", "200"],
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
        pids = [int(p) for p in re.findall(r" pid (\d+)", banner)]
        yield Demo(banner, state, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{kiosk_port}",
                   f"http://127.0.0.1:{kiosk_2026_port}")
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


@pytest.mark.slow
def test_demo_starts_answers_and_stops(demo: Demo) -> None:
    banner, server, kiosk = demo.banner, demo.server, demo.kiosk
    for url in (f"{kiosk}/", f"{kiosk}/staff", f"{server}/docs", f"{demo.kiosk_2026}/"):
        assert url in banner
    assert "PIN: 1234" in banner
    pids = [int(p) for p in re.findall(r" pid (\d+)", banner)]
    assert len(pids) == 3, banner  # the server and the two kiosks
    token = re.search(r"facility token \(reception\): (\S+)", banner)
    assert token is not None, banner
    assert token.group(1) in (demo.state / "tokens.env").read_text(encoding="utf-8")

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


@pytest.mark.slow
def test_the_2026_card_patient_checks_in_at_the_second_kiosk(demo: Demo) -> None:
    """佐藤 花子's 2026 card (ECDSA P-384, the new application layout) through the demo's second
    kiosk, as a patient would: read, 暗証番号, the first-use link, the check, consent; then the
    staff screen shows her check and the server holds her link, made with an EC certificate."""
    assert "佐藤 花子" in demo.banner and "ECDSA P-384" in demo.banner
    profile = json.loads((demo.state / "card-2026" / "profile.json").read_text(encoding="utf-8"))
    assert profile["generation"] == "2026"
    certificate = x509.load_der_x509_certificate((demo.state / "card-2026" / "certificate.der").read_bytes())
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"

    with httpx.Client(base_url=demo.kiosk_2026, timeout=30) as kiosk:
        def step(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            r = kiosk.post(f"/api/kiosk/{path}", json=body)
            assert r.status_code == 200, (path, r.text)
            return dict(r.json())

        assert kiosk.get("/api/kiosk/state").json()["screen"] == "place_card"
        chosen = step("read")
        assert chosen["screen"] == "choose_method" and chosen["face_enabled"] is False  # no photo: PIN only
        assert step("method", {"method": "pin"})["screen"] == "pin"
        first = step("pin", {"pin": "1234"})
        assert first["screen"] == "register", first  # not linked yet: the first-use link
        linked = step("register", {"pin": "1234"})
        assert linked["screen"] == "consent", linked
        assert linked["patient_name"] == "佐藤 花子"
        done = step("consent", {"drug": True, "checkup": False, "clinical": False, "limit_certificate": False})
        assert done["screen"] == "done", done
        (check,) = kiosk.get("/api/staff/checks").json()
    assert check["method"] == "pin"
    result = check["result"]
    assert result["validity"] == 1 and result["usable"] is True and result["visit_id"]  # a card check's visit
    assert (result["insured"]["name"], result["insured"]["symbol"], result["insured"]["number"]) == (
        "佐藤 花子", "2026", "384")
    # the server holds the visit and her drug consent: the kiosk's physician token reads (none)
    physician = re.search(r"SHIKAKU_FACILITY_TOKEN=(\S+)", (demo.state / "tokens.env").read_text(encoding="utf-8"))
    assert physician is not None
    drugs = httpx.get(f"{demo.server}/v1/visits/{result['visit_id']}/medications", timeout=10,
                      headers={"Authorization": f"Bearer {physician.group(1)}"})
    assert drugs.status_code == 200, drugs.text
    assert drugs.json()["items"] == []
    # the first kiosk (today's card) is untouched by it
    assert httpx.get(f"{demo.kiosk}/api/staff/checks", timeout=10).json() == []
