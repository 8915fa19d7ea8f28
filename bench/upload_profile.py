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
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import shikaku_server.upload.bulk as bulk
import shikaku_server.upload.service as svc
from bench.common import fresh_database
from schemas.insurer_files import FileReader, _byte_blocks, _Decoded, check_rows
from shikaku_server.auth.service import Principal, add_insurer
from shikaku_server.cache import InMemoryCache
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from shikaku_server.upload.progress import UploadProgress
from testbed.population import default_insurers

PHASES: collections.defaultdict[str, float] = collections.defaultdict(float)
CPU: collections.defaultdict[str, float] = collections.defaultdict(float)  # the thread's own CPU time
BACKEND: list[int] = []  # the PostgreSQL backend of the upload's session


def backend_cpu() -> float:
    """CPU seconds of the upload's PostgreSQL backend so far (Linux /proc; same machine)."""
    if not BACKEND:
        return 0.0
    with open(f"/proc/{BACKEND[0]}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrap(owner: Any, name: str, label: str) -> None:
    f = getattr(owner, name, None)
    if f is None:
        return

    @functools.wraps(f)
    def timed(*a: Any, **k: Any) -> Any:
        t, c, b = time.perf_counter(), time.thread_time(), backend_cpu()
        try:
            return f(*a, **k)
        finally:
            PHASES[label] += time.perf_counter() - t
            CPU[label] += time.thread_time() - c
            CPU[label + " [PostgreSQL backend]"] += backend_cpu() - b

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


class _Progress(UploadProgress):
    read_at = commit_at = 0.0

    def all_read(self, rows_read: int) -> None:
        self.read_at = time.perf_counter()
        super().all_read(rows_read)

    def committing(self) -> None:
        self.commit_at = time.perf_counter()
        super().committing()


def change_file(source: str, out: str, day: str = "2026-12-01") -> int:
    """A file of ``change`` rows, one per open period of ``source``'s ``add`` rows (a new address
    from ``day``): what a monthly file of changes does to stored persons. Returns the rows."""
    import csv

    n = 0
    with open(source, encoding="utf-8", newline="") as fh, open(out, "w", encoding="utf-8", newline="") as fo:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(fo, fieldnames=reader.fieldnames or [], lineterminator="\n")
        writer.writeheader()
        for row in reader:
            if row["action"] != "add" or row["valid_to"] or row["valid_from"].replace("-", "") >= day.replace("-", ""):
                continue
            keep = ("insurer_number", "symbol", "number", "branch")
            writer.writerow({**dict.fromkeys(row, ""), **{k: row[k] for k in keep}, "action": "change",
                             "valid_from": day, "address": "東京都千代田区霞が関１－２－３", "post_number": "1008916"})
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--db", default="shikaku_bench_upload")
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--changes", action="store_true", help="then a file of change rows for the same persons")
    ap.add_argument("--validate-only", action="store_true")
    ap.add_argument("--breakdown", action="store_true", help="the reading passes first, then the upload")
    ap.add_argument("--profile")
    ap.add_argument("--batch", type=int, help="override service.BATCH")
    ap.add_argument("--rss", action="store_true", help="print the resident set size every 5 s")
    args = ap.parse_args()
    if args.batch:
        svc.BATCH = args.batch
    if args.rss:
        threading.Thread(target=_print_rss, daemon=True).start()
    if args.validate_only or args.breakdown:
        # the reading side alone, in three passes: each adds one layer to the one before
        t = time.process_time()
        n = sum(1 for _ in _Decoded(_byte_blocks(_chunks(args.file)), "utf-8"))
        print(f"read + decode + split into lines: {n} lines in {time.process_time() - t:.2f} s CPU")
        t = time.process_time()
        n = sum(1 for _ in FileReader("eligibility", _chunks(args.file), "csv"))
        print(f"+ parse (fast-path regex, csv for the rest) and records: {n} rows in "
              f"{time.process_time() - t:.2f} s CPU")
        t = time.process_time()
        n = sum(1 for c in check_rows(FileReader("eligibility", _chunks(args.file), "csv")) if c.record)
        print(f"+ validation of the other rows, charset warnings (check_rows): {n} records in "
              f"{time.process_time() - t:.2f} s CPU")
        if args.validate_only:
            return
    for owner, name, label in (
        (svc._EligibilityApplier, "prepare", "prepare (reading thread)"),
        (svc._EligibilityApplier, "_load", "load"),
        (svc._EligibilityApplier, "_write", "write"),
        (svc, "existing_insureds", "existing_insureds"),  # before the writer (commit 557a3bf)
        (svc, "insert_insureds", "insert_insureds"),
        (svc, "insert_rows", "insert_rows"),
        (getattr(bulk, "PostgresWriter", None), "existing_insureds", "existing_insureds"),
        (getattr(bulk, "PostgresWriter", None), "insert_insureds", "insert_insureds"),
        (getattr(bulk, "PostgresWriter", None), "insert_rows", "insert_rows"),
        (svc._EligibilityApplier, "_supersede", "supersede"),
        (bulk, "_copy", "copy"),
        (svc._EligibilityApplier, "apply", "apply (worker, all)"),
        (svc._Pipeline, "_put", "reading thread blocked on the worker"),
    ):
        _wrap(owner, name, label)
    checking = check_rows

    def timed_rows(reader: Any) -> Iterator[Any]:
        rows = checking(reader)
        while True:
            t, c = time.perf_counter(), time.thread_time()
            try:
                item = next(rows)
            except StopIteration:
                return
            finally:
                PHASES["read + validate (reading thread)"] += time.perf_counter() - t
                CPU["read + validate (reading thread)"] += time.thread_time() - c
            yield item

    svc.check_rows = timed_rows  # type: ignore[attr-defined]  # the name the service calls
    made = svc._EligibilityApplier.__init__

    def init(self: Any, session: Any, upload_id: str, writer: Any) -> None:
        made(self, session, upload_id, writer)
        BACKEND[:] = [session.connection().connection.dbapi_connection.get_backend_pid()]
        CPU["backend at start"] = backend_cpu()

    svc._EligibilityApplier.__init__ = init  # type: ignore[method-assign]
    url = fresh_database(args.db)
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    numbers = frozenset(i.number for i in default_insurers())
    with transaction(factory) as s:
        add_insurer(s, numbers=list(numbers), name="bench")
    principal = Principal(1, "insurer", None, None, numbers)
    runs: list[tuple[str, Callable[[], Iterator[bytes]]]] = [("first", lambda: _chunks(args.file))]
    if args.again:
        runs.append(("again", lambda: _chunks(args.file, b"\n")))
    if args.changes:
        changes = args.file + ".changes.csv"
        print(f"change file: {change_file(args.file, changes)} rows")
        runs.append(("changes", lambda: _chunks(changes)))
    for label, chunks in runs:
        PHASES.clear()
        CPU.clear()
        cpu0 = time.process_time()
        prof = cProfile.Profile() if args.profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        progress = _Progress()
        o = svc.process_upload(
            factory,
            InMemoryCache(),
            principal,
            writers=bulk.make_bulk_writers(factory.kw["bind"]),
            kind="eligibility",
            fmt="csv",
            chunks=chunks(),
            error_limit=100,
            max_bytes=10**10,
            progress=progress,
        )
        done = time.perf_counter()
        if prof:
            prof.disable()
            prof.dump_stats(f"{args.profile}.{label}")
        total = time.perf_counter() - t
        print(
            f"{label}: accepted={o.accepted} rejected={o.rejected} unchanged={o.unchanged} "
            f"total={total:.2f} s phases={ {k: round(v, 2) for k, v in PHASES.items()} }"
        )
        shown = {k: round(v, 2) for k, v in CPU.items() if round(v, 2) and k != "backend at start"}
        print(f"  CPU s (thread's own): {shown}; "
              f"this process {time.process_time() - cpu0:.2f} s, "
              f"the backend {backend_cpu() - CPU['backend at start']:.2f} s in all")
        print(f"  all read at {progress.read_at - t:.2f} s, committing from {progress.commit_at - t:.2f} s "
              f"(commit and the rest {done - progress.commit_at:.2f} s)")


if __name__ == "__main__":
    main()
