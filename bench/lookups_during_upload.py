"""Lookup latency at the desk while an insurer's upload runs, against the same server idle (issue 13).

Reception asks for one patient at a time, and an insurer's batch may be loading on the same
server meanwhile. This bench sends ``POST /v1/eligibility/by-number`` open loop: a fixed rate,
each request timed on its own, whatever the others do. The target is a one-worker
``shikaku-server`` on PostgreSQL (in-process cache, every lookup writes its access-log row). The
lookups run twice: first idle for ``--idle`` seconds, then for as long as an upload of an
eligibility file of about ``--rows`` rows runs. The bench reports p50/p99/max of both phases
and the upload's time.

``--baseline COMMIT`` runs COMMIT's server (``git archive`` on ``PYTHONPATH``) in alternating
rounds with this tree's. Every round starts from a new database with the same contents.

    .venv/bin/python -m bench.lookups_during_upload [--rows 300000] [--rate 20] [--rounds 2] [--baseline e4c9642]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import PG, fresh_database, lookup_query, ms_summary, server
from bench.loader_bench import EVENT_SHARE
from bench.server_bench import FACILITY, _baseline_tree, upload
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.eligibility.service import today_jst
from shikaku_server.migrate import upgrade
from testbed.population import default_insurers, iter_people, write_eligibility_csv

DB = "shikaku_bench_during_upload"
BASE_PEOPLE = 20_000


def prepare(url: str) -> tuple[str, str]:
    """A new database's schema, an insurer token and a reception token."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as s:
            insurer = add_insurer(s, numbers=[i.number for i in default_insurers()], name="bench insurer")
            reception = add_facility(s, code=FACILITY, name="bench clinic", role="reception")
    finally:
        engine.dispose()
    return insurer, reception


async def open_loop(base: str, token: str, queries: list[dict[str, Any]], rate: float,
                    until: threading.Event | None, seconds: float) -> dict[str, Any]:
    """Lookups at ``rate`` per second until ``until`` is set (or for ``seconds``); each timed alone."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    order = random.Random(3)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30,
                                 limits=httpx.Limits(max_connections=64)) as client:

        async def one(body: dict[str, Any]) -> None:
            started = time.perf_counter()
            response = await client.post("/v1/eligibility/by-number", json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        n = 0
        while (until is None and time.perf_counter() - start < seconds) or (until is not None and not until.is_set()):
            tasks.append(asyncio.create_task(one(order.choice(queries))))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return {"n": len(latencies), "statuses": statuses, "ms": ms_summary(latencies)}


def one_round(tree: str | None, base_csv: Path, big_csv: Path, queries: list[dict[str, Any]],
              args: argparse.Namespace) -> dict[str, Any]:
    url = fresh_database(DB)
    insurer, reception = prepare(url)
    extra = {"PYTHONPATH": tree} if tree else {}
    with server(url, None, workers=1, extra_env=extra) as base:
        upload(base, insurer, base_csv)
        warm = asyncio.run(open_loop(base, reception, queries, 400, None, len(queries) / 400))
        idle = asyncio.run(open_loop(base, reception, queries, args.rate, None, args.idle))
        done = threading.Event()
        result: dict[str, Any] = {}

        def run_upload() -> None:
            try:
                result.update(upload(base, insurer, big_csv))
            finally:
                done.set()

        uploader = threading.Thread(target=run_upload, daemon=True)
        uploader.start()
        during = asyncio.run(open_loop(base, reception, queries, args.rate, done, 0))
        uploader.join()
    return {"warm_n": warm["n"], "idle": idle, "during_upload": during, "upload": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=20.0, help="lookups per second")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", help="a commit whose server runs in alternating rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-during-") as tmp:
        work = Path(tmp)
        base_csv = work / "base.csv"
        write_eligibility_csv(base_csv, iter_people(BASE_PEOPLE, seed=7))
        today = today_jst()
        valid = [p for p in iter_people(BASE_PEOPLE, seed=7) if p.is_valid_on(today)]
        random.Random(1).shuffle(valid)
        queries = [lookup_query(p) for p in valid[:500]]
        big_csv = work / "big.csv"
        big_rows = write_eligibility_csv(big_csv, iter_people(round(args.rows / EVENT_SHARE), seed=11))

        trees: list[tuple[str, str | None]] = [("this_tree", None)]
        if args.baseline:
            short, baseline = _baseline_tree(args.baseline, work)
            trees.insert(0, (f"baseline_{short}", baseline))
        report: dict[str, Any] = {"rows": big_rows, "rate_per_s": args.rate, "database": PG, "rounds": {}}
        for _ in range(args.rounds):
            for name, tree in trees:
                report["rounds"].setdefault(name, []).append(one_round(tree, base_csv, big_csv, queries, args))
        for name, rounds in report["rounds"].items():
            report[name] = {
                "idle_p99_ms": statistics.median(x["idle"]["ms"]["p99"] for x in rounds),
                "during_p50_ms": statistics.median(x["during_upload"]["ms"]["p50"] for x in rounds),
                "during_p99_ms": statistics.median(x["during_upload"]["ms"]["p99"] for x in rounds),
                "upload_s": statistics.median(x["upload"]["seconds"] for x in rounds),
            }
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
