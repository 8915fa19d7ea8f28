"""Helpers shared by the benchmarks: scratch databases, a server subprocess, wrk, percentiles,
raw ASGI calls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from testbed.population import Person

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG = os.environ.get("SHIKAKU_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("SHIKAKU_BENCH_REDIS", "redis://127.0.0.1:6379/13")


def fresh_database(name: str) -> str:
    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{PG}/{name}"


def free_port() -> int:
    """``SHIKAKU_BENCH_PORT`` when set (a port range of one's own on a shared machine), else any."""
    if os.environ.get("SHIKAKU_BENCH_PORT"):
        return int(os.environ["SHIKAKU_BENCH_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_RATE_LIMITS = [
    f"{what}_PER_{who}"
    for what in ("LOOKUPS", "LOOKUP_FAILURES", "CHALLENGES", "BATCH_QUERIES", "REGISTRATIONS")
    for who in ("TOKEN", "FACILITY")
]


@contextlib.contextmanager
def server(
    database_url: str, redis_url: str | None, *, workers: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    port = free_port()
    # one token drives the whole load: rate limits high enough never to refuse (still counted)
    unlimited = {f"SHIKAKU_RATE_LIMIT_{name}": "1000000000" for name in _RATE_LIMITS}
    env = dict(
        os.environ, SHIKAKU_DATABASE_URL=database_url, SHIKAKU_LOG_LEVEL="WARNING", **{**unlimited, **(extra_env or {})}
    )
    if redis_url:
        env["SHIKAKU_REDIS_URL"] = redis_url
    proc = subprocess.Popen(
        [str(VENV_BIN / "shikaku-server"), "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, attempts=1200)  # 2 min: a loaded machine starts two workers slowly
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def wait_ready(url: str, *, attempts: int) -> None:
    """Until ``url``'s ``/readyz`` answers 200, asking every 0.1 s up to ``attempts`` times."""
    for _ in range(attempts):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, *, duration: int, connections: int, script: Path | None = None, threads: int = 1) -> dict[str, float]:
    """Run wrk; requests/s and latency percentiles (ms)."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        result[f"p{pct}_ms"] = round(float(value) * _UNITS[unit], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def lookup_query(p: Person) -> dict[str, str]:
    """The ``POST /v1/eligibility/by-number`` body that asks for ``p``."""
    key = {name: str(getattr(p, name)) for name in ("insurer_number", "symbol", "number", "branch")}
    return key | {"birth_date": p.birth_date.isoformat()}


def nearest_rank(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, the card benches' p50/p99 (p99 of 100 values is the largest one)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms_summary(values: list[float]) -> dict[str, float]:
    """p50, p99 (nearest rank), mean and max, to 0.01."""
    return {
        "p50": round(nearest_rank(values, 0.50), 2),
        "p99": round(nearest_rank(values, 0.99), 2),
        "mean": round(statistics.fmean(values), 2),
        "max": round(max(values), 2),
    }


async def asgi_post(
    app: ASGIApp, path: str, body: bytes, *, token: str, content_type: bytes | None = None
) -> tuple[int, bytes]:
    """One ``POST path`` (a ``?query`` allowed) straight into the app's ASGI callable: no socket, no
    HTTP parsing. The status and the whole response body."""
    headers = [(b"host", b"bench"), (b"authorization", b"Bearer " + token.encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body)).encode()))
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # never: the app has read its body
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status[0], b"".join(chunks)
