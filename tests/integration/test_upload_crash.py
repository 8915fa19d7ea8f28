"""A killed connection or a killed server mid-upload leaves the database as it was before."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from shikaku_server.auth.service import add_insurer
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from tests.factories import INSURER_A, eligibility_csv, person

ROWS = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SHIKAKU_DATABASE_URL=settings.database_url, SHIKAKU_LOG_LEVEL="WARNING")
    env.pop("SHIKAKU_REDIS_URL", None)
    if settings.redis_url:
        env["SHIKAKU_REDIS_URL"] = settings.redis_url
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "shikaku-server"), "--port", str(port), "--no-migrate"], env=env
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def _counts(settings: Settings) -> tuple[int, ...]:
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        out = tuple(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("insured", "eligibility_period", "upload")
        )
    engine.dispose()
    return out


@pytest.fixture
def body() -> bytes:
    return eligibility_csv([person(number=str(100000 + i), name=f"試験 {i}") for i in range(ROWS)])


@pytest.fixture
def token(session_factory: object, settings: Settings) -> str:
    factory = make_session_factory(make_engine(settings.database_url))
    with transaction(factory) as s:
        return add_insurer(s, numbers=[INSURER_A], name="crash test")


def _upload(port: int, token: str, content: bytes | Iterator[bytes], *, timeout: float) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/uploads?kind=eligibility",
        content=content,
        timeout=timeout,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )


def _slow_body(body: bytes, sent: list[int], stop_after: int) -> Iterator[bytes]:
    for i in range(0, len(body), 16 * 1024):
        if i >= stop_after:
            raise ConnectionAbortedError("the client dies mid-upload")
        sent.append(i)
        yield body[i : i + 16 * 1024]
        time.sleep(0.002)


@pytest.mark.slow
def test_client_killed_mid_upload_leaves_nothing(settings: Settings, token: str, body: bytes) -> None:
    port = _free_port()
    proc = _start(settings, port)
    try:
        sent: list[int] = []
        with pytest.raises((httpx.HTTPError, ConnectionAbortedError)):
            _upload(port, token, _slow_body(body, sent, len(body) * 2 // 3), timeout=30)
        time.sleep(1.0)  # let the server notice and roll back
        assert _counts(settings) == (0, 0, 0)
        # and the server is still fine: the whole file then loads
        r = _upload(port, token, body, timeout=120)
        assert r.status_code == 200 and r.json()["accepted"] == ROWS
        assert _counts(settings) == (ROWS, ROWS, 1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_server_killed_mid_upload_leaves_nothing(settings: Settings, token: str, body: bytes) -> None:
    port = _free_port()
    proc = _start(settings, port)
    sent: list[int] = []

    def body_then_kill() -> Iterator[bytes]:
        for i, chunk in enumerate(_slow_body(body, sent, len(body) + 1)):
            if i == len(body) // (16 * 1024) // 2:
                proc.send_signal(signal.SIGKILL)  # the server dies with half the file applied in its transaction
                proc.wait(timeout=10)
            yield chunk

    with pytest.raises(httpx.HTTPError):
        _upload(port, token, body_then_kill(), timeout=30)
    assert _counts(settings) == (0, 0, 0)
    proc = _start(settings, port)
    try:
        r = _upload(port, token, body, timeout=120)
        assert r.status_code == 200 and r.json()["accepted"] == ROWS
    finally:
        proc.terminate()
        proc.wait(timeout=20)
