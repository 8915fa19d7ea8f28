"""Bad requests get clear 4xx problems with stable codes; health, readiness, metrics; batches."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import auth
from tests.factories import INSURER_A, eligibility_csv, person
from tests.integration.metrics_helpers import sample
from tests.integration.test_eligibility_api import upload

QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}


def post(client: TestClient, token: str | None, path: str, **kw: Any) -> Any:
    headers = (auth(token) if token else {}) | kw.pop("headers", {})
    return client.post(path, headers=headers, **kw)


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["code"] == code and body["status"] == status and body["title"]
    return body


def test_missing_or_wrong_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    assert_problem(post(client, None, "/v1/eligibility/by-number", json=QUERY), 401, "unauthorized")
    assert_problem(post(client, "shk_fac_wrong", "/v1/eligibility/by-number", json=QUERY), 401, "unauthorized")
    r = client.post("/v1/eligibility/by-number", json=QUERY, headers={"Authorization": "Basic abc"})
    assert_problem(r, 401, "unauthorized")


def test_insurer_token_cannot_query_and_facility_cannot_upload(client: TestClient, tokens: dict[str, str]) -> None:
    assert_problem(post(client, tokens["insurer"], "/v1/eligibility/by-number", json=QUERY), 403, "forbidden_role")
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=eligibility_csv([person()]),
        headers={**auth(tokens["reception"]), "Content-Type": "text/csv"},
    )
    assert_problem(r, 403, "forbidden_role")


def test_malformed_json_wrong_types_unknown_fields(client: TestClient, tokens: dict[str, str]) -> None:
    token = tokens["reception"]
    r = post(
        client,
        token,
        "/v1/eligibility/by-number",
        content=b"{not json",
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert_problem(r, 400, "validation_error")
    body = assert_problem(
        post(client, token, "/v1/eligibility/by-number", json={**QUERY, "birth_date": 12}), 422, "validation_error"
    )
    assert "birth_date" in body["detail"]
    body = assert_problem(
        post(client, token, "/v1/eligibility/by-number", json={**QUERY, "surprise": 1}), 422, "validation_error"
    )
    assert "surprise" in body["detail"]
    assert_problem(
        post(client, token, "/v1/eligibility/by-number", json={**QUERY, "insurer_number": "01130019"}),
        422,
        "validation_error",
    )
    assert_problem(
        post(client, token, "/v1/eligibility/by-number", json={**QUERY, "branch": "1"}), 422, "validation_error"
    )
    assert_problem(post(client, token, "/v1/eligibility/by-number", json=[1, 2]), 422, "validation_error")


def test_my_number_in_a_query_is_refused_and_not_echoed(client: TestClient, tokens: dict[str, str]) -> None:
    r = post(client, tokens["reception"], "/v1/eligibility/by-number", json={**QUERY, "number": "123456789018"})
    assert_problem(r, 422, "my_number_detected")
    assert "123456789018" not in r.text


def test_oversize_body_is_413(client: TestClient, tokens: dict[str, str]) -> None:
    big = b'{"insurer_number": "' + b"1" * (5 * 1024 * 1024) + b'"}'
    r = post(
        client,
        tokens["reception"],
        "/v1/eligibility/by-number",
        content=big,
        headers={**auth(tokens["reception"]), "Content-Type": "application/json"},
    )
    assert_problem(r, 413, "payload_too_large")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "not_found")
    assert_problem(client.get("/v1/eligibility/by-number"), 405, "method_not_allowed")


def test_upload_content_type_and_kind(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=b"x",
        headers={**auth(tokens["insurer"]), "Content-Type": "application/pdf"},
    )
    assert_problem(r, 415, "validation_error")
    r = client.post(
        "/v1/uploads?kind=people", content=b"x", headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"}
    )
    assert_problem(r, 422, "validation_error")
    r = client.post(
        "/v1/uploads?kind=eligibility", content=b"", headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"}
    )
    assert_problem(r, 422, "empty_file")
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=b"action,foo\nadd,1\n",
        headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"},
    )
    body = assert_problem(r, 422, "unknown_column")
    assert "'foo'" in body["detail"]


def test_ndjson_upload(client: TestClient, tokens: dict[str, str]) -> None:
    import json

    lines = [json.dumps(person()), json.dumps(person(branch="01", sex="x"))]
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content="\n".join(lines).encode(),
        headers={**auth(tokens["insurer"]), "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 1 and out["rejected"] == 1
    assert out["errors"][0] == {
        "line": 2,
        "field": "sex",
        "code": "invalid_code",
        "message": out["errors"][0]["message"],
    }


def test_health_ready_metrics(client: TestClient, tokens: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "cache": "ok"}
    post(client, tokens["reception"], "/v1/eligibility/by-number", json=QUERY)
    text = client.get("/metrics").text
    labels = {"method": "POST", "route": "/v1/eligibility/by-number", "status": "200"}
    assert sample(text, "shikaku_http_requests_total", **labels) == 1
    assert "shikaku_http_request_duration_seconds_bucket" in text
    # the person's number and birth date are in no series name, label or help text (the sample
    # values are numbers: a timestamp such as 1.764177301545672e+09 may hold the digits 4567)
    series = [line if line.startswith("#") else line.rsplit(" ", 1)[0] for line in text.splitlines()]
    assert not [s for s in series if "4567" in s or "1980-04-01" in s]
    assert "1980-04-01" not in text


def test_batch_of_by_number_queries(client: TestClient, tokens: dict[str, str]) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [person(), person(branch="01", name="山田 花子", sex="2", birth_date="1985-01-01", personal_family="2")]
        ),
    )
    queries = [
        QUERY | {"as_of": "2025-01-01"},
        QUERY | {"branch": "01", "birth_date": "1985-01-01", "as_of": "2025-01-01"},
        QUERY | {"birth_date": "1999-09-09"},
    ]
    r = post(client, tokens["reception"], "/v1/eligibility/batches", json={"queries": queries})
    assert r.status_code == 202, r.text
    batch_id = r.json()["batch_id"]
    for _ in range(100):
        got = client.get(f"/v1/eligibility/batches/{batch_id}", headers=auth(tokens["reception"])).json()
        if got["status"] == "done":
            break
        time.sleep(0.05)
    assert got["status"] == "done"
    assert [item["result"]["validity"] for item in got["results"]] == [1, 1, 4]
    assert got["results"][1]["result"]["insured"]["name"] == "山田 花子"
    # another facility cannot fetch it
    r = client.get(f"/v1/eligibility/batches/{batch_id}", headers=auth(tokens["pharmacist"]))
    assert_problem(r, 404, "not_found")


def test_batch_limits(client: TestClient, tokens: dict[str, str]) -> None:
    assert_problem(
        post(client, tokens["reception"], "/v1/eligibility/batches", json={"queries": []}), 422, "validation_error"
    )
    r = post(client, tokens["reception"], "/v1/eligibility/batches", json={"queries": [QUERY] * 10_001})
    assert_problem(r, 422, "validation_error")
