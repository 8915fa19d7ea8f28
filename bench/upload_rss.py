"""Server memory across repeated uploads (issue 10's soak: what makes a worker's RSS grow).

One server worker on PostgreSQL + Redis takes ``--uploads`` uploads of ``--rows`` new people each,
back to back, with no other load; the worker's RSS is read after each. Run once per allocator
setting (``--env MALLOC_ARENA_MAX=2`` …) to tell heap growth from glibc's per-thread arenas:

    .venv/bin/python -m bench.upload_rss --uploads 40
    .venv/bin/python -m bench.upload_rss --uploads 40 --env MALLOC_ARENA_MAX=2

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import REDIS, fresh_database, server
from bench.server_bench import load, upload
from testbed.population import iter_people, write_eligibility_csv

DATABASE = "shikaku_bench_upload_rss"


def _worker_rss_mb() -> float:
    """The server process (``--workers 1`` serves in the process itself)."""
    procs = [p for p in psutil.Process().children(recursive=True) if "shikaku-server" in " ".join(p.cmdline())]
    return round(sum(p.memory_info().rss for p in procs) / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args()
    url = fresh_database(DATABASE)
    redis.Redis.from_url(REDIS).flushdb()
    work = Path(tempfile.mkdtemp(prefix="shikaku-upload-rss-"))
    _facility, _queries, extra = load(url, 1_000, work, distinct=10)
    extra_env = dict(item.split("=", 1) for item in args.env)
    report: dict[str, Any] = {"uploads": args.uploads, "rows": args.rows, "env": extra_env}
    with server(url, REDIS, workers=1, extra_env=extra_env) as base:
        insurer = str(extra["insurer_token"])
        upload(base, insurer, work / "eligibility.csv")
        rss = [_worker_rss_mb()]
        for i in range(args.uploads):
            path = work / f"{i}.csv"
            write_eligibility_csv(path, iter_people(args.rows, seed=2000 + i))
            upload(base, insurer, path)
            rss.append(_worker_rss_mb())
    report["worker_rss_mb"] = rss
    half = len(rss) // 2
    report["growth_mb"] = {"first_half": round(rss[half] - rss[0], 1), "second_half": round(rss[-1] - rss[half], 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
