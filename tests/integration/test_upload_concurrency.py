"""Two uploads at the same time that add the same new person: each file is applied, the person
once; on PostgreSQL (where both may insert the person at the same moment) the losing file reports
that row as a ``conflict`` and applies all its others; never a 500 (both backends)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import shikaku_server.upload.bulk as bulk
import shikaku_server.upload.service as service
from tests.conftest import auth
from tests.factories import change, csv_bytes, eligibility_csv, person
from tests.meeting import meet_at_first_call

BIG = 20_000


def post(client: TestClient, token: str, body: bytes) -> httpx.Response:
    headers = {**auth(token), "Content-Type": "text/csv"}
    r: httpx.Response = client.post("/v1/uploads?kind=eligibility", content=body, headers=headers)
    return r


def count(session_factory: Any, sql: str) -> int:
    with session_factory() as s:
        return int(s.execute(sa.text(sql)).scalar_one())


@pytest.mark.parametrize("history", ["add", "add+change"])
def test_concurrent_uploads_adding_the_same_person(
    client: TestClient,
    tokens: dict[str, str],
    session_factory: Any,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    history: str,
) -> None:
    shared = [person(number="999999", name="同時 太郎")]
    if history == "add+change":  # a person with two records in the batch: applied the long way
        shared.append(change(number="999999", valid_from="2024-06-01", copay_ratio="20"))
    n = len(shared)
    big = eligibility_csv(shared + [person(number=str(100000 + i), name=f"試験 {i}") for i in range(BIG)])
    small = eligibility_csv([person(number=str(500000 + i), name=f"別人 {i}") for i in range(3)] + shared)
    if backend == "postgres":
        # both uploads have looked the person up (absent) before either inserts it: the race
        racing = meet_at_first_call(bulk.PostgresWriter.insert_insureds)
        monkeypatch.setattr(bulk.PostgresWriter, "insert_insureds", racing)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(post, client, tokens["insurer"], body) for body in (big, small)]
        answers = [f.result() for f in futures]
    assert [r.status_code for r in answers] == [200, 200], [r.text[:300] for r in answers]
    out = [r.json() for r in answers]
    # the person exists once, with one period; every other row of both files is applied
    assert count(session_factory, "SELECT count(*) FROM insured") == BIG + 3 + 1
    assert count(session_factory, "SELECT count(*) FROM eligibility_period") == BIG + 3 + n
    assert sum(o["accepted"] for o in out) == BIG + 3 + n
    errors = [e for o in out for e in o["errors"]]
    if backend == "postgres":
        assert sum(o["rejected"] for o in out) == n
        loser = 0 if out[0]["rejected"] else 1
        lines = [2 + i for i in range(n)] if loser == 0 else [5 + i for i in range(n)]
        assert [(e["line"], e["field"], e["code"]) for e in errors] == [(line, "number", "conflict") for line in lines]
        assert all("999999" not in e["message"] for e in errors)
    else:
        # SQLite has one writer at a time: the second file finds the person and its rows are unchanged
        assert errors == [] and sum(o["unchanged"] for o in out) == n


@pytest.mark.parametrize("same", [True, False], ids=["same-row", "other-quantity"])
def test_concurrent_medication_uploads_of_the_same_new_row(
    client: TestClient,
    tokens: dict[str, str],
    session_factory: Any,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    same: bool,
) -> None:
    from tests.integration.test_consent_api import MED_COLUMNS, med

    people = [person(number=str(4567 + i), name=f"試験 {i}") for i in range(3)]
    assert post(client, tokens["insurer"], eligibility_csv(people)).json()["accepted"] == 3
    first = csv_bytes(MED_COLUMNS, [med(), med(number="4568")])
    second = csv_bytes(MED_COLUMNS, [med(number="4569"), med(quantity="3" if same else "5")])
    if backend == "postgres":
        monkeypatch.setattr(bulk.PostgresWriter, "insert_rows", meet_at_first_call(bulk.PostgresWriter.insert_rows))

    def send(body: bytes) -> httpx.Response:
        headers = {**auth(tokens["insurer"]), "Content-Type": "text/csv"}
        r: httpx.Response = client.post("/v1/uploads?kind=medications", content=body, headers=headers)
        return r

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, (first, second)))
    assert [r.status_code for r in answers] == [200, 200], [r.text[:300] for r in answers]
    out = [r.json() for r in answers]
    assert count(session_factory, "SELECT count(*) FROM medication") == 3  # the shared row once
    assert sum(o["rejected"] for o in out) == 0
    assert sum(o["accepted"] + o["unchanged"] for o in out) == 4
    if same:
        assert sum(o["unchanged"] for o in out) == 1


def test_concurrent_uploads_changing_the_same_person(
    client: TestClient, tokens: dict[str, str], session_factory: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both files read the person's periods before either writes: the later one must not stack its
    periods on the ones the first replaced (two current histories); its row is a conflict."""
    assert post(client, tokens["insurer"], eligibility_csv([person(number="4567")])).json()["accepted"] == 1
    one = eligibility_csv([change(number="4567", valid_from="2024-06-01", copay_ratio="20"), person(number="1")])
    two = eligibility_csv([person(action="loss", number="4567", valid_to="2024-09-30", reason_of_loss="03")])
    if backend == "postgres":
        racing = meet_at_first_call(service._EligibilityApplier._write)
        monkeypatch.setattr(service._EligibilityApplier, "_write", racing)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda body: post(client, tokens["insurer"], body), (one, two)))
    assert [r.status_code for r in answers] == [200, 200], [r.text[:300] for r in answers]
    out = [r.json() for r in answers]
    with session_factory() as s:
        current = s.execute(
            sa.text(
                "SELECT p.valid_from, p.valid_to FROM eligibility_period p JOIN insured i ON i.id = p.insured_id "
                "WHERE i.number_norm = '4567' AND p.superseded_by IS NULL ORDER BY p.valid_from, p.valid_to"
            )
        ).all()
    days = [(str(a), str(b)) for a, b in current]
    # one history: either the change then the loss, or the loss then the change (refused: not_found)
    # or, raced on PostgreSQL, one of them with the other reported as a conflict
    assert days in (
        [("2024-04-01", "2024-05-31"), ("2024-06-01", "2024-09-30")],
        [("2024-04-01", "2024-05-31"), ("2024-06-01", "None")],
        [("2024-04-01", "2024-09-30")],
    ), days
    codes = [e["code"] for o in out for e in o["errors"]]
    if backend == "postgres":
        assert codes == ["conflict"]
    assert sum(o["accepted"] for o in out) == 3 - len(codes)


