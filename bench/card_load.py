"""A load client for the card-check bench that is not the bottleneck (issue 13).

Several client processes (``multiprocessing``), each an event loop (uvloop) driving its own
keep-alive connections with a minimal HTTP/1.1 client (request bytes written by hand, answers
read by ``Content-Length``: a fraction of httpx's CPU per request). Every connection pair runs
one flow:

- **card**: a card check as the kiosk makes it — the challenge, the card's signature over its
  nonce, ``by-card`` — with the next challenge fetched while the current check is in flight.
  The protocol allows that and no more: the kiosk too fetches its challenge before the PIN is
  entered (docs/card.md), but a signature needs its own challenge's nonce, so it cannot be made
  before that challenge has come back;
- **lookup**: by-number lookups, one after the other.

Each process reports its operations, latencies and its own CPU time (``time.process_time``),
signing included and also apart, so the bench can say how much of the machine the client took.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization

from testbed.pki import card_signature


@dataclass(frozen=True)
class Job:
    host: str
    port: int
    token: str
    kind: str  # "card", "lookup", or "warm" (each of ``queries`` once)
    seconds: float
    flows: int  # concurrent flows in this process
    cards: list[tuple[bytes, bytes]] = field(default_factory=list)  # (certificate DER, private key PEM)
    queries: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    start_at: float = 0.0  # time.time() when every process starts at once


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port)
        head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n".encode()
        return cls(reader, writer, head)

    async def post(self, path: bytes, body: bytes | None) -> tuple[int, bytes]:
        if body is None:
            request = b"POST %s HTTP/1.1\r\n%sContent-Length: 0\r\n\r\n" % (path, self.head)
        else:
            request = b"POST %s HTTP/1.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                path,
                self.head,
                len(body),
                body,
            )
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
                break
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _run(job: Job) -> dict[str, Any]:
    rng = random.Random(job.seed)
    keys = [
        (der, base64.b64encode(der).decode(), serialization.load_pem_private_key(pem, None)) for der, pem in job.cards
    ]
    latencies: list[float] = []
    signing = [0.0]
    errors: list[str] = []
    reconnects = [0]
    delay = job.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    deadline = time.perf_counter() + job.seconds

    async def challenge(conn: _Conn) -> dict[str, Any]:
        status, body = await conn.post(b"/v1/card/challenges", None)
        if status != 200:
            raise RuntimeError(f"challenge: {status} {body[:200]!r}")
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    async def card_flow() -> None:
        first = second = None
        pending: dict[str, Any] | None = None
        try:
            while time.perf_counter() < deadline:
                if first is None or second is None or pending is None:
                    first = await _Conn.open(job.host, job.port, job.token)
                    second = await _Conn.open(job.host, job.port, job.token)
                    pending = await challenge(first)
                t = time.perf_counter()
                _, cert_b64, key = rng.choice(keys)
                c = time.process_time()
                signature = card_signature(key, base64.b64decode(pending["nonce"]))  # type: ignore[arg-type]
                signing[0] += time.process_time() - c
                body = orjson.dumps(
                    {
                        "challenge_id": pending["challenge_id"],
                        "certificate": cert_b64,
                        "auth_method": "pin",
                        "signature": base64.b64encode(signature).decode(),
                    }
                )
                try:
                    # the next check's challenge, fetched while this check is in flight
                    check, pending = await asyncio.gather(
                        second.post(b"/v1/eligibility/by-card", body), challenge(first)
                    )
                except (OSError, asyncio.IncompleteReadError):
                    reconnects[0] += 1  # the server closed a connection (a loaded machine): anew
                    first.close()
                    second.close()
                    first = second = pending = None
                    continue
                if check[0] != 200:
                    errors.append(f"by-card: {check[0]} {check[1][:200]!r}")
                    return
                latencies.append((time.perf_counter() - t) * 1000)
        finally:
            for conn in (first, second):
                if conn is not None:
                    conn.close()

    async def lookup_flow() -> None:
        conn = None
        bodies = [orjson.dumps(q) for q in job.queries]
        try:
            while time.perf_counter() < deadline:
                if conn is None:
                    conn = await _Conn.open(job.host, job.port, job.token)
                t = time.perf_counter()
                try:
                    status, answer = await conn.post(b"/v1/eligibility/by-number", rng.choice(bodies))
                except (OSError, asyncio.IncompleteReadError):
                    reconnects[0] += 1
                    conn.close()
                    conn = None
                    continue
                if status != 200:
                    errors.append(f"by-number: {status} {answer[:200]!r}")
                    return
                latencies.append((time.perf_counter() - t) * 1000)
        finally:
            if conn is not None:
                conn.close()

    async def warm_flow(chunk: list[bytes]) -> None:
        conn = await _Conn.open(job.host, job.port, job.token)
        try:
            for body in chunk:
                status, answer = await conn.post(b"/v1/eligibility/by-number", body)
                if status != 200:
                    errors.append(f"by-number: {status} {answer[:200]!r}")
                    return
                latencies.append(0.0)
        finally:
            conn.close()

    if job.kind == "warm":  # every query once: the cache holds them all
        bodies = [orjson.dumps(q) for q in job.queries]
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(warm_flow(bodies[i :: job.flows]) for i in range(job.flows)))
        return {
            "n": len(latencies),
            "latencies": [],
            "cpu_s": 0.0,
            "wall_s": time.perf_counter() - wall,
            "signing_s": 0.0,
            "errors": errors[:3],
            "reconnects": 0,
        }
    flow = card_flow if job.kind == "card" else lookup_flow
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(flow() for _ in range(job.flows)))
    return {
        "n": len(latencies),
        "latencies": latencies,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "signing_s": signing[0],
        "errors": errors[:3],
        "reconnects": reconnects[0],
    }


def _worker(job: Job) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(_run(job))
    except ImportError:  # pragma: no cover - uvloop is a server dependency
        return asyncio.run(_run(job))


def drive(jobs: list[Job]) -> list[dict[str, Any]]:
    """Run one job per process, all starting at the same moment; their reports."""
    start = time.time() + 1.0  # every process forked and connected by then
    timed = [Job(**{**j.__dict__, "start_at": start}) for j in jobs]
    with multiprocessing.get_context("fork").Pool(len(timed)) as pool:
        return pool.map(_worker, timed)
