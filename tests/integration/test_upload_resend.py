"""A re-send of records already applied changes nothing and rejects nothing, whatever happened to
them since (an add later lost or changed, in the same file or an earlier one), and a cumulative
file (old rows + new rows) loads only the new ones (both backends)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import shikaku_server.upload.service as service
from shikaku_server.auth.service import add_insurer
from shikaku_server.database import transaction
from testbed.population import ELIGIBILITY_HEADER, PopulationConfig, eligibility_rows, generate_population, write_csv
from tests.conftest import auth
from tests.factories import change, eligibility_csv, person

TODAY = dt.date(2026, 6, 1)


def upload(client: TestClient, token: str, body: bytes) -> dict[str, Any]:
    r = client.post("/v1/uploads?kind=eligibility", content=body, headers={**auth(token), "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert out["duplicate"] is False
    return out


def table(session_factory: Any) -> list[tuple[Any, ...]]:
    """Every eligibility row, current and superseded, as stored."""
    with session_factory() as s:
        return [tuple(r) for r in s.execute(sa.text("SELECT * FROM eligibility_period ORDER BY id")).all()]


@pytest.fixture
def population() -> Any:
    config = PopulationConfig(loss_rate=0.25, change_rate=0.35)
    return generate_population(400, seed=9, today=TODAY, config=config)


@pytest.fixture
def token(session_factory: Any, population: Any) -> str:
    with transaction(session_factory) as s:
        return add_insurer(s, numbers=sorted({p.insurer_number for p in population.people}), name="再送試験")


@pytest.mark.parametrize("batch", [7, 10000])
def test_the_same_history_with_a_trailing_newline_changes_nothing(
    client: TestClient,
    session_factory: Any,
    population: Any,
    token: str,
    batch: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setattr(service, "BATCH", batch)
    path = tmp_path / "eligibility.csv"
    n = write_csv(path, ELIGIBILITY_HEADER, eligibility_rows(population.people))
    assert population.lost() and population.changed()  # adds, changes and losses
    body = path.read_bytes()
    first = upload(client, token, body)
    assert (first["accepted"], first["rejected"]) == (n, 0), first["errors"][:3]
    before = table(session_factory)
    again = upload(client, token, body + b"\n")
    assert (again["accepted"], again["rejected"], again["unchanged"]) == (0, 0, n), again["errors"][:3]
    assert table(session_factory) == before


def test_a_cumulative_file_loads_only_its_new_rows(
    client: TestClient, session_factory: Any, population: Any, token: str, tmp_path: Any
) -> None:
    people = population.people
    old, new = people[:250], people[250:]
    old_path, all_path = tmp_path / "old.csv", tmp_path / "all.csv"
    n_old = write_csv(old_path, ELIGIBILITY_HEADER, eligibility_rows(old))
    n_all = write_csv(all_path, ELIGIBILITY_HEADER, eligibility_rows(people))
    assert upload(client, token, old_path.read_bytes())["accepted"] == n_old
    before = table(session_factory)
    out = upload(client, token, all_path.read_bytes())
    assert (out["accepted"], out["rejected"], out["unchanged"]) == (n_all - n_old, 0, n_old), out["errors"][:3]
    after = table(session_factory)
    assert after[: len(before)] == before  # the old rows untouched; the new ones appended
    assert len(after) > len(before) and new


def test_events_of_an_earlier_file_make_the_adds_of_a_re_send_unchanged(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    adds = [
        person(number="1"),
        person(number="2"),
        person(number="3", valid_from="2024-05-01"),
        person(number="4", valid_to="2025-03-31", reason_of_loss="03"),
        person(number="4", valid_from="2025-06-01", copay_ratio="20"),  # joined again later
    ]
    events = [
        person(action="loss", number="1", valid_to="2024-09-30", reason_of_loss="03"),
        change(number="2", valid_from="2024-07-01", copay_ratio="20"),
        change(number="2", valid_from="2025-01-01", address="大阪府大阪市北区1-1"),
        person(action="loss", number="2", valid_to="2025-06-30", reason_of_loss="99"),
        person(action="loss", number="3", valid_to="2024-05-01", reason_of_loss="01"),  # a one-day period
    ]
    token = tokens["insurer"]
    assert upload(client, token, eligibility_csv(adds))["accepted"] == 5
    assert upload(client, token, eligibility_csv(events))["accepted"] == 5
    before = table(session_factory)
    out = upload(client, token, eligibility_csv(adds + events))
    assert (out["accepted"], out["rejected"], out["unchanged"]) == (0, 0, 10), out["errors"]
    assert table(session_factory) == before
    # a genuinely new period that overlaps a stored one is still refused
    clash = upload(client, token, eligibility_csv([person(number="1", valid_from="2024-06-01")]))
    assert [e["code"] for e in clash["errors"]] == ["overlap"]


def clinical_table(session_factory: Any, name: str) -> list[tuple[Any, ...]]:
    with session_factory() as s:
        return [tuple(r) for r in s.execute(sa.text(f"SELECT * FROM {name} ORDER BY id")).all()]


@pytest.mark.parametrize("kind", ["medications", "checkups"])
def test_a_clinical_file_sent_again_changes_nothing_even_with_a_key_twice(
    client: TestClient,
    session_factory: Any,
    population: Any,
    token: str,
    tmp_path: Any,
    kind: str,
) -> None:
    from testbed.population import write_checkups_csv, write_medications_csv

    path = tmp_path / "eligibility.csv"
    write_csv(path, ELIGIBILITY_HEADER, eligibility_rows(population.people))
    upload(client, token, path.read_bytes())
    clinical = tmp_path / f"{kind}.csv"
    write = write_medications_csv if kind == "medications" else write_checkups_csv
    n = write(clinical, population.people, today=TODAY)
    body = clinical.read_bytes()
    # the same natural key twice in the file, with another value the second time (the last wins)
    header, first_row = body.decode().split("\n")[:2]
    cells = dict(zip(header.split(","), first_row.split(","), strict=True))
    field = "days" if kind == "medications" else "systolic"
    cells[field] = "299" if cells[field] != "299" else "298"
    body += (",".join(cells.values()) + "\n").encode()
    sent = client.post(
        f"/v1/uploads?kind={kind}", content=body, headers={**auth(token), "Content-Type": "text/csv"}
    ).json()
    assert (sent["accepted"], sent["rejected"]) == (n + 1, 0), sent["errors"][:3]
    table_name = "medication" if kind == "medications" else "checkup"
    before = clinical_table(session_factory, table_name)
    again = client.post(
        f"/v1/uploads?kind={kind}", content=body + b"\n", headers={**auth(token), "Content-Type": "text/csv"}
    ).json()
    assert (again["accepted"], again["rejected"], again["unchanged"]) == (0, 0, n + 1), again["errors"][:3]
    assert clinical_table(session_factory, table_name) == before
