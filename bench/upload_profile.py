"""Time ``process_upload`` of an eligibility file on a fresh PostgreSQL database, by phase.

    .venv/bin/python -m bench.upload_profile /tmp/up/elig100k.csv [--again] [--profile out.prof]

``--validate-only`` times reading + validation alone (no database). ``--again`` applies the same
records a second time from a copy with another digest (everything ``unchanged``).
Phases are wall-clock totals of the wrapped functions that exist in the current code.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import shikaku_server.upload.bulk as bulk
import shikaku_server.upload.service as svc
from bench.common import fresh_database
from schemas.insurer_files import FileReader, check_rows
from shikaku_server.auth.service import Principal, add_insurer
from shikaku_server.cache import InMemoryCache
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.population import default_insurers

PHASES: collections.defaultdict[str, float] = collections.defaultdict(float)


def _wrap(owner: Any, name: str, label: str) -> None:
    f = getattr(owner, name, None)
    if f is None:
        return

    @functools.wraps(f)
    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            PHASES[label] += time.perf_counter() - t

    setattr(owner, name, timed)


def _chunks(path: str, suffix: bytes = b"") -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while c := fh.read(262144):
            yield c
    if suffix:
        yield suffix


def _print_rss() -> None:
    while True:
        time.sleep(5)
        with open("/proc/self/status") as fh:
            rss = next(line for line in fh if line.startswith("VmRSS"))
        print(rss.strip(), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--db", default="shikaku_bench_upload")
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--validate-only", action="store_true")
    ap.add_argument("--profile")
    ap.add_argument("--batch", type=int, help="override service.BATCH")
    ap.add_argument("--rss", action="store_true", help="print the resident set size every 5 s")
    args = ap.parse_args()
    if args.batch:
        svc.BATCH = args.batch
    if args.rss:
        threading.Thread(target=_print_rss, daemon=True).start()
    if args.validate_only:
        t = time.perf_counter()
        n = sum(1 for c in check_rows(FileReader("eligibility", _chunks(args.file), "csv")) if c.record)
        print(f"validate only: {n} records in {time.perf_counter() - t:.2f} s")
        return
    for owner, name, label in (
        (svc._EligibilityApplier, "prepare", "prepare (reading thread)"),
        (svc._EligibilityApplier, "_load", "load"),
        (svc._EligibilityApplier, "_write", "write"),
        (bulk.PostgresBulk, "existing_insureds", "existing_insureds"),
        (bulk.PostgresBulk, "insert_insureds", "insert_insureds"),
        (bulk.PostgresBulk, "insert_rows", "insert_rows"),
        (bulk, "_copy", "copy"),
    ):
        _wrap(owner, name, label)
    url = fresh_database(args.db)
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    numbers = frozenset(i.number for i in default_insurers())
    with transaction(factory) as s:
        add_insurer(s, numbers=list(numbers), name="bench")
    principal = Principal(1, "insurer", None, None, numbers)
    runs: list[tuple[str, Callable[[], Iterator[bytes]]]] = [("first", lambda: _chunks(args.file))]
    if args.again:
        runs.append(("again", lambda: _chunks(args.file, b"\n")))
    for label, chunks in runs:
        PHASES.clear()
        prof = cProfile.Profile() if args.profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        o = svc.process_upload(
            factory,
            InMemoryCache(),
            principal,
            bulk=bulk.make_bulk(engine),
            kind="eligibility",
            fmt="csv",
            chunks=chunks(),
            error_limit=100,
            max_bytes=10**10,
        )
        if prof:
            prof.disable()
            prof.dump_stats(f"{args.profile}.{label}")
        total = time.perf_counter() - t
        print(
            f"{label}: accepted={o.accepted} rejected={o.rejected} unchanged={o.unchanged} "
            f"total={total:.2f} s phases={ {k: round(v, 2) for k, v in PHASES.items()} }"
        )


if __name__ == "__main__":
    main()
