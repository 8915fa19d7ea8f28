"""一時利用停止 across server processes: two real servers on PostgreSQL + Redis; a card suspended
through one is refused by the other within 2 s; the operator's resume (shikaku-admin) lets it
back in; the audit trail names who suspended and who resumed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.card.models import CardSuspension
from shikaku_server.database import make_engine, make_session_factory, transaction
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import FACILITY_CODE, _truncate_pg
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.test_card_api import FACTS, b64, sign

PORTS = (9311, 9312)  # this work tree's range
BIN = Path(sys.executable).parent


def _env(pg_url: str, redis_url: str, anchors: Path) -> dict[str, str]:
    return dict(
        os.environ,
        SHIKAKU_DATABASE_URL=pg_url,
        SHIKAKU_REDIS_URL=redis_url,
        SHIKAKU_TRUST_ANCHORS=str(anchors),
        SHIKAKU_LOG_LEVEL="WARNING",
    )


@pytest.fixture
def servers(pg_url: str, redis_url: str, trust_anchor_file: Path) -> Iterator[list[str]]:
    _truncate_pg(pg_url)
    redis.Redis.from_url(redis_url).flushdb()
    env = _env(pg_url, redis_url, trust_anchor_file)
    procs = [
        subprocess.Popen([str(BIN / "shikaku-server"), "--port", str(port), "--no-migrate"], env=env) for port in PORTS
    ]
    urls = [f"http://127.0.0.1:{port}" for port in PORTS]
    try:
        for url in urls:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            else:
                raise AssertionError(f"server {url} did not start")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


def _by_card(url: str, token: str, card: IssuedCertificate) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    ch = httpx.post(f"{url}/v1/card/challenges", headers=headers).json()
    return httpx.post(
        f"{url}/v1/eligibility/by-card",
        headers=headers,
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "auth_method": "pin",
            "signature": sign(card.private_key, ch["nonce"]),
        },
    )


def _admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "shikaku-admin"), *args], env=env, capture_output=True, text=True, timeout=60)


PERSON_ARGS = [
    "--insurer-number", INSURER_A, "--symbol", "１２３", "--number", "４５６７", "--branch", "00",
    "--name", FACTS["name"], "--birth-date", FACTS["birth_date"], "--sex", FACTS["sex"], "--address", FACTS["address"],
]  # fmt: skip


def test_suspended_through_one_server_is_refused_by_the_other_within_two_seconds(
    servers: list[str], pg_url: str, redis_url: str, trust_anchor_file: Path, test_ca: TestCA
) -> None:
    a, b = servers
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        token = add_facility(s, code=FACILITY_CODE, name="しかく内科クリニック", role="reception")
        insurer = add_insurer(s, numbers=[INSURER_A], name="全国健康保険協会")
    r = httpx.post(
        f"{a}/v1/uploads?kind=eligibility",
        content=eligibility_csv([person()]),
        headers={"Authorization": f"Bearer {insurer}", "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    card = test_ca.issue_auth_certificate()
    ch = httpx.post(f"{a}/v1/card/challenges", headers={"Authorization": f"Bearer {token}"}).json()
    r = httpx.post(
        f"{a}/v1/card/registrations",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "signature": sign(card.private_key, ch["nonce"]),
            "basic_facts": FACTS,
        },
    )
    assert r.status_code == 200, r.text
    assert _by_card(b, token, card).status_code == 200  # server B has the card's check warm in its caches

    ch = httpx.post(f"{a}/v1/me/challenges").json()
    r = httpx.post(
        f"{a}/v1/me/suspension",
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "signature": sign(card.private_key, ch["nonce"]),
        },
    )
    assert r.status_code == 200, r.text
    suspended_at = time.monotonic()
    codes: list[Any] = []
    while time.monotonic() - suspended_at < 2.0:
        answer = _by_card(b, token, card)
        codes.append(answer.json().get("code"))
        if answer.status_code == 403 and codes[-1] == "card_suspended":
            break
    else:
        raise AssertionError(f"server B still accepted the suspended card after 2 s: {codes}")

    env = _env(pg_url, redis_url, trust_anchor_file)
    wrong = _admin(env, "cards", "resume", *PERSON_ARGS[:-2], "--address", "大阪府", "--operator", "alice")
    assert wrong.returncode != 0 and "card(s) resumed" not in wrong.stdout
    assert _by_card(b, token, card).json()["code"] == "card_suspended"
    done = _admin(env, "cards", "resume", *PERSON_ARGS, "--operator", "alice")
    assert done.returncode == 0 and "1 card(s) resumed" in done.stdout, done.stderr
    assert _by_card(b, token, card).status_code == 200
    assert _by_card(a, token, card).status_code == 200

    # the call centre's suspension, then the audit trail
    done = _admin(env, "cards", "suspend", *PERSON_ARGS, "--operator", "bob")
    assert done.returncode == 0 and "1 card(s) suspended" in done.stdout, done.stderr
    assert _by_card(a, token, card).json()["code"] == "card_suspended"
    with factory() as s:
        rows = [
            (r.suspended_by, r.resumed_by)
            for r in s.execute(sa.select(CardSuspension).order_by(CardSuspension.id)).scalars()
        ]
    assert rows == [("patient", "operator:alice"), ("operator:bob", None)]
    engine.dispose()
