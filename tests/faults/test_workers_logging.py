"""``shikaku-server --workers 2``: every worker logs (request and upload lines), every line on
stdout and stderr is one JSON object, and a database error's DETAIL (which may quote a
person's identifiers) never reaches the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from shikaku_server.auth.service import add_facility, add_insurer, hash_token
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from tests.conftest import FACILITY_CODE, auth
from tests.factories import INSURER_A, INSURER_B, eligibility_csv, person
from tests.faults.conftest import PrivatePG, PrivateRedis, free_port
from tests.serving import wait_until_serving

pytestmark = pytest.mark.slow

SECRET = "123456789018"  # what a DETAIL would quote
TRIGGER = """
CREATE FUNCTION refuse_upload() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.token_id = {token_id} THEN
    RAISE EXCEPTION 'duplicate key value violates unique constraint "uq_insured_key"'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Key (insurer_number, symbol_norm, number_norm, branch)=({secret}, 1, 2, 00) already exists.';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_upload BEFORE INSERT ON upload FOR EACH ROW EXECUTE FUNCTION refuse_upload();
"""


def test_two_workers_log_every_request_as_json_without_detail(
    private_pg: PrivatePG, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    upgrade(private_pg.url)
    engine = make_engine(private_pg.url)
    with transaction(make_session_factory(engine)) as s:
        reception = add_facility(s, code=FACILITY_CODE, name="しかく内科クリニック", role="reception")
        insurer = add_insurer(s, numbers=[INSURER_A], name="協会")
        insurer_b = add_insurer(s, numbers=[INSURER_B], name="組合")
    with engine.begin() as conn:
        token_id = conn.execute(
            sa.text("SELECT id FROM api_token WHERE token_hash = :h"), {"h": hash_token(insurer_b)}
        ).scalar_one()
        conn.execute(sa.text(TRIGGER.format(token_id=token_id, secret=SECRET)))
    engine.dispose()

    port = free_port()
    env = {
        **os.environ,
        "SHIKAKU_DATABASE_URL": private_pg.url,
        "SHIKAKU_REDIS_URL": private_redis.url,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from shikaku_server.main import main; main()",
                "--workers",
                "2",
                "--port",
                str(port),
                "--no-migrate",
            ],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, proc, err.read_text, path="/readyz", timeout=30)
            with httpx.Client(base_url=base, timeout=10) as client:
                r = client.post(
                    "/v1/uploads?kind=eligibility",
                    content=eligibility_csv([person()]),
                    headers={**auth(insurer), "Content-Type": "text/csv"},
                )
                assert r.status_code == 200, r.text
                r = client.post(
                    "/v1/uploads?kind=eligibility",
                    content=eligibility_csv([person(insurer_number=INSURER_B)]),
                    headers={**auth(insurer_b), "Content-Type": "text/csv"},
                )
                assert r.status_code == 500 and SECRET not in r.text  # the trigger's error
                query = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "birth_date": "1980-04-01"}
                for _ in range(20):  # a new connection each: either worker may answer
                    r = httpx.post(f"{base}/v1/eligibility/by-number", json=query, headers=auth(reception))
                    assert r.status_code == 200, r.text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    lines = out.read_text().splitlines() + err.read_text().splitlines()
    records = []
    for line in lines:
        assert SECRET not in line and "DETAIL" not in line, line
        records.append(json.loads(line))  # every line is JSON
        assert isinstance(records[-1], dict)
    served = [r for r in records if r["msg"] == "request" and r.get("route") != "/readyz"]
    assert len(served) == 22, served  # 2 uploads and 20 lookups, whichever worker answered
    assert sorted(r["status"] for r in served).count(500) == 1
    assert sum(1 for r in records if r["msg"] == "upload applied") == 1
    assert any(r.get("exc_type") == "IntegrityError" for r in records)
    started = {r["pid"] for r in records if r["msg"] == "Application startup complete."}
    assert len(started) == 2, "each worker process logs through the JSON formatter"
