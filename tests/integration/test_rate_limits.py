"""Rate limits (issue 9, items 5 and 7) and failed by-number lookups, on both backends: a birth-date
brute force is cut off, counted in /metrics and visible in the victim's access log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shikaku_server.app import create_app
from shikaku_server.cache import CacheError, RedisCounters
from shikaku_server.config import Settings
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.metrics_helpers import events as metric_events
from tests.integration.test_card_api import FACTS, b64, challenge, problem_code, register, sign
from tests.integration.test_eligibility_api import upload

NOW = 1_800_000_000.0  # a fixed instant, away from a window boundary: the windows never roll over mid-test
QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW + 5

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def started(settings: Settings, clock: Clock, **limits: int) -> Iterator[TestClient]:
    """The app with these limits. Redis may take up to 5 s to answer here, not 0.5: these tests
    count on Redis (a stall on a loaded CI machine would send the counting to the in-process
    fallback mid-test, which has its own test below, and change the outcome)."""
    update: dict[str, Any] = {"redis_timeout_seconds": 5.0, **limits}
    with TestClient(create_app(settings.model_copy(update=update))) as c:
        c.app.state.shikaku.limiter.clock = clock  # type: ignore[attr-defined]
        yield c


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    """The app with its default limits and a fixed clock."""
    with started(settings, clock) as c:
        yield c


def lookup(client: TestClient, token: str, birth_date: str) -> Any:
    return client.post(
        "/v1/eligibility/by-number",
        json={**QUERY, "birth_date": birth_date, "as_of": "2025-01-01"},
        headers=auth(token),
    )


def events(client: TestClient) -> dict[str, int]:
    return metric_events(client.get("/metrics").text) | {"": 0}


def my_log(client: TestClient, token: str, card: IssuedCertificate) -> list[dict[str, Any]]:
    ch = challenge(client, token)
    r = client.post(
        "/v1/me/access-log",
        headers=auth(token),
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "signature": sign(card.private_key, ch["nonce"]),
        },
    )
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def test_birth_date_brute_force_is_cut_off_counted_and_logged_for_the_victim(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    victim_card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], victim_card).status_code == 200
    settings = client.app.state.shikaku.settings  # type: ignore[attr-defined]
    limit = settings.rate_limit_lookup_failures_per_token
    assert limit < settings.rate_limit_lookups_per_token  # failures, not volume, cut the guessing off
    guesses = [(dt.date(1980, 4, 1) + dt.timedelta(days=i - limit - 20)).isoformat() for i in range(limit + 40)]
    assert FACTS["birth_date"] in guesses[limit:]  # the right date comes after the cut-off
    answers = [lookup(client, tokens["reception"], day) for day in guesses]
    assert [r.status_code for r in answers] == [200] * limit + [429] * 40
    assert all(r.json()["validity"] == 4 and r.json()["insured"] is None for r in answers[:limit])
    refused = answers[limit]
    assert problem_code(refused) == "rate_limited"
    assert refused.headers["retry-after"] == "3595"  # the clock is 5 s into an hour window
    assert "山田" not in refused.text
    # the right birth date, once the failures are used up, is refused too: nothing is disclosed
    assert all("山田" not in r.text for r in answers[limit:])

    counted = events(client)
    assert counted["eligibility_birth_date_mismatch"] == limit
    assert counted["eligibility_validity_4"] == limit
    assert counted["rate_limited_lookup_failure"] == 40

    entries = my_log(client, tokens["reception"], victim_card)
    failed = [e for e in entries if e["what"] == "eligibility_no_match"]
    assert len(failed) == limit
    assert {(e["facility_code"], e["role"], e["query_kind"]) for e in failed} == {("0110113719", "reception", "number")}


def test_failed_lookups_are_limited_per_facility_and_matching_lookups_are_not_failures(
    settings: Settings, clock: Clock, tokens: dict[str, str]
) -> None:
    with started(
        settings, clock, rate_limit_lookup_failures_per_token=3, rate_limit_lookup_failures_per_facility=4
    ) as client:
        upload(client, tokens["insurer"], eligibility_csv([person()]))
        # lookups that match are never failures: far more of them than the failure limit
        assert {lookup(client, tokens["reception"], "1980-04-01").status_code for _ in range(10)} == {200}
        wrong = [lookup(client, tokens["reception"], "1981-01-01").status_code for _ in range(4)]
        assert wrong == [200, 200, 200, 429]
        # the token's failures are used up: even a matching lookup is refused, for the window
        assert lookup(client, tokens["reception"], "1980-04-01").status_code == 429
        # another token of the facility: the facility's 4 failures allow one more
        other = [lookup(client, tokens["physician"], "1981-01-01").status_code for _ in range(2)]
        assert other == [200, 429]
        clock.now += 3600  # the next hour window
        assert lookup(client, tokens["reception"], "1980-04-01").json()["validity"] == 1


def test_limits_per_token_and_per_facility_and_the_window_ends(
    settings: Settings, clock: Clock, tokens: dict[str, str]
) -> None:
    with started(settings, clock, rate_limit_lookups_per_token=3, rate_limit_lookups_per_facility=5) as client:
        upload(client, tokens["insurer"], eligibility_csv([person()]))
        ok = [lookup(client, tokens["reception"], "1980-04-01").status_code for _ in range(4)]
        assert ok == [200, 200, 200, 429]
        # another token of the same facility: its own 3, but the facility's 5 are spent after 2
        other = [lookup(client, tokens["physician"], "1980-04-01").status_code for _ in range(3)]
        assert other == [200, 200, 429]
        # another facility is not affected
        assert lookup(client, tokens["pharmacist"], "1980-04-01").status_code == 200
        clock.now += 60  # the next window
        assert lookup(client, tokens["reception"], "1980-04-01").status_code == 200


def test_a_successful_lookup_logs_nobody_else_of_the_family(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    from sqlalchemy import select

    from shikaku_server.access_log.models import AccessLogEntry

    upload(
        client,
        tokens["insurer"],
        eligibility_csv([person(), person(branch="01", name="山田 花子", sex="2", birth_date="1982-02-02")]),
    )
    body = {**QUERY, "birth_date": "1980-04-01", "as_of": "2025-01-01"}
    del body["branch"]
    r = client.post("/v1/eligibility/by-number", json=body, headers=auth(tokens["reception"]))
    assert r.json()["validity"] == 1
    wrong = {**body, "birth_date": "1990-01-01"}
    assert (
        client.post("/v1/eligibility/by-number", json=wrong, headers=auth(tokens["reception"])).json()["validity"] == 4
    )
    client.app.state.shikaku.access_log.flush()  # type: ignore[attr-defined]
    with session_factory() as s:
        rows = s.execute(select(AccessLogEntry.insured_id, AccessLogEntry.what).order_by(AccessLogEntry.id)).all()
    whats = sorted(w for _, w in rows)
    # the hit: one entry for 太郎; the miss without a branch: one for each member of the family
    assert whats == ["eligibility", "eligibility_no_match", "eligibility_no_match"]


def test_batches_count_their_queries(settings: Settings, clock: Clock, tokens: dict[str, str]) -> None:
    with started(settings, clock, rate_limit_batch_queries_per_token=5) as client:
        queries = [{**QUERY, "birth_date": "1980-04-01"}] * 3

        def post(n: int) -> Any:
            return client.post(
                "/v1/eligibility/batches", json={"queries": queries[:n]}, headers=auth(tokens["reception"])
            )

        assert post(3).status_code == 202
        refused = post(3)
        assert refused.status_code == 429 and problem_code(refused) == "rate_limited"
        assert post(2).status_code == 202  # a refused batch does not use up the window


def test_challenges_are_rate_limited(settings: Settings, clock: Clock, tokens: dict[str, str]) -> None:
    with started(settings, clock, rate_limit_challenges_per_token=2) as client:
        codes = [client.post("/v1/card/challenges", headers=auth(tokens["reception"])).status_code for _ in range(3)]
        assert codes == [200, 200, 429]


def test_registrations_are_rate_limited_per_facility(
    settings: Settings, clock: Clock, tokens: dict[str, str], test_ca: TestCA
) -> None:
    with started(settings, clock, rate_limit_registrations_per_facility=2) as client:
        upload(client, tokens["insurer"], eligibility_csv([person()]))
        nobody = {**FACTS, "name": "誰 でもない"}
        codes = [
            register(client, token, test_ca.issue_auth_certificate(), nobody).status_code
            for token in (tokens["reception"], tokens["physician"], tokens["dentist"])
        ]
        assert codes == [409, 409, 429]
        r = register(client, tokens["pharmacist"], test_ca.issue_auth_certificate())
        assert r.status_code == 200, r.text  # another facility


def test_a_redis_outage_in_the_limiter_keeps_limiting_in_process(
    settings: Settings, clock: Clock, tokens: dict[str, str], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgres":
        pytest.skip("Redis only")
    with started(settings, clock, rate_limit_lookups_per_token=3) as client:
        upload(client, tokens["insurer"], eligibility_csv([person()]))

        def down(*_: Any, **__: Any) -> Any:
            raise CacheError("Redis is down")

        async def adown(*_: Any, **__: Any) -> Any:
            raise CacheError("Redis is down")

        monkeypatch.setattr(RedisCounters, "incr_windows", adown)
        monkeypatch.setattr(RedisCounters, "incr_windows_nowait", down)
        codes = [lookup(client, tokens["reception"], "1980-04-01").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert events(client)["rate_limit_store_unavailable"] >= 4


def test_the_counters_share_the_lookups_round_trip_to_redis(
    client: TestClient, tokens: dict[str, str], backend: str
) -> None:
    """On the event-loop Redis client the limiter adds no round trip: its counters leave in the
    same write as the lookup's cache read, and both replies come back together."""
    if backend != "postgres":
        pytest.skip("Redis only")
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    for _ in range(2):  # resolve the token, fill the cache
        assert lookup(client, tokens["reception"], "1980-04-01").status_code == 200
    pipe = client.app.state.shikaku.stores.client.aio._pipe  # type: ignore[attr-defined]
    writes: list[bytes] = []
    real_write = pipe.transport.write

    def write(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    pipe.transport.write = write
    try:
        assert lookup(client, tokens["reception"], "1980-04-01").json()["validity"] == 1
    finally:
        pipe.transport.write = real_write
    assert len(writes) == 1
    # the lookups' and the failed lookups' counters in one script call, then the cache read, each
    # script by its SHA (the counters' text is not sent with every lookup)
    assert writes[0].count(b"EVALSHA") == 2 and b"INCRBY" not in writes[0]


def test_a_batch_of_guessed_birth_dates_is_in_the_victims_access_log(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    victim_card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], victim_card).status_code == 200
    guesses = [{**QUERY, "birth_date": f"1980-05-{day:02d}", "as_of": "2025-01-01"} for day in range(1, 6)]
    created = client.post("/v1/eligibility/batches", json={"queries": guesses}, headers=auth(tokens["reception"]))
    assert created.status_code == 202, created.text
    for _ in range(100):  # the batch runs after its answer, in the app's background
        batch = client.get(f"/v1/eligibility/batches/{created.json()['batch_id']}", headers=auth(tokens["reception"]))
        if batch.json()["status"] == "done":
            break
    assert batch.json()["status"] == "done"
    assert [r["result"]["validity"] for r in batch.json()["results"]] == [4] * 5

    failed = [e for e in my_log(client, tokens["reception"], victim_card) if e["what"] == "eligibility_no_match"]
    assert len(failed) == 5
    assert {(e["facility_code"], e["role"], e["query_kind"]) for e in failed} == {("0110113719", "reception", "batch")}
