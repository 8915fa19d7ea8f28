"""The upload's progress (docs/uploads.md, Progress): streamed as NDJSON to a client that asks
with ``Accept: application/x-ndjson``, the plain JSON answer for every other client (both
backends)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

import shikaku_server.upload.service as service
from tests.conftest import auth
from tests.factories import INSURER_B, eligibility_csv, person

ANSWER_KEYS = {
    "upload_id", "accepted", "rejected", "unchanged", "duplicate", "errors", "errors_truncated",
    "warnings", "warning_count",  # additive: names outside JIS X 0208 (docs/uploads.md)
}
PHASES = ["parsing", "validating", "applying", "committing", "done"]


def post(client: TestClient, token: str, body: bytes, **headers: str) -> Any:
    return client.post("/v1/uploads?kind=eligibility", content=body,
                       headers={**auth(token), "Content-Type": "text/csv", **headers})


def lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines()]


def file_of(n: int, *extra: dict[str, str]) -> bytes:
    return eligibility_csv([person(number=str(i)) for i in range(1, n + 1)] + list(extra))


def test_a_client_that_asks_gets_the_phases_in_order_then_the_answer(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH", 3)  # several batches in a small file
    body = file_of(10, person(number="99", insurer_number=INSURER_B))

    r = post(client, tokens["insurer"], body, Accept="application/x-ndjson")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert "content-length" not in r.headers  # streamed: the length is not known when it starts
    got = lines(r)
    phases = [line["phase"] for line in got]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == PHASES
    validating = [line for line in got if line["phase"] == "validating"]
    assert [v["read"] for v in validating] == sorted(v["read"] for v in validating)
    assert validating[0]["read"] >= 3
    applying = next(line for line in got if line["phase"] == "applying")
    assert applying["total"] == applying["read"] == 11
    committing = next(line for line in got if line["phase"] == "committing")
    assert (committing["applied"], committing["rejected"]) == (10, 1)
    elapsed = [line["elapsed_s"] for line in got[:-1]]
    assert elapsed == sorted(elapsed)
    result = got[-1]["result"]
    assert set(result) == ANSWER_KEYS
    assert (result["accepted"], result["rejected"], result["unchanged"]) == (10, 1, 0)
    assert [e["code"] for e in result["errors"]] == ["insurer_not_permitted"]


def test_a_client_that_does_not_ask_gets_the_plain_json(client: TestClient, tokens: dict[str, str]) -> None:
    for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        r = post(client, tokens["insurer"], file_of(2), **accept)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert set(r.json()) == ANSWER_KEYS


def test_a_refused_file_ends_the_stream_with_its_problem(client: TestClient, tokens: dict[str, str]) -> None:
    r = post(client, tokens["insurer"], b"insurer_number,my_number\n", Accept="application/x-ndjson")

    assert r.status_code == 200  # the status is sent before the body is read
    last = lines(r)[-1]
    assert last["phase"] == "failed"
    assert last["problem"]["status"] == 422
    assert last["problem"]["code"] == "my_number_detected"


def test_what_is_refused_before_the_body_is_read_keeps_its_status(
    client: TestClient, tokens: dict[str, str]
) -> None:
    r = client.post("/v1/uploads?kind=eligibility", content=b"x",
                    headers={**auth(tokens["insurer"]), "Content-Type": "text/plain", "Accept": "application/x-ndjson"})
    assert r.status_code == 415
    assert r.json()["code"] == "validation_error"
    r = post(client, tokens["reception"], file_of(1), Accept="application/x-ndjson")
    assert r.status_code == 403
