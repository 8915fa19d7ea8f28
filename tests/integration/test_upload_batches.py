"""Uploads across batch boundaries: the fast path for new people, keys seen twice, state from an
earlier upload, the order of the errors, and a failure in the applying thread (both backends)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import shikaku_server.upload.service as service
from shikaku_server.auth.service import Principal
from shikaku_server.cache import InMemoryCache
from shikaku_server.upload.bulk import make_bulk_writers
from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, change, eligibility_csv, person


def upload(client: TestClient, token: str, body: bytes) -> dict[str, Any]:
    r = client.post("/v1/uploads?kind=eligibility", content=body, headers={**auth(token), "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def periods(session_factory: Any) -> list[tuple[Any, ...]]:
    with session_factory() as s:
        rows = s.execute(
            sa.text(
                "SELECT i.number_norm, i.branch, p.valid_from, p.valid_to, p.copay_ratio, p.address_norm, "
                "p.superseded_by IS NULL FROM eligibility_period p JOIN insured i ON i.id = p.insured_id"
            )
        ).all()
    return sorted((r[0], r[1], str(r[2]), str(r[3]), r[4], r[5], bool(r[6])) for r in rows)


@pytest.mark.parametrize("batch", [1, 2, 10000])
def test_edges_give_the_same_answer_whatever_the_batch(
    client: TestClient, tokens: dict[str, str], session_factory: Any, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(service, "BATCH", batch)
    rows = [
        person(number="1"),  # line 2: new
        person(number="1"),  # 3: the same key twice in the file: unchanged
        person(number="2"),  # 4
        person(number="2", valid_from="2024-05-01", name="別人"),  # 5: overlap with line 4
        person(number="3"),  # 6
        change(number="3", valid_from="2024-06-01", copay_ratio="20"),  # 7: change of line 6
        person(number="4", address=""),  # 8: no address
        person(number="5", birth_date="1980-13-01"),  # 9: invalid
        person(number="6", insurer_number=INSURER_B),  # 10: not this token's insurer
        person(number="7", valid_to="2024-12-31"),  # 11
        person(number="7", valid_from="2025-01-01"),  # 12: a second period of the same key
    ]
    out = upload(client, tokens["insurer"], eligibility_csv(rows))
    assert (out["accepted"], out["rejected"], out["unchanged"]) == (7, 3, 1)
    assert sorted((e["line"], e["code"]) for e in out["errors"]) == [
        (5, "overlap"),
        (9, "invalid_date"),
        (10, "insurer_not_permitted"),
    ]
    # current periods (a period added and changed in the same batch never reaches the table; in
    # two batches it is stored, then superseded)
    assert [p for p in periods(session_factory) if p[6]] == [
        ("1", "00", "2024-04-01", "None", 30, "東京都千代田区霞が関1-2-2", True),
        ("2", "00", "2024-04-01", "None", 30, "東京都千代田区霞が関1-2-2", True),
        ("3", "00", "2024-04-01", "2024-05-31", 30, "東京都千代田区霞が関1-2-2", True),
        ("3", "00", "2024-06-01", "None", 20, "東京都千代田区霞が関1-2-2", True),
        ("4", "00", "2024-04-01", "None", 30, None, True),
        ("7", "00", "2024-04-01", "2024-12-31", 30, "東京都千代田区霞が関1-2-2", True),
        ("7", "00", "2025-01-01", "None", 30, "東京都千代田区霞が関1-2-2", True),
    ]
    # a later upload: keys with state from the first one
    later = [
        person(number="1"),  # 2: the same period again
        person(number="4", address=""),  # 3: the same period again, no address
        person(number="2", valid_from="2024-05-01"),  # 4: overlap with the stored period
        person(action="loss", number="7", valid_to="2024-10-31", reason_of_loss="01"),  # 5: supersedes 2025-
        person(number="8"),  # 6: new
    ]
    again = upload(client, tokens["insurer"], eligibility_csv(later))
    assert (again["accepted"], again["rejected"], again["unchanged"]) == (2, 1, 2)
    assert [(e["line"], e["code"]) for e in again["errors"]] == [(4, "overlap")]
    current = [p for p in periods(session_factory) if p[6]]
    assert [p[:4] for p in current if p[0] in ("7", "8")] == [
        ("7", "00", "2024-04-01", "2024-10-31"),
        ("8", "00", "2024-04-01", "None"),
    ]


def test_errors_keep_the_file_order_across_batches(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejects of reading come before the rejects of applying the batch they precede, as the
    batch is applied when full: the list is the same whatever runs in which thread."""
    monkeypatch.setattr(service, "BATCH", 2)
    bad = {"birth_date": "x"}
    rows = [
        person(number="10", **bad),  # 2
        person(number="11", **bad),  # 3
        person(number="12", **bad),  # 4 (a unit of rejects alone: BATCH of them)
        person(number="1"),  # 5
        person(number="1", valid_from="2024-05-01"),  # 6: overlap, batch full here
        person(number="13", **bad),  # 7
        person(action="change", number="9", valid_from="2024-06-01"),  # 8: not_found, last batch
        person(number="14", **bad),  # 9
    ]
    out = upload(client, tokens["insurer"], eligibility_csv(rows))
    assert [e["line"] for e in out["errors"]] == [2, 3, 4, 6, 7, 9, 8]
    assert (out["accepted"], out["rejected"]) == (1, 7)


def test_a_failure_while_applying_rolls_back_everything(
    session_factory: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH", 3)
    calls: list[int] = []
    original = service._EligibilityApplier.apply

    def failing(self: Any, records: Any, outcome: Any, reject: Any, prepared: Any = None) -> None:
        calls.append(len(records))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        original(self, records, outcome, reject, prepared)

    monkeypatch.setattr(service._EligibilityApplier, "apply", failing)
    body = eligibility_csv([person(number=str(n)) for n in range(1, 20)])
    principal = Principal(1, "insurer", None, None, frozenset({INSURER_A}))
    with pytest.raises(RuntimeError, match="went away"):
        service.process_upload(
            session_factory,
            InMemoryCache(),
            principal,
            writers=make_bulk_writers(session_factory.kw["bind"]),
            kind="eligibility",
            fmt="csv",
            chunks=[body[i : i + 100] for i in range(0, len(body), 100)],
            error_limit=100,
            max_bytes=10**9,
        )
    assert len(calls) >= 2
    with session_factory() as s:
        assert s.execute(sa.text("SELECT count(*) FROM insured")).scalar_one() == 0
        assert s.execute(sa.text("SELECT count(*) FROM eligibility_period")).scalar_one() == 0
        assert s.execute(sa.text("SELECT count(*) FROM upload")).scalar_one() == 0
