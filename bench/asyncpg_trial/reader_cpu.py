"""The bundle read of a by-number cache miss, psycopg2 on the event loop (``pgasync``) vs asyncpg,
in one process, alternating: reads/s and the client process's CPU time per read (what a loaded
2-core server pays for each miss; the PostgreSQL side runs the same prepared statements).

    PYTHONPATH=$PWD:$PWD/bench/asyncpg_trial:/tmp/asyncpg-site \\
        .venv/bin/python bench/asyncpg_trial/reader_cpu.py --db shikaku_bench_lookup_25000

The database is one ``bench.server_bench --reuse-db --people 25000`` loaded. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

import sqlalchemy as sa
from adapter import AsyncpgPG  # type: ignore[import-not-found]  # beside this file

from bench.common import PG
from shikaku_server.database import ThreadedTransactions, make_engine, make_session_factory
from shikaku_server.eligibility.reader import PostgresBundleReader
from shikaku_server.pgasync import AsyncPG


async def _drive(reader: PostgresBundleReader, keys: list[tuple[str, str, str]], n: int, concurrency: int) -> None:
    it = iter(random.Random(3).choices(keys, k=n))

    async def worker() -> None:
        for key in it:
            await reader.bundle(*key)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="shikaku_bench_lookup_25000")
    ap.add_argument("--reads", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    engine = make_engine(f"{PG}/{args.db}")
    reads = ThreadedTransactions(make_session_factory(engine))
    with engine.connect() as c:
        keys = [tuple(r) for r in c.execute(sa.text("SELECT insurer_number, symbol_norm, number_norm FROM insured"))]
    bare = AsyncpgPG(engine, 4)
    bare.timeouts = False
    drivers: dict[str, Any] = {
        "psycopg2 (pgasync)": AsyncPG(engine, 4),
        "asyncpg": AsyncpgPG(engine, 4),
        "asyncpg, no per-call timeouts": bare,
    }
    out: dict[str, list[dict[str, float]]] = {name: [] for name in drivers}

    async def run() -> None:
        for pg in drivers.values():  # warm: connections open, statements prepared
            await _drive(PostgresBundleReader(reads, pg), keys, 500, args.concurrency)
        for _ in range(args.rounds):
            for name, pg in drivers.items():
                wall, cpu = time.perf_counter(), time.process_time()
                await _drive(PostgresBundleReader(reads, pg), keys, args.reads, args.concurrency)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                out[name].append({"reads_per_s": args.reads / wall, "cpu_us_per_read": cpu / args.reads * 1e6})
        for pg in drivers.values():  # on the loop, as the app's lifespan closes it
            pg.close()

    asyncio.run(run())
    report = {
        name: {
            "reads_per_s": round(statistics.median(r["reads_per_s"] for r in rounds)),
            "cpu_us_per_read": round(statistics.median(r["cpu_us_per_read"] for r in rounds), 1),
            "rounds_cpu_us": [round(r["cpu_us_per_read"], 1) for r in rounds],
        }
        for name, rounds in out.items()
    }
    print(json.dumps({"reads": args.reads, "concurrency": args.concurrency, **report}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
