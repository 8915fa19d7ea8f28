"""Loader benchmark: raw PostgreSQL COPY vs ``hokensha-load`` end to end, and the loader's memory.

    .venv/bin/python bench/loader_bench.py [--rows 1000000] [--small-rows 100000] [--skip-server]

1. generates an eligibility file of about ``--rows`` rows (``testbed.population``; add rows plus
   the change / loss rows of the same people) and a ``--small-rows`` one;
2. (a) ``COPY`` of that file into a plain typed table of a scratch database ``shikaku_bench``;
3. (b) the loader end to end: ``shikaku-admin migrate`` and ``insurer add`` on a fresh database
   ``shikaku_bench_srv``, ``shikaku-server`` as a subprocess, then ``hokensha-load eligibility``
   (parse and validate on the server, commit) — rows/s and the ratio (b)/(a);
4. the loader's peak RSS (``os.wait4``'s ``ru_maxrss`` of its own process) for the small and the
   large file, ``--dry-run`` and upload: flat memory means the two are about equal.

Prints one JSON document; also writes it to ``bench/out/loader_bench.json`` and the results
paragraph between the bench markers of ``docs/loader.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg2  # type: ignore[import-untyped]  # no stubs installed
from psycopg2 import sql

from testbed.population import ELIGIBILITY_HEADER, default_insurers, iter_people, write_eligibility_csv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "loader.md"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
COPY_DB = "shikaku_bench"
SERVER_DB = "shikaku_bench_srv"
EVENT_SHARE = 1.062  # rows per person: add rows plus change / loss rows (testbed defaults)
_SUMMARY = re.compile(r"accepted (\d+(?:,\d{3})*), rejected (\d+(?:,\d{3})*)(?:, unchanged (\d+(?:,\d{3})*))?")
_DATE_COLUMNS = {
    "birth_date",
    "valid_from",
    "valid_to",
    "elderly_valid_from",
    "elderly_valid_to",
    "limit_valid_from",
    "limit_valid_to",
}
_INT_COLUMNS = {"copay_ratio", "elderly_ratio"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- files


def make_file(path: Path, rows: int, seed: int) -> int:
    """An eligibility file of about ``rows`` rows; returns the data rows written."""
    if path.exists():
        with path.open("rb") as fh:
            return sum(1 for _ in fh) - 1
    started = time.perf_counter()
    people = max(1, round(rows / EVENT_SHARE))
    written = write_eligibility_csv(path, iter_people(people, seed, today=dt.date(2026, 11, 28)))
    log(f"generated {path.name}: {written:,} rows in {time.perf_counter() - started:.1f} s")
    return written


# ---------------------------------------------------------------- PostgreSQL


@contextmanager
def pg(dbname: str = "postgres") -> Iterator[Any]:
    conn = psycopg2.connect(dbname=dbname, **PG)
    try:
        yield conn
    finally:
        conn.close()


def recreate_database(name: str) -> None:
    with pg() as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def bench_copy(path: Path, rows: int) -> dict[str, Any]:
    """(a) the floor: COPY the same CSV into a plain typed table (no keys, no validation)."""
    recreate_database(COPY_DB)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(c), sql.SQL("date" if c in _DATE_COLUMNS else "integer" if c in _INT_COLUMNS else "text")
        )
        for c in ELIGIBILITY_HEADER
    )
    with pg(COPY_DB) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE eligibility_raw ({})").format(columns))
        conn.commit()
        started = time.perf_counter()
        with path.open("r", encoding="utf-8", newline="") as fh:
            cur.copy_expert("COPY eligibility_raw FROM STDIN WITH (FORMAT csv, HEADER true)", fh)
        conn.commit()
        elapsed = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM eligibility_raw")
        (copied,) = cur.fetchone()
    assert copied == rows, (copied, rows)
    log(f"COPY: {rows:,} rows in {elapsed:.1f} s")
    return {"rows": rows, "seconds": round(elapsed, 2), "rows_per_s": round(rows / elapsed)}


PROJECT_DB = "shikaku_bench_tables"


def project_rows(path: Path) -> tuple[str, str, int]:
    """The ``insured`` and ``eligibility_period`` rows of the file's first ``add`` of each person,
    as COPY csv, rendered by the server's own code (``_fast_row``, ``render_rows``): what (c)
    copies. Not timed."""
    from schemas.insurer_files import EligibilityRecord, FileReader, check_rows
    from shikaku_server.upload.bulk import INSURED_COLUMNS, render_rows
    from shikaku_server.upload.service import _ROW_COLUMNS, _fast_row

    ids: dict[tuple[str, str, str, str], int] = {}
    insured: list[str] = []
    periods: list[str] = []
    block: list[Any] = []

    def flush() -> None:
        ins = render_rows(
            [(ids[k], r.insurer_number, r.symbol, r.number, r.branch, r.symbol_norm, r.number_norm) for k, r in block],
            ("id", *INSURED_COLUMNS),
        )
        per = render_rows([(*_fast_row(r, "x" * 22), ids[k]) for k, r in block], _ROW_COLUMNS)
        assert ins is not None and per is not None
        insured.extend(ins)
        periods.extend(per)
        block.clear()

    with path.open("rb") as fh:
        for checked in check_rows(FileReader("eligibility", iter(lambda: fh.read(1 << 18), b""), "csv")):
            r = checked.record
            if not isinstance(r, EligibilityRecord) or r.action != "add":
                continue
            key = (r.insurer_number, r.symbol_norm, r.number_norm, r.branch)
            if key in ids:
                continue
            ids[key] = len(ids) + 1
            block.append((key, r))
            if len(block) >= 50_000:
                flush()
    flush()
    return "\n".join(insured) + "\n", "\n".join(periods) + "\n", len(ids)


def bench_copy_project(path: Path, rows: int) -> dict[str, Any]:
    """(c) the schema's own limit: COPY of the file's persons and periods, already rendered as the
    server writes them, into ``insured`` + ``eligibility_period`` of a freshly migrated database,
    with their indexes and foreign key; one transaction, commit included. The time is scaled to
    the file's rows (the change / loss rows of the file are not copied: they are ~6 %)."""
    from shikaku_server.migrate import upgrade
    from shikaku_server.upload.bulk import INSURED_COLUMNS
    from shikaku_server.upload.service import _ROW_COLUMNS

    insured, periods, n = project_rows(path)
    recreate_database(PROJECT_DB)
    upgrade(f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{PROJECT_DB}")
    not_null = "name, name_kana, name_norm, sex, personal_family, card_classification, upload_id"
    with pg(PROJECT_DB) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        cur.copy_expert(
            f"COPY insured (id, {', '.join(INSURED_COLUMNS)}) FROM STDIN WITH "
            "(FORMAT csv, FORCE_NOT_NULL (symbol, symbol_norm))",
            io.StringIO(insured),
        )
        cur.copy_expert(
            f"COPY eligibility_period ({', '.join(_ROW_COLUMNS)}) FROM STDIN WITH "
            f"(FORMAT csv, FORCE_NOT_NULL ({not_null}))",
            io.StringIO(periods),
        )
        conn.commit()
        elapsed = time.perf_counter() - started
    per_row = elapsed / n
    log(f"COPY into the project's tables: {n:,} persons in {elapsed:.1f} s")
    return {
        "persons": n,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(1 / per_row),
        "seconds_scaled_to_file": round(per_row * rows, 2),
    }


# ---------------------------------------------------------------- loader runs


GNU_TIME = Path("/usr/bin/time")


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv``; wall time, exit code, output and the process's own peak RSS (MiB).

    The peak comes from GNU time's ``%M`` when available. Not from this process's ``wait4``:
    Linux carries the high-water mark of the forked copy of *this* (large) process across
    ``exec`` into the child's ``ru_maxrss``, which would hide the loader's own figure.
    """
    rss_file = OUT / "rss.txt"
    measured = [str(GNU_TIME), "-f", "%U %S %M", "-o", str(rss_file), *argv] if GNU_TIME.exists() else argv
    started = time.perf_counter()
    proc = subprocess.run(measured, capture_output=True, env=env, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu = None
    if GNU_TIME.exists():
        user, system, peak = rss_file.read_text().split()[-3:]
        peak_kib, cpu = int(peak), round(float(user) + float(system), 2)
    else:  # an upper bound only (see above)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "exit_code": proc.returncode,
        "seconds": round(elapsed, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "cpu_s": cpu,
        "stdout": proc.stdout.strip(),
        "stderr": proc.stderr.strip()[-2000:],
    }


def loader(kind: str, path: Path, *extra: str) -> list[str]:
    return [str(BIN / "hokensha-load"), kind, str(path), "--quiet", "--lang", "en", *extra]  # the counts parsed


def parse_counts(summary: str) -> dict[str, int]:
    m = _SUMMARY.search(summary)
    if not m:
        return {}
    return {
        k: int(v.replace(",", ""))
        for k, v in zip(("accepted", "rejected", "unchanged"), m.groups(), strict=True)
        if v is not None
    }


def dry_run(path: Path) -> dict[str, Any]:
    result = run_measured(loader("eligibility", path, "--dry-run"))
    result.update(parse_counts(result["stdout"]))
    log(f"dry run {path.name}: {result['seconds']} s, peak RSS {result['peak_rss_mib']} MiB")
    return result


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeakRss(threading.Thread):
    """Samples a process tree's RSS (the server and its workers) until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                return


@contextmanager
def server(env: dict[str, str]) -> Iterator[tuple[str, PeakRss]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = OUT / "server.log"
    with log_path.open("w") as server_log:
        proc = subprocess.Popen(
            [str(BIN / "shikaku-server"), "--port", str(port), "--no-migrate"],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"shikaku-server did not start; see {log_path}")
                time.sleep(0.2)
            sampler = PeakRss(proc.pid)
            sampler.start()
            yield url, sampler
            sampler.stopped.set()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def fresh_server() -> Iterator[tuple[str, str, PeakRss]]:
    """A fresh database (migrated, one insurer token for every test insurer) and a server on it."""
    recreate_database(SERVER_DB)
    env = {
        **os.environ,
        "SHIKAKU_DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1/{SERVER_DB}",
        "SHIKAKU_LOG_LEVEL": "WARNING",
    }
    env.pop("SHIKAKU_REDIS_URL", None)
    subprocess.run([str(BIN / "shikaku-admin"), "migrate"], env=env, check=True, capture_output=True)
    numbers = [arg for i in default_insurers() for arg in ("--number", i.number)]
    added = subprocess.run(
        [str(BIN / "shikaku-admin"), "insurer", "add", *numbers, "--name", "bench insurers"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token = added.stdout.strip().splitlines()[-1]
    with server(env) as (url, sampler):
        yield url, token, sampler


def tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of a process and its children so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def backends_cpu(dbname: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to ``dbname`` (this machine's
    /proc; not the WAL writer, checkpointer and background writer, which serve every database)."""
    with pg() as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
        pids = [pid for (pid,) in cur.fetchall()]
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def upload(path: Path, rows: int, url: str, token: str, sampler: PeakRss | None = None) -> dict[str, Any]:
    server0 = tree_cpu(sampler.proc) if sampler else 0.0
    pg0 = backends_cpu(SERVER_DB)
    result = run_measured(loader("eligibility", path, "--server", url, "--token", token))
    server_cpu = round(tree_cpu(sampler.proc) - server0, 2) if sampler else None
    pg_cpu = round(backends_cpu(SERVER_DB) - pg0, 2)  # backends that ended meanwhile are missed
    result.update(parse_counts(result["stdout"]))
    log(f"upload {path.name}: exit {result['exit_code']}, {result['seconds']} s, peak RSS {result['peak_rss_mib']} MiB")
    if result["exit_code"] not in (0, 1):
        raise RuntimeError(f"upload failed: {result['stderr']}")
    return {
        "rows": rows,
        "seconds": result["seconds"],
        "rows_per_s": round(rows / result["seconds"]),
        "accepted": result.get("accepted"),
        "rejected": result.get("rejected"),
        "unchanged": result.get("unchanged"),
        "loader_peak_rss_mib": result["peak_rss_mib"],
        "cpu_s": {"loader": result["cpu_s"], "server": server_cpu, "postgresql_backends": pg_cpu},
        "summary": result["stdout"],
    }


def bench_server(large: Path, large_rows: int, small: Path, small_rows: int) -> dict[str, Any]:
    """(b) the loader end to end against shikaku-server on PostgreSQL, each file on a fresh database."""
    with fresh_server() as (url, token, sampler):
        small_up = upload(small, small_rows, url, token, sampler)
        small_up["server_peak_rss_mib"] = round(sampler.peak / 2**20, 1)
    with fresh_server() as (url, token, sampler):
        up = upload(large, large_rows, url, token, sampler)
        up["server_peak_rss_mib"] = round(sampler.peak / 2**20, 1)
        again = upload(large, large_rows, url, token)
    return {"upload": up, "duplicate_reupload": again, "small_upload": small_up}


# ---------------------------------------------------------------- report


def paragraph(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Measured {r['date']} on {m['cpus']} CPUs, {m['memory_gib']} GiB RAM, PostgreSQL {m['postgresql']}, "
        f"Python {m['python']}; file of {r['rows']:,} eligibility rows ({r['file_mib']} MiB, UTF-8), "
        f"generated by `testbed.population`.",
        "",
        "| measure | rows/s | time | loader peak RSS |",
        "|---|---:|---:|---:|",
        f"| (a) `COPY` into a plain typed table | {r['copy']['rows_per_s']:,} | {r['copy']['seconds']} s | – |",
    ]
    c = r["copy_project"]
    lines.append(
        "| (c) `COPY` of the same persons into `insured` + `eligibility_period` (indexes, foreign key) "
        f"| {c['rows_per_s']:,} | {c['seconds']} s ({c['persons']:,} persons; "
        f"{c['seconds_scaled_to_file']} s scaled to the file) | – |"
    )
    srv = r.get("server")
    if srv:
        u = srv["upload"]
        lines.append(
            f"| (b) `hokensha-load` upload, end to end (validate, apply, commit) | {u['rows_per_s']:,} "
            f"| {u['seconds']} s | {u['loader_peak_rss_mib']} MiB |"
        )
    d = r["dry_run"]
    lines.append(
        f"| `hokensha-load --dry-run` (local validation only) | {d['large']['rows_per_s']:,} | "
        f"{d['large']['seconds']} s | {d['large']['peak_rss_mib']} MiB |"
    )
    lines.append("")
    if srv:
        dup = srv["duplicate_reupload"]
        lines.append(
            f"Ratio (b)/(a): **{r['ratio_upload_to_copy']}** — the end-to-end load runs at that fraction "
            f"of raw `COPY` speed; (b) against (c), the schema's own limit: "
            f"**{r['ratio_upload_to_copy_project']}** "
            f"(server peak RSS {srv['upload']['server_peak_rss_mib']} MiB). "
            f"Re-sending the same file (answered `duplicate: true`, nothing changed) took "
            f"{dup['seconds']} s."
        )
    else:
        lines.append("(b) not measured in this run (`--skip-server`).")
    small, large = r["small_rows"], r["rows"]
    mem = (
        f"Loader peak RSS, {small:,} vs {large:,} rows: dry run {d['small']['peak_rss_mib']} vs "
        f"{d['large']['peak_rss_mib']} MiB"
    )
    if srv:
        mem += f"; upload {srv['small_upload']['loader_peak_rss_mib']} vs {srv['upload']['loader_peak_rss_mib']} MiB"
    lines.append(mem + " — flat in file size (the file is read in 256 KiB chunks and never held).")
    if srv:
        cpu = srv["upload"]["cpu_s"]
        lines.append(
            f"CPU seconds of the upload of {large:,} rows: loader {cpu['loader']}, server {cpu['server']}, "
            f"its PostgreSQL backends {cpu['postgresql_backends']} (on {m['cpus']} cores)."
        )
        lines.append(
            f"Server peak RSS (the whole process), {small:,} vs {large:,} rows: "
            f"{srv['small_upload']['server_peak_rss_mib']} vs {srv['upload']['server_peak_rss_mib']} MiB."
        )
    return "\n".join(lines)


def write_doc(text: str) -> None:
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    block = f"{start}\n{text}\n{end}"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip("\n") + "\n\n## Benchmark results\n\n" + block + "\n"
    DOC.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-server", action="store_true", help="only COPY and the dry runs")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/loader.md")
    parser.add_argument("--db-prefix", default="shikaku_bench", help="names of the scratch databases")
    args = parser.parse_args(argv)
    global COPY_DB, SERVER_DB, PROJECT_DB
    COPY_DB, SERVER_DB, PROJECT_DB = args.db_prefix, f"{args.db_prefix}_srv", f"{args.db_prefix}_tables"
    OUT.mkdir(parents=True, exist_ok=True)

    large = OUT / f"eligibility_{args.rows}.csv"
    small = OUT / f"eligibility_{args.small_rows}.csv"
    large_rows = make_file(large, args.rows, args.seed)
    small_rows = make_file(small, args.small_rows, args.seed)  # same people: a prefix of the large file

    with pg() as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        (pg_version,) = cur.fetchone()
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(),
            "postgresql": pg_version.split()[0],
        },
        "rows": large_rows,
        "small_rows": small_rows,
        "file_mib": round(large.stat().st_size / 2**20, 1),
    }
    result["copy"] = bench_copy(large, large_rows)
    result["copy_project"] = bench_copy_project(large, large_rows)
    dry_small, dry_large = dry_run(small), dry_run(large)
    for d, n in ((dry_small, small_rows), (dry_large, large_rows)):
        d["rows_per_s"] = round(n / d["seconds"])
    result["dry_run"] = {"small": dry_small, "large": dry_large}
    if not args.skip_server:
        result["server"] = bench_server(large, large_rows, small, small_rows)
        result["ratio_upload_to_copy"] = round(
            result["server"]["upload"]["rows_per_s"] / result["copy"]["rows_per_s"], 3
        )
        result["ratio_upload_to_copy_project"] = round(
            result["copy_project"]["seconds_scaled_to_file"] / result["server"]["upload"]["seconds"], 3
        )
    result["rss_growth_mib"] = {"dry_run": round(dry_large["peak_rss_mib"] - dry_small["peak_rss_mib"], 1)}
    if "server" in result:
        s = result["server"]
        result["rss_growth_mib"]["upload"] = round(
            s["upload"]["loader_peak_rss_mib"] - s["small_upload"]["loader_peak_rss_mib"], 1
        )
        result["rss_growth_mib"]["server"] = round(
            s["upload"]["server_peak_rss_mib"] - s["small_upload"]["server_peak_rss_mib"], 1
        )
    text = json.dumps(result, ensure_ascii=False, indent=2)
    (OUT / "loader_bench.json").write_text(text + "\n", encoding="utf-8")
    print(text)
    if not args.no_doc:
        write_doc(paragraph(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
