"""What operators see: every answer (500s and 503s included) has its request log line and its
metrics series; backing-service errors become 503 ``unavailable`` at one boundary."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy.exc
from fastapi.testclient import TestClient

from shikaku_server.batch import service as batch_service
from shikaku_server.eligibility import service as eligibility_service
from tests.conftest import auth
from tests.factories import INSURER_A
from tests.integration.metrics_helpers import events, sample

QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}


def _boom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("boom 123456789018")


async def _aboom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("boom")


def _db_down(*_: Any, **__: Any) -> Any:
    raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "shikaku_server.request"]


def series(client: TestClient, route: str, status: int, method: str = "POST") -> int:
    text = client.get("/metrics").text
    return int(sample(text, "shikaku_http_requests_total", method=method, route=route, status=str(status)))


@pytest.mark.parametrize("resolved", [False, True], ids=["route", "fast-path"])
def test_a_500_has_its_log_line_and_metric(
    client: TestClient,
    tokens: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    resolved: bool,
) -> None:
    headers = auth(tokens["reception"])
    if resolved:  # a resolved token takes the by-number fast path (outside FastAPI's handlers)
        client.post("/v1/eligibility/by-number", json=QUERY, headers=headers)
    monkeypatch.setattr(eligibility_service, "answer_by_number", _aboom)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        r = client.post("/v1/eligibility/by-number", json=QUERY, headers=headers)
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert r.headers["content-type"].startswith("application/problem+json")
    lines = request_lines(caplog)
    assert len(lines) == 1
    assert lines[0].__dict__["status"] == 500 and lines[0].__dict__["route"] == "/v1/eligibility/by-number"
    assert lines[0].__dict__["request_id"] == r.headers["x-request-id"]
    assert series(client, "/v1/eligibility/by-number", 500) == 1


def test_a_500_in_a_sync_route_has_its_log_line_and_metric(
    client: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_service, "create_batch", _boom)
    with caplog.at_level(logging.INFO):
        r = client.post("/v1/eligibility/batches", json={"queries": [QUERY]}, headers=auth(tokens["reception"]))
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "123456789018" not in r.text
    assert [line.__dict__["status"] for line in request_lines(caplog)] == [500]
    assert series(client, "/v1/eligibility/batches", 500) == 1


def test_a_database_error_is_503_with_retry_after_logged_and_counted(
    client: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_service, "create_batch", _db_down)
    with caplog.at_level(logging.INFO):
        r = client.post("/v1/eligibility/batches", json={"queries": [QUERY]}, headers=auth(tokens["reception"]))
    assert r.status_code == 503 and r.json()["code"] == "unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert [line.__dict__["status"] for line in request_lines(caplog)] == [503]
    assert series(client, "/v1/eligibility/batches", 503) == 1


def _events(client: TestClient) -> dict[str, int]:
    return events(client.get("/metrics").text)


def test_card_checks_count_in_the_validity_counters(client: TestClient, tokens: dict[str, str], test_ca: Any) -> None:
    from tests.factories import eligibility_csv, person
    from tests.integration.test_card_api import by_card, register
    from tests.integration.test_eligibility_api import upload

    upload(client, tokens["insurer"], eligibility_csv([person()]))
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    before = _events(client).get("eligibility_validity_1", 0)
    assert by_card(client, tokens["reception"], card, as_of="2025-01-01").json()["validity"] == 1
    assert by_card(client, tokens["reception"], card, as_of="2025-01-01").json()["validity"] == 1
    assert _events(client)["eligibility_validity_1"] == before + 2


def test_the_api_document_and_swagger_assets_are_counted_by_their_route(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs/static/swagger-ui.css").status_code == 200
    assert client.get("/docs/static/no-such-file.js").status_code == 404
    text = client.get("/metrics").text
    assert 'route="/openapi.json",status="200"' in text
    assert 'route="/docs/static/{asset}",status="200"' in text
    assert 'route="unmatched",status="200"' not in text
