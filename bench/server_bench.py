"""Server benchmarks (issue: central server; card path).

lookup: by-number lookups/s through the full stack (auth, validation, cache, access log, commit)
        vs the bare ``/healthz`` endpoint of the same server process, same run, same wrk settings,
        on PostgreSQL + Redis with N insured loaded (default 1,000,000).
card:   card checks/s (challenge + by-card with a PIN signature over the nonce, certificate chain
        cached) vs by-number lookups/s, both driven by the same client in the same run
        (``bench.card_load``: several processes, the next challenge fetched while a check is in
        flight), with the server-side CPU per operation (app, and the bench database's backends
        + the bench Redis); ``--baseline COMMIT`` runs COMMIT's server beside this tree's on the
        same database, alternating, for a before/after in one run.

    .venv/bin/python bench/server_bench.py --people 1000000
    flock /tmp/shikaku-bench.lock .venv/bin/python -m bench.server_bench --reuse-db --skip-card --rounds 3
        (keeps the loaded population between runs; alternates /healthz and lookups, medians)
    .venv/bin/python -m bench.server_bench --people 25000 --reuse-db --card-only --baseline main --card-rounds 3
Prints one JSON document; figures go into bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from cryptography.hazmat.primitives import serialization

from bench import card_load
from bench.common import REDIS, ROOT, fresh_database, lookup_query, percentile, server, wrk
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.pki import TestCA
from testbed.population import default_insurers, iter_people, write_eligibility_csv

FACILITY = "0110113719"


def load(
    url: str, people: int, workdir: Path, *, distinct: int = 20_000, write_csv: bool = True
) -> tuple[str, list[dict[str, Any]], dict[str, float]]:
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with transaction(factory) as s:
        insurer_token = add_insurer(s, numbers=[i.number for i in default_insurers()], name="bench insurer")
        facility_token = add_facility(s, code=FACILITY, name="bench clinic", role="reception")
    csv_path = workdir / "eligibility.csv"
    rows = write_eligibility_csv(csv_path, iter_people(people, seed=7)) if write_csv else 0
    today = dt.date.today()
    sample = [p for p in iter_people(min(people, 200_000), seed=7) if p.is_valid_on(today)]
    random.Random(1).shuffle(sample)
    queries = [lookup_query(p) for p in sample[:distinct]]
    people_for_cards = sample[20_000:20_200]
    return facility_token, queries, {"rows": rows, "insurer_token": insurer_token, "cards": people_for_cards}  # type: ignore[dict-item]


def upload(base: str, token: str, path: Path) -> dict[str, Any]:
    def chunks() -> Iterator[bytes]:
        with path.open("rb") as fh:
            while chunk := fh.read(256 * 1024):
                yield chunk

    start = time.perf_counter()
    r = httpx.post(
        f"{base}/v1/uploads?kind=eligibility",
        content=chunks(),
        timeout=3600,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    r.raise_for_status()
    elapsed = time.perf_counter() - start
    body = r.json()
    return {
        "accepted": body["accepted"],
        "rejected": body["rejected"],
        "seconds": round(elapsed, 1),
        "rows_per_s": round((body["accepted"] + body["rejected"] + body["unchanged"]) / elapsed),
    }


def wrk_script(path: Path, token: str, queries: list[dict[str, Any]]) -> Path:
    bodies = ",\n".join(json.dumps(json.dumps(q)) for q in queries)
    path.write_text(
        "local bodies = {\n" + bodies + "\n}\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        "  return wrk.format('POST', '/v1/eligibility/by-number', {['Content-Type']='application/json',"
        f" ['Authorization']='Bearer {token}'}}, bodies[math.random(#bodies)])\n"
        "end\n"
    )
    return path


def _server_processes(base: str) -> list[psutil.Process]:
    """The server listening at ``base``: its ``shikaku-server`` process and every worker under it
    (not the bench's own client processes, nor another server)."""
    port = base.rsplit(":", 1)[1]
    out: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if any(part.endswith("shikaku-server") for part in cmdline) and port in cmdline:
            out += [child, *child.children(recursive=True)]
    return out


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in processes:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = t.user + t.system
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between the two samples (a process started in between counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class _Stores:
    """The PostgreSQL and Redis processes that serve the bench: the backends connected to the
    bench database (sampled at both ends of a phase) and the bench Redis. On a machine shared
    with other work, every ``postgres``/``redis-server`` process would count theirs too."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.redis_pid = int(redis.Redis.from_url(REDIS).info("server")["process_id"])

    def processes(self) -> list[psutil.Process]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            pids = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            out = []
            for pid in [*pids, self.redis_pid]:
                try:
                    out.append(psutil.Process(pid))
                except psutil.Error:
                    continue
            return out


def register_cards(base: str, token: str, people: list[Any], n: int = 50, *, ecdsa: bool = False) -> list[Any]:
    """A test CA made a trust anchor of the server's database, and a card registered (linked) for
    each of the first ``n`` people (all valid today); ECDSA P-384 cards (the 2026 card) with
    ``ecdsa``, else RSA-2048."""
    ca = TestCA.create_ecdsa() if ecdsa else TestCA.create()
    from shikaku_server.card.service import add_trust_anchor
    from shikaku_server.config import get_settings

    factory = make_session_factory(make_engine(get_settings().database_url))
    with transaction(factory) as s:
        add_trust_anchor(s, ca.pem)
    headers = {"Authorization": f"Bearer {token}"}
    issued = []
    # the ECDSA cards go to other people: a person with a live RSA card of an earlier run (same
    # database) gets no second card
    chosen = people[100 : 100 + n] if ecdsa else people[:n]
    with httpx.Client(base_url=base, headers=headers) as client:
        for i, p in enumerate(chosen):
            card = ca.issue_auth_certificate(key_index=i % 8)
            ch = client.post("/v1/card/challenges").json()
            sig = card.sign(base64.b64decode(ch["nonce"]))
            r = client.post(
                "/v1/card/registrations",
                json={
                    "challenge_id": ch["challenge_id"],
                    "certificate": base64.b64encode(card.der).decode(),
                    "signature": base64.b64encode(sig).decode(),
                    "basic_facts": {
                        "name": p.name,
                        "birth_date": p.birth_date.isoformat(),
                        "sex": p.sex,
                        "address": p.address_on(dt.date.today()),
                    },
                },
            )
            r.raise_for_status()  # every sampled person is valid today: each registration links
            issued.append(card)
    return issued


async def check_card(client: httpx.AsyncClient, card: Any, signing: list[float] | None = None) -> httpx.Response:
    """One card check as the kiosk makes it: a challenge, the PIN signature over its nonce, by-card
    (the client CPU spent signing is added to ``signing[0]``)."""
    challenge = await client.post("/v1/card/challenges")
    if challenge.status_code != 200:  # refused or unavailable: the check's answer (an error)
        return challenge
    ch = challenge.json()
    t = time.process_time()
    sig = card.sign(base64.b64decode(ch["nonce"]))
    if signing is not None:
        signing[0] += time.process_time() - t
    return await client.post(
        "/v1/eligibility/by-card",
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": base64.b64encode(card.der).decode(),
            "auth_method": "pin",
            "signature": base64.b64encode(sig).decode(),
        },
    )


def _phase(base: str, stores: _Stores, jobs: list[card_load.Job]) -> dict[str, Any]:
    """One measured phase: the client processes' jobs, and the CPU per operation of the client,
    the server at ``base`` (app processes) and PostgreSQL + Redis (``_Stores``)."""
    server0 = _cpu_seconds(_server_processes(base))
    store_procs = stores.processes()
    store0 = _cpu_seconds(store_procs)
    reports = card_load.drive(jobs)
    server = _cpu_seconds(_server_processes(base))
    store = _cpu_seconds([*store_procs, *stores.processes()])  # a backend opened meanwhile counts whole
    n = sum(r["n"] for r in reports)
    wall = max(r["wall_s"] for r in reports)
    latencies = [x for r in reports for x in r["latencies"]]
    errors = [e for r in reports for e in r["errors"]]
    if errors or not n:
        raise RuntimeError(f"the phase failed: {errors}")
    client_cpu = sum(r["cpu_s"] for r in reports)
    out: dict[str, Any] = {
        "per_s": round(n / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "n": n,
        "client_cpu_per_s": round(client_cpu / wall, 2),  # cores the client processes kept busy
        "client_cpu_ms_per_op": round(client_cpu * 1000 / n, 3),
        "server_cpu_ms_per_op": round(_cpu_delta(server0, server) * 1000 / n, 3),
        "db_redis_cpu_ms_per_op": round(_cpu_delta(store0, store) * 1000 / n, 3),
    }
    out["reconnects"] = sum(r["reconnects"] for r in reports)  # connections the server closed
    signing = sum(r["signing_s"] for r in reports)
    if signing:
        out["client_signing_ms_per_op"] = round(signing * 1000 / n, 3)
    return out


def card_bench(
    servers: dict[str, str],
    url: str,
    token: str,
    queries: list[dict[str, Any]],
    cards: list[Any],
    seconds: float,
    *,
    processes: int = 3,
    flows: int = 4,
    rounds: int = 1,
    ecdsa: bool = False,
) -> dict[str, Any]:
    """Card checks vs by-number lookups, driven by ``card_load`` (several client processes, the
    next challenge fetched while a check is in flight), for each server of ``servers`` (label →
    base URL, e.g. a baseline commit and this tree, on the same database and Redis), alternating
    in ``rounds``; per server the medians and the capacity ratio (server-side CPU per lookup over
    per check: app + PostgreSQL + Redis)."""
    first = next(iter(servers.values()))
    issued = register_cards(first, token, cards, ecdsa=ecdsa)
    host_port = {label: base.removeprefix("http://").rsplit(":", 1) for label, base in servers.items()}
    card_material = [
        (
            c.der,
            c.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        for c in issued
    ]
    stores = _Stores(url)

    def jobs(label: str, kind: str, duration: float) -> list[card_load.Job]:
        host, port = host_port[label]
        return [
            card_load.Job(
                host=host,
                port=int(port),
                token=token,
                kind=kind,
                seconds=duration,
                flows=flows if kind == "card" else flows * 2,
                cards=card_material if kind == "card" else [],
                queries=queries if kind == "lookup" else [],
                seed=i,
            )
            for i in range(processes)
        ]

    label = next(iter(servers))
    host, port = host_port[label]
    card_load.drive(  # the cache filled with every person asked (the lookups measured are hits)
        [
            card_load.Job(host=host, port=int(port), token=token, kind="warm", seconds=0, flows=8, queries=chunk)
            for chunk in (queries[i::processes] for i in range(processes))
        ]
    )
    for label in servers:  # warm-up: connections opened, statements prepared, chains cached
        card_load.drive(jobs(label, "lookup", 2))
        card_load.drive(jobs(label, "card", 2))
    measured: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    for _ in range(rounds):
        for label, base in servers.items():
            by_number = _phase(base, stores, jobs(label, "lookup", seconds))
            card_checks = _phase(base, stores, jobs(label, "card", seconds))
            measured[label].append({"by_number": by_number, "card_checks": card_checks})
    result: dict[str, Any] = {
        "client": {"processes": processes, "card_flows_per_process": flows, "lookup_flows_per_process": flows * 2},
        "card_key": "ECDSA P-384" if ecdsa else "RSA-2048",
        "registered_cards": len(issued),
    }
    for label, runs in measured.items():
        summary: dict[str, Any] = {}
        for kind in ("by_number", "card_checks"):
            keys = runs[0][kind].keys()
            summary[kind] = {k: statistics.median(r[kind][k] for r in runs) for k in keys}
        summary["ratio_card_vs_number"] = round(summary["card_checks"]["per_s"] / summary["by_number"]["per_s"], 3)
        # lookups' server-side CPU (app + PostgreSQL + Redis) per op over a card check's: what the
        # ratio of the rates would be if the server alone set the pace
        ratios = []
        for r in runs:
            cost = {
                k: r[k]["server_cpu_ms_per_op"] + r[k]["db_redis_cpu_ms_per_op"] for k in ("by_number", "card_checks")
            }
            ratios.append(cost["by_number"] / cost["card_checks"])
        summary["ratio_server_cpu_number_vs_card"] = round(statistics.median(ratios), 3)
        if rounds > 1:
            summary["rounds_ratio_server_cpu"] = [round(x, 3) for x in ratios]
        result[label] = summary
    return result


def _loaded_rows(name: str) -> int:
    """Eligibility rows already in the bench database ``name`` (0 when it does not exist)."""
    import sqlalchemy as sa

    from bench.common import PG

    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
    admin.dispose()
    if not exists:
        return 0
    engine = sa.create_engine(f"{PG}/{name}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM eligibility_period")).scalar_one())
    except sa.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def _baseline_tree(commit: str, work: Path) -> tuple[str, str]:
    """The short hash and the source tree of ``commit`` (``git archive``), for a baseline server
    beside this one."""
    short = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", commit], check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = work / f"baseline-{short}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", short], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return short, str(tree)


def _cached_bundles() -> int:
    """Every cache miss stores one bundle (TTL 5 min > the run): the entries are the misses."""
    return sum(1 for _ in redis.Redis.from_url(REDIS).scan_iter("shikaku:v:*", count=10_000))


def warm_every_key(base: str, token: str, queries: list[dict[str, Any]], concurrency: int) -> float:
    """Each distinct query once (so the rounds measure lookups on a warm cache, not the random
    draw's first misses); the seconds it took."""

    async def run() -> None:
        pending = iter(queries)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

            async def flow() -> None:
                for query in pending:
                    (await client.post("/v1/eligibility/by-number", json=query)).raise_for_status()

            await asyncio.gather(*(flow() for _ in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(run())
    return round(time.perf_counter() - started, 1)


def lookup_bench(
    base: str, work: Path, facility_token: str, queries: list[dict[str, Any]], args: Any
) -> dict[str, Any]:
    """By-number lookups vs ``/healthz`` with wrk, alternating in ``--rounds``; medians."""
    report: dict[str, Any] = {}
    script = wrk_script(work / "lookup.lua", facility_token, queries)
    wrk(f"{base}/healthz", duration=3, connections=args.connections)  # warm-up
    wrk(base, duration=5, connections=args.connections, script=script)  # warm-up (fills the cache)
    if args.warm_every_key:  # the steady state: each person's bundle cached once before measuring
        report["warm_every_key_s"] = warm_every_key(base, facility_token, queries, args.connections)
    misses_before = _cached_bundles()
    stores = _Stores(os.environ["SHIKAKU_DATABASE_URL"])

    def measured(**kwargs: Any) -> dict[str, float]:
        """One wrk phase, with the server side's CPU per request (app workers + the bench
        database's backends + Redis): what the machine spends per request whatever else runs."""
        processes = [*_server_processes(base), *stores.processes()]
        before = _cpu_seconds(processes)
        result = wrk(duration=args.duration, connections=args.connections, **kwargs)
        cpu = _cpu_delta(before, _cpu_seconds(processes))
        result["server_cpu_ms_per_request"] = round(1000 * cpu / (result["requests_per_s"] * args.duration), 4)
        return result

    rounds = []
    for _ in range(args.rounds):  # alternating: both kinds see the same background load
        bare = measured(url=f"{base}/healthz")
        lookups = measured(url=base, script=script)
        rounds.append({"bare_healthz": bare, "by_number": lookups})
    for kind in ("bare_healthz", "by_number"):
        report[kind] = {key: statistics.median(r[kind][key] for r in rounds) for key in rounds[0][kind]}
    report["ratio_lookup_vs_bare"] = round(
        report["by_number"]["requests_per_s"] / report["bare_healthz"]["requests_per_s"], 3
    )
    # the capacity ratio: server CPU per /healthz over per lookup, median of the rounds (the
    # throughput ratio above also carries wrk's share of the two cores and the machine's noise)
    report["ratio_server_cpu_bare_vs_lookup"] = round(
        statistics.median(
            r["bare_healthz"]["server_cpu_ms_per_request"] / r["by_number"]["server_cpu_ms_per_request"]
            for r in rounds
        ),
        3,
    )
    lookups = sum(r["by_number"]["requests_per_s"] * args.duration for r in rounds)
    misses = _cached_bundles()
    report["cache"] = {
        "bundles_loaded_from_db": misses,
        "bundles_loaded_during_the_rounds": misses - misses_before,
        "lookups_measured_approx": round(lookups),
        "note": "bundles_loaded_from_db includes the warm-up's misses",
    }
    if args.rounds > 1:
        report["rounds"] = [
            {
                "healthz_per_s": r["bare_healthz"]["requests_per_s"],
                "lookups_per_s": r["by_number"]["requests_per_s"],
                "lookup_p99_ms": r["by_number"].get("p99_ms"),
                "ratio": round(r["by_number"]["requests_per_s"] / r["bare_healthz"]["requests_per_s"], 3),
                "server_cpu_ms_healthz": r["bare_healthz"]["server_cpu_ms_per_request"],
                "server_cpu_ms_lookup": r["by_number"]["server_cpu_ms_per_request"],
            }
            for r in rounds
        ]
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--distinct", type=int, default=20_000, help="distinct people queried at random")
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="keep the loaded population of an earlier run with the same --people (skips the upload)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate /healthz and lookups this many times; medians reported"
    )
    parser.add_argument(
        "--warm-every-key",
        action="store_true",
        help="lookup part: query each distinct person once before the rounds (steady state: a warm cache)",
    )
    parser.add_argument("--skip-card", action="store_true", help="only the by-number vs /healthz part")
    parser.add_argument("--db", help="the bench database's name (default: from --people and --reuse-db)")
    parser.add_argument("--card-only", action="store_true", help="only the card checks vs lookups part")
    parser.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="card part: also run the server of COMMIT (git archive of it, same database and Redis), alternating",
    )
    parser.add_argument("--card-rounds", type=int, default=1, help="card part: rounds alternating the servers")
    parser.add_argument("--card-processes", type=int, default=3, help="card part: client processes")
    parser.add_argument("--card-flows", type=int, default=4, help="card part: concurrent card checks per process")
    parser.add_argument("--ecdsa", action="store_true", help="card part: ECDSA P-384 cards (default RSA-2048)")
    args = parser.parse_args()
    name = args.db or (f"shikaku_bench_lookup_{args.people}" if args.reuse_db else "shikaku_bench_lookup")
    loaded = _loaded_rows(name) if args.reuse_db else 0
    from bench.common import PG

    url = f"{PG}/{name}" if loaded else fresh_database(name)
    redis.Redis.from_url(REDIS).flushdb()
    os.environ["SHIKAKU_DATABASE_URL"] = url
    work = Path(tempfile.mkdtemp(prefix="shikaku-bench-"))
    facility_token, queries, extra = load(url, args.people, work, distinct=args.distinct, write_csv=not loaded)
    report: dict[str, Any] = {
        "people": args.people,
        "eligibility_rows": extra["rows"] if not loaded else "(reused database)",
        "eligibility_period_rows_in_db": loaded or None,
        "distinct_people_queried": len(queries),
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
    }
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(server(url, REDIS, workers=args.workers))
        if not loaded:
            report["upload"] = upload(base, str(extra["insurer_token"]), work / "eligibility.csv")
        if not args.card_only:
            report |= lookup_bench(base, work, facility_token, queries, args)
        if not args.skip_card:
            servers = {"this_tree": base}
            if args.baseline:
                short, tree = _baseline_tree(args.baseline, work)
                baseline = stack.enter_context(server(url, REDIS, workers=args.workers, extra_env={"PYTHONPATH": tree}))
                servers = {f"baseline_{short}": baseline, "this_tree": base}
            cards: list[Any] = extra["cards"]  # type: ignore[assignment]
            report["card"] = card_bench(
                servers,
                url,
                facility_token,
                queries,
                cards,
                args.duration,
                processes=args.card_processes,
                flows=args.card_flows,
                rounds=args.card_rounds,
                ecdsa=args.ecdsa,
            )
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
