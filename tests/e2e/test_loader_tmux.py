"""What the insurer's operator sees: ``hokensha-load`` in a real terminal (tmux) against the real
server in its own process, on both backends. The pane is captured at intervals while the file is
applied; the server's phases (docs/loader.md, "The server's phases") show in order, each on its
own line, and stay on the screen with the summary."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shikaku_server.config import Settings
from shikaku_server.eligibility.service import today_jst
from testbed.population import Insurer, PopulationConfig, generate_population, write_eligibility_csv
from tests.factories import INSURER_A, INSURER_KOKUHO
from tests.serving import wait_until_serving

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PHASES = ["解析中", "検証中", "適用中", "確定中"]  # parsing, validating, applying, committing
TMUX = shutil.which("tmux")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """``shikaku-server`` in its own process on the test's database."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHIKAKU_DATABASE_URL": settings.database_url,
           "SHIKAKU_TRUST_ANCHORS": str(settings.trust_anchors), "SHIKAKU_LOG_LEVEL": "WARNING"}
    env.pop("SHIKAKU_REDIS_URL", None)
    if settings.redis_url:
        env["SHIKAKU_REDIS_URL"] = settings.redis_url
    with (tmp_path / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from shikaku_server.main import main; main()", "--port", str(port), "--no-migrate"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc, (tmp_path / "server.log").read_text)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Pane:
    """One tmux server of its own (its own socket), one window of a fixed size."""

    def __init__(self, socket_name: str, width: int = 200, height: int = 30) -> None:
        assert TMUX, "tmux is not installed (scripts/setup.sh installs it)"
        self.base = [TMUX, "-u", "-L", socket_name, "-f", "/dev/null"]
        self.size = (str(width), str(height))

    def run(self, command: str) -> None:
        subprocess.run([*self.base, "new-session", "-d", "-s", "load", "-x", self.size[0], "-y", self.size[1],
                        command], check=True)

    def capture(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "load"], check=True, capture_output=True,
                              text=True).stdout

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], check=False, capture_output=True)


def phases_on(screen: str) -> list[str]:
    return [next(p for p in PHASES if p in line) for line in screen.splitlines()
            if line.startswith("サーバー:") and any(p in line for p in PHASES)]


def test_the_operator_sees_the_servers_phases_in_order(
    tmp_path: Path, server_url: str, tokens: dict[str, str]
) -> None:
    insurers = (Insurer(INSURER_A, "全国健康保険協会 東京支部", "kyokai"),
                Insurer(INSURER_KOKUHO, "国民健康保険", "kokuho"))
    population = generate_population(3000, seed=5, today=today_jst(), config=PopulationConfig(insurers=insurers))
    path = tmp_path / "eligibility.csv"
    rows = write_eligibility_csv(path, population.people)
    loader = (f"{sys.executable} -c 'from hokensha_loader.cli import main; main()' eligibility {path}"
              f" --server {server_url} --token {tokens['insurer']}")
    pane = Pane(f"shikaku-test-{os.getpid()}")
    env = f"env LANG=C.UTF-8 SHIKAKU_LANG=ja PYTHONPATH={ROOT}"
    try:
        pane.run(f"{env} {loader}; echo EXIT=$?; sleep 600")
        captures: list[str] = []
        deadline = time.monotonic() + 120
        while "EXIT=" not in (captures[-1] if captures else ""):
            assert time.monotonic() < deadline, captures[-1]
            time.sleep(0.2)
            captures.append(pane.capture())
    finally:
        pane.close()

    screen = captures[-1]
    assert "EXIT=0" in screen, screen
    assert phases_on(screen) == PHASES, screen
    for capture in captures:  # never out of order, whenever the operator looks
        seen = phases_on(capture)
        assert seen == PHASES[: len(seen)], capture
    lines = screen.splitlines()
    sent = next(i for i, line in enumerate(lines) if line.startswith("eligibility 100% |"))
    first_phase = next(i for i, line in enumerate(lines) if line.startswith("サーバー:"))
    assert sent < first_phase
    assert f"適用中 {rows:,} / {rows:,} 件" in screen
    assert f"受付 {rows:,} 件" in screen and "結果: すべて取り込みました" in screen
