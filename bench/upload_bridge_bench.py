"""An eligibility upload through HTTP, with the server of two source trees side by side: the
body-to-thread bridge of ``upload/views.py`` before (a queue polled with ``asyncio.sleep``) and
after (anyio's thread portal), or any two trees.

    .venv/bin/python -m bench.upload_bridge_bench --before /tmp/before-tree [--rows 50000] [--rounds 3]

Each round uploads the same generated file once to each tree's server (order alternating, a
fresh PostgreSQL database each time, one worker, no Redis) and records the request's wall time
and the server process's CPU time. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.common import ROOT, fresh_database, wait_ready
from shikaku_server.auth.service import add_insurer
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.population import default_insurers, iter_people, write_eligibility_csv


def _one_upload(tree: Path, csv: Path, rows: int, port: int) -> tuple[float, float]:
    url = fresh_database("shikaku_bench_bridge")
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        token = add_insurer(s, numbers=[i.number for i in default_insurers()], name="bench")
    engine.dispose()
    env = {
        **os.environ,
        "SHIKAKU_DATABASE_URL": url,
        "SHIKAKU_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(tree),
        "SHIKAKU_DB_STATEMENT_TIMEOUT_SECONDS": "120",
    }  # a shared machine: no 503 mid-bench
    env.pop("SHIKAKU_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from shikaku_server.main import main; main()", "--port", str(port), "--no-migrate"],
        env=env,
        cwd=tree,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, attempts=300)
        server = psutil.Process(proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        start = time.perf_counter()

        def body() -> object:
            with csv.open("rb") as f:
                while chunk := f.read(1 << 16):
                    yield chunk

        r = httpx.post(
            f"{base}/v1/uploads?kind=eligibility",
            content=body(),  # type: ignore[arg-type]
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
            timeout=600,
        )
        wall = time.perf_counter() - start
        cpu = sum(server.cpu_times()[:2]) - cpu0
        r.raise_for_status()
        assert r.json()["accepted"] > 0.99 * rows, r.text[:500]
        return wall, cpu
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True, help="the other source tree (e.g. git archive of a commit)")
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=9250)
    args = ap.parse_args()
    csv = Path(tempfile.mkdtemp()) / "eligibility.csv"
    rows = write_eligibility_csv(csv, iter_people(args.rows, seed=1))
    trees = {"before": args.before.resolve(), "after": ROOT}
    results: dict[str, dict[str, list[float]]] = {name: {"wall_s": [], "server_cpu_s": []} for name in trees}
    for i in range(args.rounds):
        for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
            wall, cpu = _one_upload(trees[name], csv, rows, args.port)
            results[name]["wall_s"].append(round(wall, 3))
            results[name]["server_cpu_s"].append(round(cpu, 3))
            print(f"round {i + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s server CPU", file=sys.stderr, flush=True)
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    print(
        json.dumps(
            {
                "rows": rows,
                "bytes": csv.stat().st_size,
                "rounds": args.rounds,
                "results": results,
                "median": med,
                "ratio_after_over_before": {k: round(med["after"][k] / med["before"][k], 3) for k in med["after"]},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
