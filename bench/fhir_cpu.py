"""Server CPU per request, FHIR eligibility vs the JSON by-number lookup, in one process (issue 16).

The app is driven through raw ASGI calls (no socket, no HTTP parsing, no load generator on the
same cores), so ``time.process_time`` measures the server's own work per request — steadier
than ``wrk`` on a shared machine. Needs the database that ``bench.fhir_bench`` leaves behind
(``shikaku_bench_fhir``) and a Redis:

    .venv/bin/python -m bench.fhir_cpu [--people 300]

Reports the JSON lookup (its cache warm), FHIR at each answer's first sight in this process (the
response validated by its R4B model: ``fhir/answers.py``) and FHIR afterwards; medians of 3
alternating rounds. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import time
from typing import Any

import orjson
from fastapi import FastAPI

from bench.common import PG, REDIS, asgi_post, lookup_query
from bench.fhir_bench import fhir_request
from bench.server_bench import FACILITY
from shikaku_server.app import create_app
from shikaku_server.auth.service import add_facility
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from testbed.population import iter_people

JSON_DOOR = ("/v1/eligibility/by-number", b"application/json")
FHIR_DOOR = ("/fhir/R4/CoverageEligibilityRequest", b"application/fhir+json")


async def call(app: FastAPI, token: str, door: tuple[str, bytes], body: bytes) -> None:
    path, content_type = door
    status, _ = await asgi_post(app, path, body, token=token, content_type=content_type)
    assert status == 200, status


async def per_request_us(app: FastAPI, token: str, door: tuple[str, bytes], bodies: list[bytes], times: int) -> float:
    start = time.process_time()
    for _ in range(times):
        for body in bodies:
            await call(app, token, door, body)
    return (time.process_time() - start) / (times * len(bodies)) * 1e6


async def run(app: FastAPI, token: str, queries: list[dict[str, Any]]) -> dict[str, Any]:
    json_bodies = [orjson.dumps(q) for q in queries]
    fhir_bodies = [orjson.dumps(fhir_request(q)) for q in queries]
    async with app.router.lifespan_context(app):
        await per_request_us(app, token, JSON_DOOR, json_bodies, 1)  # fills the Redis cache
        first = await per_request_us(app, token, FHIR_DOOR, fhir_bodies, 1)
        rounds = [
            (
                await per_request_us(app, token, JSON_DOOR, json_bodies, 2),
                await per_request_us(app, token, FHIR_DOOR, fhir_bodies, 2),
            )
            for _ in range(3)
        ]
    json_us = statistics.median(j for j, _ in rounds)
    fhir_us = statistics.median(f for _, f in rounds)
    return {
        "people": len(queries),
        "json_us": round(json_us),
        "fhir_us": round(fhir_us),
        "fhir_first_sight_us": round(first),
        "ratio": round(json_us / fhir_us, 3),
        "ratio_first_sight": round(json_us / first, 3),
        "rounds": [round(j / f, 3) for j, f in rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=300, help="distinct people asked")
    args = parser.parse_args()
    url = f"{PG}/shikaku_bench_fhir"
    with transaction(make_session_factory(make_engine(url))) as s:
        token = add_facility(s, code=FACILITY, name="bench clinic (cpu)", role="reception")
    today = dt.date.today()
    sample = [p for p in iter_people(20_000, seed=7) if p.is_valid_on(today)]
    random.Random(2).shuffle(sample)
    queries = [lookup_query(p) for p in sample[: args.people]]
    # one token drives every request: limits high enough never to refuse (still counted)
    for what in ("LOOKUPS", "LOOKUP_FAILURES"):
        for who in ("TOKEN", "FACILITY"):
            os.environ[f"SHIKAKU_RATE_LIMIT_{what}_PER_{who}"] = "1000000000"
    app = create_app(Settings(database_url=url, redis_url=REDIS, log_level="WARNING"))
    print(json.dumps(asyncio.run(run(app, token, queries))))


if __name__ == "__main__":
    main()
