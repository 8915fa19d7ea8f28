"""``/metrics`` under ``shikaku-server --workers 2`` (real processes): after N requests the counter
reads N in every scrape, whichever worker answers it, and the workers' metrics directory (made
by the server when PROMETHEUS_MULTIPROC_DIR is unset) is gone after it stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shikaku_server.migrate import upgrade
from tests.faults.conftest import free_port
from tests.integration.metrics_helpers import sample
from tests.serving import wait_until_serving

pytestmark = pytest.mark.slow


def _records(log: Path) -> list[dict[str, Any]]:
    """The server's JSON log records so far: whole lines only (a worker may be writing the last)."""
    return [json.loads(line) for line in log.read_text().split("\n")[:-1]]


def _served_by(log: Path, route: str) -> list[int]:
    """The pid of the worker that answered each request of ``route`` so far (request log lines)."""
    return [r["pid"] for r in _records(log) if r.get("msg") == "request" and r.get("route") == route]


def test_two_workers_count_every_request_in_every_scrape(redis_url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shikaku.sqlite3'}"
    upgrade(db)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {"SHIKAKU_DATABASE_URL": db, "SHIKAKU_REDIS_URL": redis_url, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = ["--workers", "2", "--port", str(port), "--no-migrate"]
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from shikaku_server.main import main; main()", *argv],
            env=env, stdout=stderr, stderr=stderr,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, proc, log.read_text, path="/readyz")
            said = [r["msg"] for r in _records(log)]
            metrics_dirs = [Path(m.rsplit(" ", 1)[1]) for m in said if m.startswith("metrics of the 2 workers in ")]

            # N requests, each on a new connection, until both workers have answered some
            n = 0
            while (n < 400 and len(set(_served_by(log, "/healthz"))) < 2) or n < 20:
                assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
                n += 1
            assert len(set(_served_by(log, "/healthz"))) == 2, "one worker answered all of them"

            def count() -> float:
                text = httpx.get(f"{base}/metrics", timeout=5).text
                return sample(text, "shikaku_http_requests_total", method="GET", route="/healthz", status="200")

            deadline = time.monotonic() + 10  # a request is counted just after its answer is sent
            while count() != n:
                assert time.monotonic() < deadline, (count(), n)
                time.sleep(0.1)
            readings: list[float] = []
            while (len(readings) < 200 and len(set(_served_by(log, "/metrics"))) < 2) or len(readings) < 10:
                readings.append(count())
            assert len(set(_served_by(log, "/metrics"))) == 2, "one worker answered every scrape"
            assert readings == [n] * len(readings)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    assert len(metrics_dirs) == 1 and metrics_dirs[0].name.startswith("shikaku-metrics-")
    assert not metrics_dirs[0].exists()  # removed when the server stopped
