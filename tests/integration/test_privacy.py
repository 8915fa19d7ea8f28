"""Privacy, tested: no My Number and no plain token anywhere in the database; no personal data
in logs or metrics, even at DEBUG."""

from __future__ import annotations

import logging
import re
import subprocess
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from schemas.identifiers import is_my_number
from shikaku_server.config import Settings
from shikaku_server.logging_setup import configure
from testbed.pki import TestCA
from tests.conftest import auth
from tests.factories import eligibility_csv, person
from tests.integration.test_card_api import by_card, register
from tests.integration.test_eligibility_api import query, upload

MY_NUMBER = "123456789018"  # a valid check digit: the kind of value that must never land anywhere


def dump_database(settings: Settings) -> str:
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            text = "\n".join(raw.iterdump())
        engine.dispose()
        return text
    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(["pg_dump", "--data-only", dsn], check=True, capture_output=True, text=True).stdout


def scenario(client: TestClient, tokens: dict[str, str], test_ca: TestCA) -> None:
    rows = [
        person(),
        person(branch="01", name=f"山田 {MY_NUMBER}"),
        person(branch="02", address=f"東京都 {MY_NUMBER[:4]}-{MY_NUMBER[4:8]}-{MY_NUMBER[8:]}"),
        person(branch="03", number=MY_NUMBER),
    ]
    out = upload(client, tokens["insurer"], eligibility_csv(rows))
    assert out["accepted"] == 1 and out["rejected"] == 3
    assert all(e["code"] == "my_number_detected" for e in out["errors"])
    assert MY_NUMBER not in str(out)
    query(client, tokens["reception"], as_of="2025-01-01")
    r = client.post(
        "/v1/eligibility/by-number",
        headers=auth(tokens["reception"]),
        json={"insurer_number": rows[0]["insurer_number"], "number": MY_NUMBER, "birth_date": "1980-04-01"},
    )
    assert r.json()["code"] == "my_number_detected" and MY_NUMBER not in r.text
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    assert by_card(client, tokens["reception"], card).status_code == 200


def test_no_my_number_and_no_plain_tokens_in_the_database(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, settings: Settings
) -> None:
    scenario(client, tokens, test_ca)
    dump = dump_database(settings)
    assert "山田 太郎" in dump  # the dump is real and holds the accepted person
    found = [m for m in re.findall(r"(?<!\d)\d{12}(?!\d)", dump) if is_my_number(m)]
    assert found == []
    for token in tokens.values():
        assert token not in dump
        assert token.split("_", 2)[2] not in dump


def test_logs_and_metrics_hold_no_personal_data(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("DEBUG")  # the server's own log set-up, at its most talkative
    try:
        scenario(client, tokens, test_ca)
        text = capsys.readouterr().err + client.get("/metrics").text
    finally:
        configure("WARNING")
        logging.getLogger().handlers.clear()
    assert '"route": "/v1/eligibility/by-number"' in text  # the request lines are there
    for secret in (MY_NUMBER, "山田", "ヤマダ", "1980-04-01", "霞が関", "4567", *tokens.values()):
        assert secret not in text, secret


def test_tokens_are_stored_hashed(client: TestClient, tokens: dict[str, str], session_factory: Any) -> None:
    with session_factory() as s:
        hashes = {h for (h,) in s.execute(sa.text("SELECT token_hash FROM api_token"))}
    from shikaku_server.digests import sha256_text

    assert {sha256_text(t.encode()) for t in tokens.values()} <= hashes
    assert not hashes & set(tokens.values())
