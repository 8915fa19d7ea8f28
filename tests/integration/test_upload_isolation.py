"""Re-sends are recognised per uploader: one insurer never gets another's outcome (both backends)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, eligibility_csv, person


def send(client: TestClient, token: str, body: bytes, *, digest: bool) -> dict[str, Any]:
    headers = {**auth(token), "Content-Type": "text/csv"}
    if digest:
        headers["X-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    r = client.post("/v1/uploads?kind=eligibility", content=body, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def rows_of(insurer: str) -> bytes:
    return eligibility_csv([person(insurer_number=insurer, number=str(n), name=f"試験 {n}") for n in range(1, 4)])


@pytest.mark.parametrize("digest", [False, True], ids=["body", "x-content-sha256"])
@pytest.mark.parametrize(("owner", "other"), [("insurer", "insurer_b"), ("insurer_b", "insurer")])
def test_another_insurers_earlier_upload_of_the_same_bytes_is_no_duplicate(
    client: TestClient, tokens: dict[str, str], digest: bool, owner: str, other: str
) -> None:
    body = rows_of(INSURER_A if owner == "insurer" else INSURER_B)
    # the other party sends the owner's file first (every row is refused: not its insurer)...
    first = send(client, tokens[other], body, digest=digest)
    assert (first["accepted"], first["rejected"], first["duplicate"]) == (0, 3, False)
    assert {e["code"] for e in first["errors"]} == {"insurer_not_permitted"}
    # ...and the owner's real upload is applied, with nothing of the other party's outcome
    real = send(client, tokens[owner], body, digest=digest)
    assert (real["accepted"], real["rejected"], real["unchanged"], real["duplicate"]) == (3, 0, 0, False)
    assert real["errors"] == [] and real["upload_id"] != first["upload_id"]
    # each party's own re-send is its own duplicate
    again = send(client, tokens[owner], body, digest=digest)
    assert (again["duplicate"], again["upload_id"], again["unchanged"], again["errors"]) == (
        True,
        real["upload_id"],
        3,
        [],
    )
    other_again = send(client, tokens[other], body, digest=digest)
    assert (other_again["duplicate"], other_again["upload_id"], other_again["rejected"]) == (
        True,
        first["upload_id"],
        3,
    )
    assert {e["code"] for e in other_again["errors"]} == {"insurer_not_permitted"}


def test_a_second_token_of_the_same_insurer_shares_its_re_sends(client: TestClient, tokens: dict[str, str]) -> None:
    from shikaku_server.auth.service import add_insurer
    from shikaku_server.database import transaction

    body = rows_of(INSURER_B)
    first = send(client, tokens["insurer_b"], body, digest=False)
    factory = client.app.state.shikaku.session_factory  # type: ignore[attr-defined]
    with transaction(factory) as s:
        rotated = add_insurer(s, numbers=[INSURER_B], name="しかく健康保険組合")
    again = send(client, rotated, body, digest=True)
    assert (again["duplicate"], again["upload_id"]) == (True, first["upload_id"])
