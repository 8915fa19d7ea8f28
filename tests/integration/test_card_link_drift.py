"""The insurers' drift report (docs/card.md, Drift since the link) on both backends: a linked
person whose record changed after the link shows, with the facts that changed; a change that
normalises away (spacing) does not; another insurer's person never shows."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from testbed.pki import TestCA
from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, change, eligibility_csv, person
from tests.integration.test_card_api import problem_code, register
from tests.integration.test_eligibility_api import upload

ADDRESS = "東京都千代田区霞が関1-2-2"
PEOPLE = [  # (insurer, number, name): names outside JIS X 0208 among them
    (INSURER_A, "1", "髙橋 一郎"),
    (INSURER_A, "2", "山﨑 花子"),
    (INSURER_A, "3", "\ue000野 三郎"),  # a private-use 外字
    (INSURER_B, "4", "𠮷田 四郎"),
]


def drift(client: TestClient, token: str, after: int = 0) -> dict[str, Any]:
    r = client.get(f"/v1/insurer/card-link-drift?after={after}", headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_records_changed_after_the_link_are_reported_to_their_own_insurer_only(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA
) -> None:
    for insurer, token in ((INSURER_A, "insurer"), (INSURER_B, "insurer_b")):
        rows = [person(insurer_number=i, number=n, name=name) for i, n, name in PEOPLE if i == insurer]
        assert upload(client, tokens[token], eligibility_csv(rows))["rejected"] == 0
    for _, _, name in PEOPLE:
        facts = {"name": name, "birth_date": "1980-04-01", "sex": "1", "address": ADDRESS}
        r = register(client, tokens["reception"], test_ca.issue_auth_certificate(), facts)
        assert r.status_code == 200, r.text
    assert drift(client, tokens["insurer"])["links"] == []  # nothing changed yet

    # after the links: 1 moves, 2 is re-sent with a full-width space (the same fact normalised),
    # 3 changes name and birth date; insurer B's 4 changes name
    assert upload(client, tokens["insurer"], eligibility_csv([
        change(number="1", address="大阪府大阪市北区梅田1-1-1"),
        change(number="2", name="山﨑\u3000花子", address=ADDRESS.replace("1-2-2", "１－２－２")),
        change(number="3", name="\ue001野 三郎", birth_date="1981-04-01"),
    ]))["rejected"] == 0
    assert upload(client, tokens["insurer_b"], eligibility_csv([
        change(insurer_number=INSURER_B, number="4", name="吉田 四郎"),
    ]))["rejected"] == 0

    mine = drift(client, tokens["insurer"])
    assert [(x["number"], x["drifted"]) for x in mine["links"]] == [("1", ["address"]), ("3", ["name", "birth_date"])]
    assert {x["insurer_number"] for x in mine["links"]} == {INSURER_A}
    assert all(x["changed_at"] >= x["linked_at"] for x in mine["links"])
    assert mine["next_after"] >= mine["links"][-1]["link_id"]
    assert drift(client, tokens["insurer"], mine["next_after"]) == {"links": [], "next_after": mine["next_after"]}
    theirs = drift(client, tokens["insurer_b"])
    assert [(x["insurer_number"], x["number"], x["drifted"]) for x in theirs["links"]] == [(INSURER_B, "4", ["name"])]
    refused = client.get("/v1/insurer/card-link-drift", headers=auth(tokens["reception"]))
    assert refused.status_code == 403 and problem_code(refused) == "forbidden_role"
