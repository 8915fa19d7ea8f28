"""Server benchmarks (issue: central server; card path).

lookup: by-number lookups/s through the full stack (auth, validation, cache, access log, commit)
        vs the bare ``/healthz`` endpoint of the same server process, same run, same wrk settings,
        on PostgreSQL + Redis with N insured loaded (default 1,000,000).
card:   card checks/s (challenge + by-card with a PIN signature over the nonce, certificate chain
        cached) vs by-number lookups/s, both driven by the same Python client in the same run.

    .venv/bin/python bench/server_bench.py --people 1000000
    flock /tmp/shikaku-bench.lock .venv/bin/python -m bench.server_bench --reuse-db --skip-card --rounds 3
        (keeps the loaded population between runs; alternates /healthz and lookups, medians)
Prints one JSON document; figures go into bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.common import REDIS, fresh_database, percentile, server, wrk
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
    queries = [
        {
            "insurer_number": p.insurer_number,
            "symbol": p.symbol,
            "number": p.number,
            "branch": p.branch,
            "birth_date": p.birth_date.isoformat(),
        }
        for p in sample[:distinct]
    ]
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


async def _drive(n_tasks: int, seconds: float, one: Any) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(n_tasks)))
    elapsed = time.perf_counter() - start
    return {
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "n": len(latencies),
    }


def _server_processes() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def _store_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "redis-server")]


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


def register_cards(base: str, token: str, people: list[Any], n: int = 50) -> list[Any]:
    """A test CA made a trust anchor of the server's database, and a card registered (linked) for
    each of the first ``n`` people (all valid today)."""
    ca = TestCA.create()
    from shikaku_server.card.service import add_trust_anchor
    from shikaku_server.config import get_settings

    factory = make_session_factory(make_engine(get_settings().database_url))
    with transaction(factory) as s:
        add_trust_anchor(s, ca.pem)
    headers = {"Authorization": f"Bearer {token}"}
    issued = []
    with httpx.Client(base_url=base, headers=headers) as client:
        for i, p in enumerate(people[:n]):
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


def card_bench(
    base: str, token: str, queries: list[dict[str, Any]], cards: list[Any], seconds: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    issued = register_cards(base, token, cards)
    rng = random.Random(3)

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=30, limits=httpx.Limits(max_connections=16)
        ) as client:

            async def lookup() -> None:
                r = await client.post("/v1/eligibility/by-number", json=rng.choice(queries))
                assert r.status_code == 200

            signing = [0.0]  # client CPU spent on the card's RSA signatures (seconds)

            async def card_check() -> None:
                r = await check_card(client, rng.choice(issued), signing)
                assert r.status_code == 200, r.text

            async def timed(one: Any) -> dict[str, Any]:
                """``_drive`` plus CPU accounting: the client's own CPU (this process: CPU seconds
                per second, 1.0 = one core busy, i.e. the client sets the pace; and per op), and the
                CPU per op of the server's processes (our children: uvicorn and its workers) and of
                PostgreSQL + Redis (every ``postgres``/``redis-server`` process on the machine)."""
                signing[0] = 0.0
                server0, store0 = _cpu_seconds(_server_processes()), _cpu_seconds(_store_processes())
                wall, cpu = time.perf_counter(), time.process_time()
                out = await _drive(8, seconds, one)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                server, store = _cpu_seconds(_server_processes()), _cpu_seconds(_store_processes())
                out["client_cpu_per_s"] = round(cpu / wall, 2)
                out["client_cpu_ms_per_op"] = round(cpu * 1000 / out["n"], 2)
                out["server_cpu_ms_per_op"] = round(_cpu_delta(server0, server) * 1000 / out["n"], 2)
                out["db_redis_cpu_ms_per_op"] = round(_cpu_delta(store0, store) * 1000 / out["n"], 2)
                if signing[0]:
                    out["client_signing_ms_per_op"] = round(signing[0] * 1000 / out["n"], 2)
                return out

            await _drive(8, 2, lookup)  # warm-up
            by_number = await timed(lookup)
            await _drive(8, 2, card_check)
            cards_result = await timed(card_check)
            return {"by_number": by_number, "card_checks": cards_result}

    result = asyncio.run(run())
    result["registered_cards"] = len(issued)
    result["ratio_card_vs_number"] = round(result["card_checks"]["per_s"] / result["by_number"]["per_s"], 3)
    # the same ratio in server capacity: lookups' server-side CPU (app + PostgreSQL + Redis) per op
    # over a card check's, i.e. what the ratio would be if the client were not the limit
    cost = {
        k: result[k]["server_cpu_ms_per_op"] + result[k]["db_redis_cpu_ms_per_op"] for k in ("by_number", "card_checks")
    }
    result["ratio_server_cpu_number_vs_card"] = round(cost["by_number"] / cost["card_checks"], 3)
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
    parser.add_argument("--skip-card", action="store_true", help="only the by-number vs /healthz part")
    args = parser.parse_args()
    name = f"shikaku_bench_lookup_{args.people}" if args.reuse_db else "shikaku_bench_lookup"
    loaded = _loaded_rows(name) if args.reuse_db else 0
    from bench.common import PG

    url = f"{PG}/{name}" if loaded else fresh_database(name)
    redis.Redis.from_url(REDIS).flushdb()
    import os

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
    with server(url, REDIS, workers=args.workers) as base:
        if not loaded:
            report["upload"] = upload(base, str(extra["insurer_token"]), work / "eligibility.csv")
        script = wrk_script(work / "lookup.lua", facility_token, queries)
        wrk(f"{base}/healthz", duration=3, connections=args.connections)  # warm-up
        wrk(base, duration=5, connections=args.connections, script=script)  # warm-up (fills the cache)
        rounds = []
        for _ in range(args.rounds):  # alternating: both kinds see the same background load
            bare = wrk(f"{base}/healthz", duration=args.duration, connections=args.connections)
            lookups = wrk(base, duration=args.duration, connections=args.connections, script=script)
            rounds.append({"bare_healthz": bare, "by_number": lookups})
        for kind in ("bare_healthz", "by_number"):
            report[kind] = {key: statistics.median(r[kind][key] for r in rounds) for key in rounds[0][kind]}
        report["ratio_lookup_vs_bare"] = round(
            report["by_number"]["requests_per_s"] / report["bare_healthz"]["requests_per_s"], 3
        )
        # every cache miss stores one bundle (TTL 5 min > the run): the entries are the misses
        lookups = sum(r["by_number"]["requests_per_s"] * args.duration for r in rounds)
        misses = sum(1 for _ in redis.Redis.from_url(REDIS).scan_iter("shikaku:v:*", count=10_000))
        report["cache"] = {
            "bundles_loaded_from_db": misses,
            "lookups_measured_approx": round(lookups),
            "note": "bundles_loaded_from_db includes the 5 s warm-up's misses",
        }
        if args.rounds > 1:
            report["rounds"] = [
                {
                    "healthz_per_s": r["bare_healthz"]["requests_per_s"],
                    "lookups_per_s": r["by_number"]["requests_per_s"],
                    "lookup_p99_ms": r["by_number"].get("p99_ms"),
                    "ratio": round(r["by_number"]["requests_per_s"] / r["bare_healthz"]["requests_per_s"], 3),
                }
                for r in rounds
            ]
        if not args.skip_card:
            cards: list[Any] = extra["cards"]  # type: ignore[assignment]
            report["card"] = card_bench(base, facility_token, queries, cards, args.duration)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
