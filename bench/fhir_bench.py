"""FHIR facade benchmark (issue 16): a CoverageEligibilityRequest through the whole stack
(``POST /fhir/R4/CoverageEligibilityRequest``: token, the request read (lean model, or R4B),
the by-number lookup, access log, the CoverageEligibilityResponse — validated by its R4B model
once per distinct answer and worker, during the FHIR warm-up, then filled in its typed slots)
as a ratio to the JSON by-number lookup (``POST /v1/eligibility/by-number``)
of the same people, same server processes, same run, same ``wrk`` settings; rounds alternate.

Loopback only and bounded: a scratch PostgreSQL database of ``--people`` insured (default
20,000), Redis, ``shikaku-server --workers 2`` on 127.0.0.1, ``--rounds`` × 2 × ``--duration`` s.

    .venv/bin/python -m bench.fhir_bench --people 20000 --rounds 3 --duration 10
Prints one JSON document; figures go into bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
import redis
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse

from bench.common import REDIS, fresh_database, server, wrk
from bench.server_bench import load, upload, wrk_script
from shikaku_server.fhir import codes as c


def fhir_request(query: dict[str, Any]) -> dict[str, Any]:
    """The CoverageEligibilityRequest that asks what the by-number ``query`` asks (docs/fhir.md)."""
    extensions = [
        {"url": url, "valueString": query[key]}
        for url, key in (
            (c.SYMBOL_EXTENSION, "symbol"),
            (c.NUMBER_EXTENSION, "number"),
            (c.SUBNUMBER_EXTENSION, "branch"),
        )
        if query.get(key)
    ]
    return {
        "resourceType": "CoverageEligibilityRequest",
        "contained": [
            {"resourceType": "Patient", "id": "pat", "birthDate": query["birth_date"]},
            {
                "resourceType": "Organization",
                "id": "org",
                "identifier": [{"system": c.INSURER_NUMBER_SYSTEM, "value": query["insurer_number"]}],
            },
            {
                "resourceType": "Coverage",
                "id": "cov",
                "extension": extensions,
                "status": "active",
                "beneficiary": {"reference": "#pat"},
                "payor": [{"reference": "#org"}],
            },
        ],
        "status": "active",
        "purpose": ["validation"],
        "patient": {"reference": "#pat"},
        "created": "2026-12-01T09:00:00+09:00",
        "insurer": {"reference": "#org"},
        "insurance": [{"coverage": {"reference": "#cov"}}],
    }


def fhir_script(path: Path, token: str, queries: list[dict[str, Any]]) -> Path:
    bodies = ",\n".join(json.dumps(json.dumps(fhir_request(q))) for q in queries)
    path.write_text(
        "local bodies = {\n" + bodies + "\n}\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        "  return wrk.format('POST', '/fhir/R4/CoverageEligibilityRequest', "
        f"{{['Content-Type']='application/fhir+json', ['Authorization']='Bearer {token}'}}, "
        "bodies[math.random(#bodies)])\n"
        "end\n"
    )
    return path


def check_equal(base: str, token: str, queries: list[dict[str, Any]]) -> int:
    """Before timing: the FHIR door answers 200 with a valid R4B response and the JSON door's validity."""
    headers = {"Authorization": f"Bearer {token}"}
    for query in queries[:20]:
        from_json = httpx.post(f"{base}/v1/eligibility/by-number", json=query, headers=headers).json()
        r = httpx.post(f"{base}/fhir/R4/CoverageEligibilityRequest", json=fhir_request(query), headers=headers)
        assert r.status_code == 200, r.text
        response = CoverageEligibilityResponse.model_validate(r.json())
        validity = next(e for e in r.json()["extension"] if e["url"] == c.VALIDITY_EXTENSION)["valueCoding"]["code"]
        assert int(validity) == from_json["validity"], (validity, from_json["validity"])
        assert bool(response.insurance and response.insurance[0].inforce) == (from_json["validity"] == 1)
    return min(20, len(queries))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=5_000, help="distinct people queried at random")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternate JSON and FHIR this many times; medians")
    parser.add_argument("--fhir-warmup", type=int, default=30, help="seconds of FHIR requests before the rounds")
    args = parser.parse_args()
    url = fresh_database("shikaku_bench_fhir")
    redis.Redis.from_url(REDIS).flushdb()
    os.environ["SHIKAKU_DATABASE_URL"] = url
    work = Path(tempfile.mkdtemp(prefix="shikaku-fhir-bench-"))
    token, queries, extra = load(url, args.people, work, distinct=args.distinct)
    report: dict[str, Any] = {
        "people": args.people,
        "distinct_people_queried": len(queries),
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
    }
    with server(url, REDIS, workers=args.workers) as base:
        report["upload"] = upload(base, str(extra["insurer_token"]), work / "eligibility.csv")
        report["checked_equal"] = check_equal(base, token, queries)
        json_lua = wrk_script(work / "json.lua", token, queries)
        fhir_lua = fhir_script(work / "fhir.lua", token, queries)
        wrk(base, duration=5, connections=args.connections, script=json_lua)  # warm-up: fills the cache
        # the FHIR door validates each distinct answer's response once per worker (fhir/answers.py):
        # its warm-up lasts until most have been; its rate is the first-sight figure
        report["fhir_warm_up"] = wrk(base, duration=args.fhir_warmup, connections=args.connections, script=fhir_lua)
        rounds = []
        for _ in range(args.rounds):
            by_number = wrk(base, duration=args.duration, connections=args.connections, script=json_lua)
            fhir = wrk(base, duration=args.duration, connections=args.connections, script=fhir_lua)
            rounds.append({"json_by_number": by_number, "fhir_eligibility": fhir})
        for r in rounds:
            assert r["fhir_eligibility"]["non_2xx"] == 0 and r["json_by_number"]["non_2xx"] == 0, r
        for kind in ("json_by_number", "fhir_eligibility"):
            report[kind] = {key: statistics.median(r[kind][key] for r in rounds) for key in rounds[0][kind]}
        report["ratio_fhir_vs_json"] = round(
            report["fhir_eligibility"]["requests_per_s"] / report["json_by_number"]["requests_per_s"], 3
        )
        report["rounds"] = [
            round(r["fhir_eligibility"]["requests_per_s"] / r["json_by_number"]["requests_per_s"], 3) for r in rounds
        ]
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
