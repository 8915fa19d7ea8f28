"""Soak (issue 10): a long run at half the measured maximum, on PostgreSQL + Redis.

1. N people loaded through the upload API, 50 cards registered;
2. the maximum: a closed loop of 8 clients, lookups and card checks mixed 4:1, for ``--probe`` s;
3. the soak: an open loop paced at half that rate for ``--duration`` s (same mix), and an upload
   every minute (a file of ``--upload-rows`` people, a different slice each minute);
4. per minute: requests, errors (any answer but 200, or a transport error), p50/p99; the RSS of
   every server process (uvicorn's supervisor and workers), PostgreSQL's and Redis' at the start
   and at the end.

    .venv/bin/python -m bench.soak --duration 600
Prints one JSON document; figures go into bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.common import REDIS, fresh_database, percentile, server
from bench.server_bench import check_card, load, register_cards, upload
from testbed.population import iter_people, write_eligibility_csv

DATABASE = "shikaku_bench_soak"
MIX = 5  # every 5th operation is a card check, the others by-number lookups


def _rss_mb(processes: list[psutil.Process]) -> dict[str, float]:
    out = {}
    for p in processes:
        try:
            out[f"{p.name()}:{p.pid}"] = round(p.memory_info().rss / 2**20, 1)
        except psutil.Error:
            continue
    return out


def _stores(database: str) -> list[psutil.Process]:
    """This run's Redis (the one listening on the port of ``REDIS``) and PostgreSQL's postmaster
    with the backends connected to ``database`` (the machine may run other clusters and servers)."""
    port = int(REDIS.rsplit(":", 1)[1].split("/")[0])
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            ours_redis = p.info["name"] == "redis-server" and any(c.laddr.port == port for c in p.net_connections())
            ours_pg = p.info["name"] == "postgres" and (
                p.ppid() == 1 or any(f" {database} " in f" {c} " for c in p.info["cmdline"] or [])
            )
            if ours_redis or ours_pg:
                out.append(p)
        except psutil.Error:
            continue
    return out


class Load:
    def __init__(self, client: httpx.AsyncClient, queries: list[dict[str, Any]], cards: list[Any]) -> None:
        self.client, self.queries, self.cards = client, queries, cards
        self.rng = random.Random(5)
        self.n = 0

    async def one(self) -> tuple[bool, float]:
        self.n += 1
        t = time.perf_counter()
        try:
            if self.n % MIX == 0:
                r = await check_card(self.client, self.rng.choice(self.cards))
            else:
                r = await self.client.post("/v1/eligibility/by-number", json=self.rng.choice(self.queries))
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        return ok, (time.perf_counter() - t) * 1000


async def _maximum(load: Load, seconds: float) -> float:
    done = [0]
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await load.one()
            done[0] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(8)))
    return done[0] / (time.perf_counter() - start)


async def _soak(
    load: Load, rate: float, seconds: float, upload_minutely: Any, watched: list[psutil.Process]
) -> list[dict[str, Any]]:
    """An open loop at ``rate`` ops/s for ``seconds``; each operation counts in the minute it was
    sent in (one still running at a minute's end too). The RSS of ``watched`` is sampled at each
    minute's start, so growth that levels off (caches warming) tells apart from a leak."""
    done: list[tuple[float, bool, float]] = []  # (sent at, ok, ms)
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def fire() -> None:
        sent = time.perf_counter() - start
        ok, ms = await load.one()
        done.append((sent, ok, ms))

    lags: list[tuple[float, float]] = []  # (at, ms): how late the client's own loop woke up

    async def ticker() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((t - start, (time.perf_counter() - t - 0.01) * 1000))

    tick = asyncio.create_task(ticker())
    uploads = [asyncio.create_task(asyncio.to_thread(upload_minutely, 0))]
    rss = [_rss_mb(watched)]
    i = 0
    while (now := time.perf_counter()) < start + seconds:
        if now - start >= 60 * len(uploads):
            rss.append(_rss_mb(watched))
            uploads.append(asyncio.create_task(asyncio.to_thread(upload_minutely, len(uploads))))
        task = asyncio.create_task(fire())
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    await asyncio.gather(*pending)
    tick.cancel()
    results = await asyncio.gather(*uploads, return_exceptions=True)
    minutes: list[dict[str, Any]] = []
    for m, res in enumerate(results):
        sent_in = [(sent, ok, ms) for sent, ok, ms in done if m * 60 <= sent < (m + 1) * 60]
        ops = [(ok, ms) for _, ok, ms in sent_in]
        lat = [ms for _, ms in ops]
        late = [ms for at, ms in lags if m * 60 <= at < (m + 1) * 60]
        # the slowest requests: when they were sent (s into the minute), to set beside the upload's
        slow = sorted(((ms, sent) for sent, _, ms in sent_in), reverse=True)[:5]
        minutes.append(
            {
                "minute": m + 1,
                "requests": len(ops),
                "errors": sum(1 for ok, _ in ops if not ok),
                "p50_ms": round(percentile(lat, 50), 1) if lat else None,
                "p99_ms": round(percentile(lat, 99), 1) if lat else None,
                "upload": res if isinstance(res, dict) else f"error: {res!r}",
                "client_loop_lag_ms_p99_max": [round(percentile(late, 99), 1), round(max(late), 1)] if late else None,
                "slowest_ms_at_s": [[round(ms), round(sent - m * 60, 1)] for ms, sent in slow],
                "server_rss_mb_at_start": rss[m] if m < len(rss) else None,
            }
        )
    return minutes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=600, help="seconds of soak")
    parser.add_argument("--probe", type=int, default=15, help="seconds of the maximum's closed loop")
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--upload-rows", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--database", default=DATABASE, help="two soaks side by side need two databases")
    args = parser.parse_args()
    url = fresh_database(args.database)
    redis.Redis.from_url(REDIS).flushdb()
    os.environ["SHIKAKU_DATABASE_URL"] = url
    work = Path(tempfile.mkdtemp(prefix="shikaku-soak-"))
    facility_token, queries, extra = load(url, args.people, work)
    slices = work / "slices"
    slices.mkdir()
    report: dict[str, Any] = {"people": args.people, "workers": args.workers, "duration_s": args.duration}
    server_env = dict(item.split("=", 1) for item in args.server_env)
    report["server_env"] = server_env
    with server(url, REDIS, workers=args.workers, extra_env=server_env) as base:
        insurer = str(extra["insurer_token"])
        report["initial_upload"] = upload(base, insurer, work / "eligibility.csv")
        cards = register_cards(base, facility_token, extra["cards"])  # type: ignore[arg-type]

        # new people each minute (another seed: other card numbers), written before the soak starts:
        # generating them in the soak would hold this client's GIL and show as the server's latency
        for minute in range(args.duration // 60 + 1):
            write_eligibility_csv(slices / f"{minute}.csv", iter_people(args.upload_rows, seed=1000 + minute))

        def upload_minutely(minute: int) -> dict[str, Any]:
            return upload(base, insurer, slices / f"{minute}.csv")

        server_procs = psutil.Process().children(recursive=True)

        async def run() -> None:
            async with httpx.AsyncClient(
                base_url=base,
                headers={"Authorization": f"Bearer {facility_token}"},
                timeout=30,
                limits=httpx.Limits(max_connections=64),
            ) as client:
                load_ = Load(client, queries, cards)
                await _maximum(load_, 3)  # warm-up
                maximum = await _maximum(load_, args.probe)
                report["maximum_ops_per_s"] = round(maximum, 1)
                report["soak_rate_ops_per_s"] = round(maximum / 2, 1)
                report["rss_start_mb"] = {"server": _rss_mb(server_procs), "stores": _rss_mb(_stores(args.database))}
                report["minutes"] = await _soak(load_, maximum / 2, args.duration, upload_minutely, server_procs)
                report["rss_end_mb"] = {"server": _rss_mb(server_procs), "stores": _rss_mb(_stores(args.database))}

        asyncio.run(run())
    minutes = report["minutes"]
    report["total"] = {
        "requests": sum(m["requests"] for m in minutes),
        "errors": sum(m["errors"] for m in minutes),
        "p99_ms_per_minute": [m["p99_ms"] for m in minutes],
        "upload_errors": sum(1 for m in minutes if not isinstance(m.get("upload"), dict)),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