def test_two_crossing_uploads_deadlock_cleanly(
    client: TestClient, tokens: dict[str, str], session_factory: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File one adds X then Y, file two Y then X, one batch each: each holds what the other needs
    next. PostgreSQL aborts one: it is answered 503 ``unavailable`` (nothing of it applied; send it
    again), never a 500; the other file is applied whole."""
    if backend != "postgres":
        pytest.skip("SQLite runs one upload at a time: no deadlock")
    monkeypatch.setattr(service, "BATCH", 1)
    x, y = person(number="1", name="交差 一"), person(number="2", name="交差 二")
    # each holds its first person before either goes on
    crossing = meet_at_first_call(bulk.PostgresWriter.insert_insureds, after=True)
    monkeypatch.setattr(bulk.PostgresWriter, "insert_insureds", crossing)
    with ThreadPoolExecutor(2) as pool:
        bodies = (eligibility_csv([x, y]), eligibility_csv([y, x]))
        answers = list(pool.map(lambda body: post(client, tokens["insurer"], body), bodies))
    assert sorted(r.status_code for r in answers) == [200, 503], [r.text[:300] for r in answers]
    (refused,) = [r for r in answers if r.status_code == 503]
    assert refused.json()["code"] == "unavailable"
    (applied,) = [r.json() for r in answers if r.status_code == 200]
    assert applied["accepted"] == 2
    assert count(session_factory, "SELECT count(*) FROM insured") == 2
    assert count(session_factory, "SELECT count(*) FROM upload") == 1
