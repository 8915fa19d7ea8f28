"""PostgreSQL's CPU per access-log entry with and without a foreign key to ``insured`` (issue 11,
migration 0008), and with ``COPY`` instead of the writer's ``unnest`` insert.

The entries go, in groups of 150 (what the group-commit writer inserts every 50 ms at ~3,000
lookups/s), for random persons of a loaded bench database, into two copies of
``access_log`` (dropped at the end): one with the foreign key the table had before 0008, one without. The figure is
the backend's own CPU (``/proc``, psutil) per entry, rounds alternating, medians::

    .venv/bin/python -m bench.access_log_fk [--db shikaku_bench_lookup_1000000] [--rounds 5]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import statistics
from typing import Any

import psutil
import psycopg2  # type: ignore[import-untyped]  # no stubs installed (psycopg2-binary)

from bench.common import PG

GROUP, GROUPS = 150, 100
TABLES = ("bench_al_fk", "bench_al_plain")
_COLUMNS = "insured_id, at, facility_code, role, what, query_kind"
_ROW = ("0110113719", "reception", "eligibility", "number")
_INSERT = (
    "INSERT INTO {table} (insured_id, at, facility_code, role, what, query_kind) SELECT * FROM "
    "unnest(%s::int[], %s::timestamptz[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[])"
)


def _write(cur: Any, table: str, how: str, group: list[int], now: dt.datetime) -> None:
    if how == "insert":
        cur.execute(_INSERT.format(table=table), (group, [now] * len(group), *([v] * len(group) for v in _ROW)))
        return
    rest = "\t".join(_ROW)
    lines = "".join(f"{i}\t{now.isoformat()}\t{rest}\n" for i in group)
    cur.copy_expert(f"COPY {table} ({_COLUMNS}) FROM STDIN", io.StringIO(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="shikaku_bench_lookup_1000000", help="a bench database with insured persons")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    conn = psycopg2.connect(f"{PG.replace('+psycopg2', '')}/{args.db}")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT id FROM insured ORDER BY random() LIMIT 20000")
    ids = [row[0] for row in cur.fetchall()]
    for table in TABLES:  # plain tables (a TEMP table cannot reference insured), dropped at the end
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (LIKE access_log INCLUDING DEFAULTS INCLUDING INDEXES)")
    cur.execute("ALTER TABLE bench_al_fk ADD FOREIGN KEY (insured_id) REFERENCES insured (id)")
    try:
        report = _measure(cur, ids, args.rounds)
    finally:
        for table in TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    print(json.dumps(report, indent=2))


def _measure(cur: Any, ids: list[int], rounds: int) -> dict[str, Any]:
    cur.execute("SELECT pg_backend_pid()")
    backend = psutil.Process(cur.fetchone()[0])

    def cpu() -> float:
        t = backend.cpu_times()
        return float(t.user + t.system)

    rng = random.Random(11)
    variants = [(table, how) for how in ("insert", "copy") for table in TABLES]
    seen: dict[str, list[float]] = {f"{table} {how}": [] for table, how in variants}
    for _ in range(rounds):
        for table, how in variants:
            start = cpu()
            for _ in range(GROUPS):
                _write(cur, table, how, rng.sample(ids, GROUP), dt.datetime.now(dt.UTC))
            seen[f"{table} {how}"].append(1e6 * (cpu() - start) / (GROUPS * GROUP))
    return {
        "backend_cpu_us_per_entry": {k: round(statistics.median(v), 1) for k, v in seen.items()},
        "rounds": {k: [round(x, 1) for x in v] for k, v in seen.items()},
        "group": GROUP,
    }


if __name__ == "__main__":
    main()
