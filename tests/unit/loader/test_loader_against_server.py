"""End to end: ``hokensha-load`` through the real app (``shikaku_server.app.create_app``), on both
backends of ``tests/conftest.py`` (SQLite and PostgreSQL + Redis)."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hokensha_loader.client import UploadClient
from hokensha_loader.commands import load as load_command
from hokensha_loader.core import default_report_path, upload_file
from hokensha_loader.status_codes import ExitCode
from shikaku_server.eligibility.service import today_jst
from testbed.population import (
    Insurer,
    Person,
    PopulationConfig,
    generate_population,
    write_eligibility_csv,
    write_eligibility_ndjson,
    write_medications_csv,
)
from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, INSURER_KOKUHO

from .helpers import MY_NUMBER, Result, csv_text, row

TODAY = today_jst()  # the server answers "as of" a date; the population is built around today
INSURERS = (Insurer(INSURER_A, "全国健康保険協会 東京支部", "kyokai"),
            Insurer(INSURER_KOKUHO, "国民健康保険", "kokuho"))


@pytest.fixture
def via_app(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's uploads go to the app under test."""
    monkeypatch.setattr(load_command, "UploadClient", functools.partial(UploadClient, http=client))


def query(client: TestClient, token: str, person: Person, **extra: Any) -> dict[str, Any]:
    body = {"insurer_number": person.insurer_number, "symbol": person.symbol, "number": person.number,
            "branch": person.branch, "birth_date": person.birth_date.isoformat(), **extra}
    r = client.post("/v1/eligibility/by-number", json=body, headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_generated_population_loads_and_answers(
    tmp_path: Path, client: TestClient, tokens: dict[str, str], via_app: None, load: Callable[..., Result]
) -> None:
    population = generate_population(150, seed=3, today=TODAY, config=PopulationConfig(insurers=INSURERS))
    path = tmp_path / "eligibility.csv"
    rows = write_eligibility_csv(path, population.people, encoding="cp932")

    result = load("eligibility", path, "--token", tokens["insurer"])

    assert result.code == ExitCode.OK, result.out + result.err
    assert f"accepted {rows:,}, rejected 0" in result.out
    assert not default_report_path(path).exists()

    stable = next(p for p in population.valid_on(TODAY) if p.change is None)
    answer = query(client, tokens["reception"], stable, as_of=TODAY.isoformat())
    assert answer["validity"] == 1
    assert answer["insured"]["copay_ratio"] == stable.copay_ratio
    assert answer["insured"]["name"] == stable.name.replace("𠮷", "吉")  # CP932 cannot hold 𠮷

    lost = population.lost()[0]
    assert lost.lost_on is not None
    assert query(client, tokens["reception"], lost, as_of=lost.lost_on.isoformat())["validity"] == 1
    after = (lost.lost_on + dt.timedelta(days=1)).isoformat()
    assert query(client, tokens["reception"], lost, as_of=after)["validity"] == 2

    again = load("eligibility", path, "--token", tokens["insurer"])
    assert again.code == ExitCode.OK
    assert "duplicate: yes" in again.out


def test_ndjson_and_medications_load(
    tmp_path: Path, tokens: dict[str, str], via_app: None, load: Callable[..., Result]
) -> None:
    population = generate_population(60, seed=4, today=TODAY, config=PopulationConfig(insurers=INSURERS))
    eligibility = tmp_path / "e.ndjson"
    n = write_eligibility_ndjson(eligibility, population.people)
    assert f"accepted {n:,}" in load("eligibility", eligibility, "--token", tokens["insurer"]).out

    medications = tmp_path / "m.csv"
    m = write_medications_csv(medications, population.people, today=TODAY)
    result = load("medications", medications, "--token", tokens["insurer"])
    assert result.code == ExitCode.OK, result.out + result.err
    assert f"accepted {m:,}" in result.out


def test_server_rejects_land_in_the_report_with_physical_lines(
    tmp_path: Path, client: TestClient, tokens: dict[str, str]
) -> None:
    path = tmp_path / "e.csv"
    text = csv_text(
        row(insurer_number=INSURER_A),
        row(insurer_number=INSURER_A, number="2", sex="4"),
        row(insurer_number=INSURER_A, number="3", address='"東京都\n千代田区"'),
        row(insurer_number=INSURER_A, number="4", name=f"山田　{MY_NUMBER}"),
        row(insurer_number=INSURER_B, number="5"),  # another insurer's number: not this token's
    )
    path.write_text(text, encoding="utf-8")

    with UploadClient("http://testserver", tokens["insurer"], http=client) as uploader:
        summary = upload_file(path, "eligibility", "csv", client=uploader,
                              report_path=default_report_path(path))

    assert (summary.accepted, summary.rejected) == (2, 3)
    assert summary.exit_code == ExitCode.ROWS_REJECTED
    report = list(csv.DictReader(io.StringIO(default_report_path(path).read_bytes().decode("utf-8-sig"))))
    by_line = {r["line"]: r for r in report}
    assert by_line["3"]["field"] == "sex"
    assert by_line["6"]["code"] == "my_number_detected"
    assert "7" in by_line
    assert MY_NUMBER not in default_report_path(path).read_text(encoding="utf-8-sig")


def test_bad_token_and_refused_file(
    tmp_path: Path, tokens: dict[str, str], via_app: None, load: Callable[..., Result]
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(insurer_number=INSURER_A)), encoding="utf-8")
    bad = load("eligibility", path, "--token", "not-a-token")
    assert bad.code == ExitCode.SERVER_ERROR
    assert "refused the token" in bad.err

    path.write_text("action,insurer_number,symbol,number,branch,colour\n", encoding="utf-8")
    refused = load("eligibility", path, "--token", tokens["insurer"])
    assert refused.code == ExitCode.FILE_REFUSED
