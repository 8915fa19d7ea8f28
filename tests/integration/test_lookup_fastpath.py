"""By-number lookups through the pure-ASGI fast path: the same bytes, errors, access log and
metrics as the FastAPI route; the event-loop Redis and PostgreSQL clients and their fallbacks."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from schemas.codes import Validity
from shikaku_server.app import create_app
from shikaku_server.config import Settings
from shikaku_server.database import transaction
from shikaku_server.eligibility import service
from tests.conftest import auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.metrics_helpers import sample

# "+json" is JSON to FastAPI but not one of the fast path's content types: the route answers
ROUTE_ONLY = "application/vnd.shikaku+json"

PEOPLE = [
    person(),
    person(branch="01", name="山田 花子", personal_family="2", sex="2", birth_date="1982-05-05"),
    person(
        number="777",
        birth_date="1950-01-01",
        elderly_ratio="20",
        elderly_valid_from="2020-01-01",
        elderly_valid_to="",
        limit_kind="01",
        limit_class="A03",
        limit_valid_from="2024-04-01",
        limit_valid_to="2026-03-31",
        disease_category="1|2",
        disease_valid_from="2024-04-01|2024-04-01",
        disease_valid_to="|2024-12-31",
        disease_self_pay="10000|20000",
    ),
    person(number="888", name="佐藤 一郎", valid_to="2024-09-30", reason_of_loss="01"),  # lost: 2
    person(number="999", valid_to="2024-09-30", reason_of_loss="01"),  # lost, same facts as 4567-00: 3
    person(branch="02", name="山田 次郎", personal_family="2"),  # a twin of 4567-00: 5 without a branch
]


def _upload(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=eligibility_csv(PEOPLE, optional=True),
        headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"},
    )
    assert r.status_code == 200 and r.json()["rejected"] == 0, r.text


def _post(client: TestClient, token: str | None, body: Any, content_type: str = "application/json") -> Any:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers |= auth(token)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/eligibility/by-number", content=raw, headers=headers)


def _queries() -> list[dict[str, Any]]:
    out = []
    for number, branch, birth in (
        ("4567", "00", "1980-04-01"),
        ("4567", "01", "1982-05-05"),
        ("4567", None, "1980-04-01"),
        ("777", "00", "1950-01-01"),
        ("888", "00", "1980-04-01"),
        ("999", "00", "1980-04-01"),
        ("4567", "00", "1999-01-01"),
    ):
        for as_of in ("2024-06-01", "2024-12-01", "2025-02-01", "2023-01-01"):
            for share in (False, True):
                q: dict[str, Any] = {
                    "insurer_number": INSURER_A,
                    "symbol": "１２３",
                    "number": number,
                    "birth_date": birth,
                    "as_of": as_of,
                    "include_limit_certificate": share,
                }
                if branch is not None:
                    q["branch"] = branch
                out.append(q)
    return out


def test_fast_path_answers_byte_for_byte_like_the_route(settings: Settings, tokens: dict[str, str]) -> None:
    unlimited = settings.model_copy(
        update={
            "rate_limit_lookups_per_token": 0,
            "rate_limit_lookups_per_facility": 0,
            "rate_limit_lookup_failures_per_token": 0,
            "rate_limit_lookup_failures_per_facility": 0,
        }
    )
    with TestClient(create_app(unlimited)) as client:
        _compare_fast_path_and_route(client, tokens)


def _compare_fast_path_and_route(client: TestClient, tokens: dict[str, str]) -> None:
    _upload(client, tokens)
    token = tokens["reception"]
    _post(client, token, _queries()[0], ROUTE_ONLY)  # the route resolves and caches the token
    validities = set()
    for q in _queries():
        fast = _post(client, token, q)
        slow = _post(client, token, q, ROUTE_ONLY)
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
        assert fast.headers["content-length"] == slow.headers["content-length"]
        assert "x-request-id" in fast.headers
        validities.add(fast.json()["validity"])
    assert validities == {1, 2, 3, 4, 5}


def test_rendered_json_equals_the_pydantic_model(client: TestClient, tokens: dict[str, str], session_factory) -> None:
    _upload(client, tokens)
    with transaction(session_factory) as s:
        bundles = [service.load_bundle(s, INSURER_A, "123", n) for n in ("4567", "777", "888", "999")]
    for bundle in bundles:
        for insured in bundle["insureds"]:
            for day in ("2023-01-01", "2024-06-01", "2024-12-01", "2025-02-01", "2030-01-01"):
                as_of = dt.date.fromisoformat(day)
                for validity in (1, 2, 3):
                    for share in (False, True):
                        evaluation = service.evaluate_insured(bundle, insured["id"], as_of)
                        if evaluation.insured is not None:
                            evaluation.validity = Validity(validity)
                        kwargs: dict[str, Any] = {
                            "insurer_name": bundle["insurer_name"],
                            "as_of": as_of,
                            "query_kind": "number",
                            "share_limit_certificate": share,
                        }
                        expected = service.build_result(evaluation, **kwargs).model_dump_json().encode()
                        assert orjson.dumps(service.result_dict(evaluation, **kwargs)) == expected


@pytest.mark.parametrize(
    ("token_key", "body", "content_type"),
    [
        (None, {"insurer_number": INSURER_A, "number": "4567", "birth_date": "1980-04-01"}, "application/json"),
        ("bogus", {"insurer_number": INSURER_A, "number": "4567", "birth_date": "1980-04-01"}, "application/json"),
        ("insurer", {"insurer_number": INSURER_A, "number": "4567", "birth_date": "1980-04-01"}, "application/json"),
        ("reception", b'{"insurer_number": ', "application/json"),
        ("reception", b"[1, 2]", "application/json"),
        ("reception", b"", "application/json"),
        ("reception", b'{"insurer_number": NaN}', "application/json"),
        ("reception", {"insurer_number": "12345678", "number": "1", "birth_date": "1980-04-01"}, "application/json"),
        ("reception", {"insurer_number": INSURER_A, "number": "123456789018", "birth_date": "x"}, "application/json"),
        (
            "reception",
            {"insurer_number": INSURER_A, "number": "4567", "birth_date": "1980-04-01", "x": 1},
            "application/json",
        ),
        ("reception", {"insurer_number": INSURER_A, "number": "4567", "birth_date": "1980-04-01"}, "text/plain"),
    ],
)
def test_every_error_is_the_routes_own(
    client: TestClient, tokens: dict[str, str], token_key: str | None, body: Any, content_type: str
) -> None:
    _upload(client, tokens)
    ok = {"insurer_number": INSURER_A, "number": "4567", "birth_date": "1980-04-01"}
    for t in (tokens["reception"], tokens["insurer"]):
        _post(client, t, ok)  # both tokens now cached: the fast path sees them
    token = None if token_key is None else tokens.get(token_key, "shk_fac_unknown")
    fast = _post(client, token, body, content_type)
    assert fast.status_code != 200
    assert fast.headers["content-type"] == "application/problem+json"
    problem = fast.json()
    assert problem["code"] in {"unauthorized", "forbidden_role", "validation_error", "my_number_detected"}
    if content_type == "application/json":
        slow = _post(client, token, body, ROUTE_ONLY)
        assert (slow.status_code, slow.json()) == (fast.status_code, problem)


def test_fast_lookups_are_logged_and_counted(client: TestClient, tokens: dict[str, str], session_factory) -> None:
    _upload(client, tokens)
    q = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
    for _ in range(5):
        assert _post(client, tokens["reception"], q).status_code == 200
    state = client.app.state.shikaku  # type: ignore[attr-defined]
    state.access_log.flush()
    with transaction(session_factory) as s:
        rows = s.execute(sa.text("SELECT facility_code, role, what, query_kind FROM access_log")).all()
    assert len(rows) == 5
    assert set(rows) == {("0110113719", "reception", "eligibility", "number")}
    metrics = client.get("/metrics").text
    labels = {"method": "POST", "route": "/v1/eligibility/by-number", "status": "200"}
    assert sample(metrics, "shikaku_http_requests_total", **labels) == 5
    assert "eligibility_validity_1" in metrics


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # the embedded default has no Redis
def test_lookups_answer_from_the_database_when_redis_is_down(
    backend: str, settings: Settings, tokens: dict[str, str]
) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as client:
        with TestClient(create_app(settings)) as loader:
            _upload(loader, tokens)
        q = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
        for _ in range(3):
            r = _post(client, tokens["reception"], q)
            assert r.status_code == 200 and r.json()["validity"] == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # the event-loop reads are PostgreSQL's
def test_a_lost_database_connection_is_replaced(
    backend: str, client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    import redis

    _upload(client, tokens)
    q = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
    assert _post(client, tokens["reception"], q).status_code == 200
    assert client.app.state.shikaku.pg is not None  # type: ignore[attr-defined]
    engine = sa.create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    engine.dispose()
    assert settings.redis_url
    redis.Redis.from_url(settings.redis_url).flushdb()  # a miss: the database is read again
    r = _post(client, tokens["reception"], q)
    assert r.status_code == 200 and r.json()["validity"] == 1
