"""Processes killed mid-upload and a database that runs out of disk (issue 10, fault suite).

* the server (``shikaku-server``, 2 workers on PostgreSQL + Redis, its own process group) killed with SIGKILL while a
  150,000-row file streams in: nothing of it is in the database; restarted, the re-sent file loads
  once;
* the loader (``hokensha-load``, its own process group) killed with SIGKILL half-way through the
  same file: the same;
* the database's file system full (a small tmpfs: the SQLite file on it, or a PostgreSQL
  tablespace on it in a private cluster): the upload is ``503 unavailable`` (never a 500), nothing
  of it is written, and once space is freed the same file loads without restarting anything.

Each fault's recovery time is printed and appended to ``test-artifacts/fault-recovery.jsonl``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from shikaku_server.auth.service import add_insurer
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from tests.factories import INSURER_A, eligibility_csv, person
from tests.faults.conftest import PrivatePG, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROWS = int(os.environ.get("SHIKAKU_FAULT_ROWS", "150000"))  # the figure; smaller for a quick local run
TMPFS_MB = 256  # room for the 150,000 rows once the filler is gone
BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def record(fault: str, **figures: Any) -> None:
    line = json.dumps({"fault": fault, **figures})
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "fault-recovery.jsonl").open("a") as f:
        f.write(line + "\n")


@pytest.fixture(scope="module")
def body() -> bytes:
    return eligibility_csv([person(number=str(100000 + i), name=f"試験 {i}") for i in range(ROWS)])


def _token(url: str) -> str:
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        token = add_insurer(s, numbers=[INSURER_A], name="fault test")
    engine.dispose()
    return token


def _counts(url: str) -> tuple[int, int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        a, b, c = (
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("insured", "eligibility_period", "upload")
        )
    engine.dispose()
    return int(a), int(b), int(c)


class Server:
    """``shikaku-server`` (2 workers with Redis, else 1) in a process group of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Starts it; returns the seconds until ``/readyz`` answered 200."""
        env = dict(os.environ, SHIKAKU_DATABASE_URL=self.settings.database_url, SHIKAKU_LOG_LEVEL="WARNING")
        env.pop("SHIKAKU_REDIS_URL", None)
        if self.settings.redis_url:
            env["SHIKAKU_REDIS_URL"] = self.settings.redis_url
        workers = "2" if self.settings.redis_url else "1"  # workers share challenges through Redis
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(BIN / "shikaku-server"), "--port", str(self.port), "--workers", workers, "--no-migrate"],
            env=env,
            start_new_session=True,
        )
        while time.monotonic() - t0 < 60 and self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def kill_group(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for _ in range(100):  # the workers die with the group
            if not [p for p in psutil.process_iter(["cmdline"]) if str(self.port) in " ".join(p.info["cmdline"] or [])]:
                return
            time.sleep(0.05)
        raise AssertionError("a process of the killed server's group is still alive")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    s = Server(settings)
    s.start()
    yield s
    s.stop()


def _post(url: str, token: str, content: Any, timeout: float = 600) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/uploads?kind=eligibility",
        content=content,
        timeout=timeout,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )


def test_server_killed_mid_upload_then_the_re_sent_file_loads_once(
    server: Server, settings: Settings, body: bytes, backend: str
) -> None:
    token = _token(settings.database_url)
    chunk = 64 * 1024

    def stream() -> Iterator[bytes]:
        for i in range(0, len(body), chunk):
            if i >= len(body) // 2:
                time.sleep(1.0)  # the rows sent so far are being applied in the server's transaction
                server.kill_group()
                killed.append(time.monotonic())
                yield body[i : i + chunk]
                return
            yield body[i : i + chunk]

    killed: list[float] = []
    with pytest.raises(httpx.HTTPError):
        _post(server.url, token, stream(), timeout=120)
    assert killed, "the server was not killed"
    assert _counts(settings.database_url) == (0, 0, 0)  # nothing of the half-applied file
    ready = server.start()
    t = time.monotonic()
    r = _post(server.url, token, body)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == ROWS
    assert _counts(settings.database_url) == (ROWS, ROWS, 1)
    again = _post(server.url, token, body)  # and sent once more: recognised, nothing applied twice
    assert again.status_code == 200 and again.json()["accepted"] == 0, again.text
    assert _counts(settings.database_url) == (ROWS, ROWS, 1)
    record(
        "server SIGKILL (process group) mid-upload",
        backend=backend,
        rows=ROWS,
        restart_to_ready_s=round(ready, 2),
        kill_to_reloaded_s=round(time.monotonic() - killed[0], 1),
        resend_s=round(time.monotonic() - t, 1),
    )


def _file_position(proc: psutil.Process, path: Path) -> int | None:
    with contextlib.suppress(psutil.Error):
        for f in proc.open_files():
            if f.path == str(path):
                return int(f.position)
    return None


def test_loader_killed_mid_upload_then_the_re_sent_file_loads_once(
    server: Server, settings: Settings, body: bytes, backend: str, tmp_path: Path
) -> None:
    token = _token(settings.database_url)
    path = tmp_path / "eligibility.csv"
    path.write_bytes(body)
    env = dict(os.environ, SHIKAKU_SERVER_URL=server.url, SHIKAKU_INSURER_TOKEN=token)
    cmd = [str(BIN / "hokensha-load"), "eligibility", str(path), "--quiet"]
    loader = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    watched = psutil.Process(loader.pid)
    # the loader hashes the file (one fast pass), then streams it: kill it half-way through the
    # stream (two readings 0.2 s apart, both past half the file and moving)
    last = -1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and loader.poll() is None:
        pos = _file_position(watched, path)
        if pos is not None and len(body) // 2 <= last < pos < len(body):
            break
        last = pos if pos is not None else -1
        time.sleep(0.2)
    assert loader.poll() is None, "the loader ended before it was killed"
    os.killpg(loader.pid, signal.SIGKILL)
    loader.wait(timeout=10)
    killed = time.monotonic()
    assert _counts(settings.database_url) == (0, 0, 0)
    # the server applies what its socket still holds before it reads the disconnect and rolls
    # back; meanwhile the insurer's next upload waits for that one and is 503 (Retry-After): the
    # operator re-sends until it is accepted, as the loader's message says
    refused = 0
    while True:
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        if done.returncode != 3 or time.monotonic() - killed > 300:
            break
        assert "503" in done.stderr.decode(), done.stderr.decode()
        refused += 1
        assert _counts(settings.database_url) == (0, 0, 0)
        time.sleep(2.0)
    assert done.returncode == 0, done.stderr.decode()
    assert _counts(settings.database_url) == (ROWS, ROWS, 1)
    record(
        "loader SIGKILL (process group) mid-upload",
        backend=backend,
        rows=ROWS,
        killed_at_bytes=last,
        resends_refused_503=refused,
        kill_to_reloaded_s=round(time.monotonic() - killed, 1),
    )


@contextlib.contextmanager
def small_tmpfs(size_mb: int, owner: str | None = None) -> Iterator[Path]:
    mount = Path(tempfile.mkdtemp(prefix="shikaku-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        if owner:
            shutil.chown(mount, owner, owner)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def _filler(mount: Path) -> Path:
    """Fills what is left of ``mount`` but about 1.5 MB (enough for the schema's pages)."""
    filler = mount / "filler"
    left = shutil.disk_usage(mount).free - 1_500_000
    block = b"\0" * 2**20
    with filler.open("wb") as f:
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    shutil.chown(filler, mount.owner(), mount.group())
    return filler


def _disk_full_then_recovers(url: str, anchors: Path, body: bytes, filler: Path, backend: str) -> None:
    token = _token(url)
    before = _counts(url)
    server = Server(Settings(database_url=url, redis_url=None, trust_anchors=str(anchors)))
    server.start()
    try:
        t = time.monotonic()
        r = _post(server.url, token, body)
        refused_after = time.monotonic() - t
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "unavailable" and int(r.headers["retry-after"]) >= 1
        assert _counts(url) == before  # nothing half-written
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        filler.unlink()  # the operator frees space: no restart
        t = time.monotonic()
        r = _post(server.url, token, body)
        assert r.status_code == 200 and r.json()["accepted"] == ROWS, r.text[:300]
        assert _counts(url) == (ROWS, ROWS, 1)
        record(
            "database disk full (tmpfs)",
            backend=backend,
            rows=ROWS,
            refused_after_s=round(refused_after, 1),
            space_freed_to_loaded_s=round(time.monotonic() - t, 1),
        )
    finally:
        server.stop()


def test_disk_full_on_sqlite_is_503_and_nothing_half_written(trust_anchor_file: Path, body: bytes) -> None:
    with small_tmpfs(TMPFS_MB) as mount:
        db = mount / "shikaku.sqlite3"
        upgrade(f"sqlite:///{db}")
        filler = _filler(mount)
        _disk_full_then_recovers(f"sqlite:///{db}", trust_anchor_file, body, filler, "sqlite")


def test_disk_full_on_postgres_tablespace_is_503_and_nothing_half_written(
    private_pg: PrivatePG, trust_anchor_file: Path, body: bytes
) -> None:
    with small_tmpfs(TMPFS_MB, owner="postgres" if os.geteuid() == 0 else None) as mount:
        admin = sa.create_engine(private_pg.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE TABLESPACE small LOCATION '{mount}'"))
            conn.execute(sa.text("CREATE DATABASE full_disk TABLESPACE small"))
        admin.dispose()
        url = private_pg.url.rsplit("/", 1)[0] + "/full_disk"
        upgrade(url)
        filler = _filler(mount)
        try:
            _disk_full_then_recovers(url, trust_anchor_file, body, filler, "postgres")
        finally:
            admin = sa.create_engine(private_pg.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text("DROP DATABASE IF EXISTS full_disk WITH (FORCE)"))
                conn.execute(sa.text("DROP TABLESPACE IF EXISTS small"))
            admin.dispose()
