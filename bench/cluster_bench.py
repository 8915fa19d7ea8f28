"""By-number lookups through HAProxy (2 server processes) against one server process directly,
in the same run, on the HA topology of ``scripts/cluster.sh`` (loopback only, bounded).

    python -m bench.cluster_bench --people 2000 --duration 10 --rounds 3

Brings the cluster up (idempotent), registers an insurer and a facility, uploads ``--people``
people through the API, then alternates wrk on ``http://127.0.0.1:8801`` (server0 alone) and on
``http://127.0.0.1:8800`` (HAProxy over server0 + server1) ``--rounds`` times; prints medians.
Leaves the cluster running (``scripts/cluster.sh down`` stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import wrk
from bench.server_bench import wrk_script
from tests.factories import INSURER_A, eligibility_csv, person

ROOT = Path(__file__).resolve().parents[1]
FACILITY = "0110113719"


def _admin(db_url: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHIKAKU_DATABASE_URL": db_url}
    out = subprocess.run(
        [sys.executable, "-c", "from shikaku_server.admin import cli; cli()", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    up = json.loads(
        subprocess.run(
            [str(ROOT / "scripts/cluster.sh"), "up"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "SHIKAKU_PYTHON": sys.executable},
        ).stdout
    )
    insurer = _admin(up["database_url"], "insurer", "add", "--number", INSURER_A, "--name", "bench")
    facility = _admin(up["database_url"], "facility", "add", "--code", FACILITY, "--name", "bench")
    rows = [person(symbol="9", number=str(k), birth_date="1980-04-01") for k in range(args.people)]
    lag: dict[str, int] = {}
    done = threading.Event()

    def sample_lag() -> None:  # replica lag (bytes, Patroni /cluster) while the upload runs
        while not done.is_set():
            try:
                members = httpx.get("http://127.0.0.1:8008/cluster", timeout=2).json()["members"]
            except (httpx.HTTPError, ValueError):
                members = []
            for m in members:
                if isinstance(m.get("lag"), int):
                    key = f"{m['name']} ({m['role']})"
                    lag[key] = max(lag.get(key, 0), m["lag"])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample_lag, daemon=True)
    sampler.start()
    started = time.monotonic()
    r = httpx.post(
        f"{up['api']}/v1/uploads?kind=eligibility",
        content=eligibility_csv(rows),
        headers={"Authorization": f"Bearer {insurer}", "Content-Type": "text/csv"},
        timeout=300,
    )
    upload_s = time.monotonic() - started
    done.set()
    sampler.join(5)
    r.raise_for_status()
    queries = [
        {"insurer_number": INSURER_A, "symbol": "9", "number": str(k), "branch": "00", "birth_date": "1980-04-01"}
        for k in range(args.people)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        script = wrk_script(Path(tmp) / "lookups.lua", facility, queries)
        targets = {"one process direct (8801)": "http://127.0.0.1:8801", "HAProxy, 2 processes (8800)": up["api"]}
        for url in targets.values():  # warm-up: fill the cache through both processes
            wrk(url, duration=3, connections=args.connections, script=script)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, url in targets.items():
                results[name].append(wrk(url, duration=args.duration, connections=args.connections, script=script))
    summary = {}
    for name, runs in results.items():
        keys = ("requests_per_s", "p50_ms", "p99_ms", "non_2xx")
        summary[name] = {key: statistics.median(run[key] for run in runs) for key in keys}
    direct, proxied = (summary[name]["requests_per_s"] for name in targets)
    out = {
        "people": args.people,
        "upload_s": round(upload_s, 2),
        "max_replica_lag_bytes": lag,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "medians": summary,
        "ratio_haproxy_2_over_direct_1": round(proxied / direct, 2),
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
