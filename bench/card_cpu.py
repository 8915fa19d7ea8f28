"""The app's own CPU per card check vs per by-number lookup, in one process (issue 13).

The app is driven through raw ASGI calls (no socket, no HTTP parsing, no load generator on the
same cores), as ``bench.fhir_cpu`` does, so ``time.process_time`` is the app's work per
operation (the client's signatures subtracted). PostgreSQL's and Redis's own CPU is not in it:
``bench.server_bench`` measures those. ``--profile`` prints the card check's cProfile (top
functions by own time). Builds its own small database (``shikaku_bench_cardcpu``):

    .venv/bin/python -m bench.card_cpu [--people 2000] [--checks 2000] [--ecdsa] [--profile]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI

from bench.common import REDIS, asgi_post, fresh_database, lookup_query
from bench.server_bench import FACILITY
from shikaku_server.app import create_app
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.card.service import add_trust_anchor
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.pki import TestCA
from testbed.population import default_insurers, iter_people, write_eligibility_csv


class Checks:
    def __init__(self, app: FastAPI, token: str, cards: list[Any]) -> None:
        self.app, self.token, self.cards = app, token, cards
        self.rng = random.Random(5)
        self.signing = 0.0

    async def one(self) -> None:
        status, raw = await asgi_post(self.app, "/v1/card/challenges", b"", token=self.token)
        assert status == 200, raw
        ch = orjson.loads(raw)
        card = self.rng.choice(self.cards)
        t = time.process_time()
        signature = card.sign(base64.b64decode(ch["nonce"]))
        self.signing += time.process_time() - t
        body = orjson.dumps(
            {
                "challenge_id": ch["challenge_id"],
                "certificate": base64.b64encode(card.der).decode(),
                "auth_method": "pin",
                "signature": base64.b64encode(signature).decode(),
            }
        )
        status, raw = await asgi_post(
            self.app, "/v1/eligibility/by-card", body, token=self.token, content_type=b"application/json"
        )
        assert status == 200, raw

    async def per_op_us(self, n: int) -> float:
        self.signing = 0.0
        start = time.process_time()
        for _ in range(n):
            await self.one()
        return (time.process_time() - start - self.signing) / n * 1e6


async def lookups_us(app: FastAPI, token: str, bodies: list[bytes]) -> float:
    start = time.process_time()
    for body in bodies:
        status, raw = await asgi_post(
            app, "/v1/eligibility/by-number", body, token=token, content_type=b"application/json"
        )
        assert status == 200, raw
    return (time.process_time() - start) / len(bodies) * 1e6


async def run(app: FastAPI, tokens: dict[str, str], people: list[Any], args: Any, ca: TestCA) -> dict[str, Any]:
    async with app.router.lifespan_context(app):
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "eligibility.csv"
            write_eligibility_csv(path, people)
            csv = path.read_bytes()
        status, raw = await asgi_post(
            app, "/v1/uploads?kind=eligibility", csv, token=tokens["insurer"], content_type=b"text/csv"
        )
        assert status == 200, raw
        today = dt.date.today()
        valid = [p for p in people if p.is_valid_on(today)]
        cards = []
        for i, p in enumerate(valid[:50]):
            card = ca.issue_auth_certificate(key_index=i % 8)
            status, raw = await asgi_post(app, "/v1/card/challenges", b"", token=tokens["facility"])
            ch = orjson.loads(raw)
            body = {
                "challenge_id": ch["challenge_id"],
                "certificate": base64.b64encode(card.der).decode(),
                "signature": base64.b64encode(card.sign(base64.b64decode(ch["nonce"]))).decode(),
                "basic_facts": {
                    "name": p.name,
                    "birth_date": p.birth_date.isoformat(),
                    "sex": p.sex,
                    "address": p.address_on(today),
                },
            }
            status, raw = await asgi_post(
                app,
                "/v1/card/registrations",
                orjson.dumps(body),
                token=tokens["facility"],
                content_type=b"application/json",
            )
            assert status == 200, raw
            cards.append(card)
        queries = [orjson.dumps(lookup_query(p)) for p in valid[: args.checks]]
        checks = Checks(app, tokens["facility"], cards)
        await lookups_us(app, tokens["facility"], queries)  # the cache filled
        await checks.per_op_us(200)  # chains cached, statements prepared
        rounds = []
        for _ in range(3):
            rounds.append((await lookups_us(app, tokens["facility"], queries), await checks.per_op_us(args.checks)))
        out: dict[str, Any] = {
            "card_key": "ECDSA P-384" if args.ecdsa else "RSA-2048",
            "lookup_us": round(statistics.median(r[0] for r in rounds)),
            "card_check_us": round(statistics.median(r[1] for r in rounds)),
            "rounds_ratio": [round(a / b, 3) for a, b in rounds],
        }
        out["ratio_app_cpu"] = round(out["lookup_us"] / out["card_check_us"], 3)
        if args.profile:
            profile = cProfile.Profile(time.process_time)  # CPU, not waits
            profile.enable()
            await checks.per_op_us(args.checks)
            profile.disable()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats(args.sort).print_stats(args.top)
            out["profile"] = text.getvalue().splitlines()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--checks", type=int, default=1000, help="card checks (and lookups) per round")
    parser.add_argument("--ecdsa", action="store_true", help="ECDSA P-384 cards (default RSA-2048)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="the profile's order (cProfile: tottime, cumulative …)")
    parser.add_argument("--top", type=int, default=35, help="functions the profile lists")
    parser.add_argument("--db", default="shikaku_bench_cardcpu")
    args = parser.parse_args()
    url = fresh_database(args.db)
    upgrade(url)
    ca = TestCA.create_ecdsa() if args.ecdsa else TestCA.create()
    with transaction(make_session_factory(make_engine(url))) as s:
        tokens = {
            "facility": add_facility(s, code=FACILITY, name="bench clinic (cpu)", role="reception"),
            "insurer": add_insurer(s, numbers=[i.number for i in default_insurers()], name="bench insurer"),
        }
        add_trust_anchor(s, ca.pem)
    for name in ("LOOKUPS", "LOOKUP_FAILURES", "CHALLENGES", "REGISTRATIONS"):
        for who in ("TOKEN", "FACILITY"):
            os.environ[f"SHIKAKU_RATE_LIMIT_{name}_PER_{who}"] = "1000000000"
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    people = list(iter_people(args.people, seed=7))
    app = create_app(Settings(database_url=url, redis_url=REDIS, log_level="WARNING"))
    print(json.dumps(asyncio.run(run(app, tokens, people, args, ca)), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
