"""First-use linking against mislinking (issue 9, item 5), on both backends: a linked card never
moves to another person, a person with a live card gets no second one, every link is in the
patient's access log and in the insurer's report."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.card.models import CardLinkAudit
from shikaku_server.config import Settings
from testbed.pki import TestCA
from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, eligibility_csv, person
from tests.integration.test_card_api import FACTS, by_card, problem_code, register, revoke
from tests.integration.test_eligibility_api import upload
from tests.integration.test_rate_limits import my_log

HANAKO = {"name": "鈴木 花子", "birth_date": "1990-07-07", "sex": "2", "address": "大阪府大阪市北区梅田1-1-1"}


@pytest.fixture
def two_people(client: TestClient, tokens: dict[str, str]) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [
                person(),
                person(
                    number="8888",
                    name=HANAKO["name"],
                    name_kana="スズキ ハナコ",
                    sex="2",
                    birth_date=HANAKO["birth_date"],
                    address=HANAKO["address"],
                ),
            ]
        ),
    )


def audits(session_factory: Any) -> list[str]:
    with session_factory() as s:
        return [a.outcome for a in s.query(CardLinkAudit).order_by(CardLinkAudit.id)]


def log_of(session_factory: Any, client: TestClient, name: str) -> list[str]:
    """The access-log ``what``s of the person called ``name`` (read from the database)."""
    from shikaku_server.eligibility.models import EligibilityPeriod

    client.app.state.shikaku.access_log.flush()  # type: ignore[attr-defined]
    with session_factory() as s:
        insured_id = s.execute(
            select(EligibilityPeriod.insured_id).where(EligibilityPeriod.name == name).limit(1)
        ).scalar_one()
        return [w for (w,) in s.execute(select(AccessLogEntry.what).where(AccessLogEntry.insured_id == insured_id))]


def test_a_linked_card_is_never_moved_to_another_person(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, two_people: None, session_factory: Any
) -> None:
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).json()["status"] == "linked"
    # facility B (the pharmacy) presents the same card with someone else's facts
    r = register(client, tokens["pharmacist"], card, HANAKO)
    assert r.status_code == 409 and problem_code(r) == "registration_conflict"
    assert "鈴木" not in r.text and "1990" not in r.text
    assert by_card(client, tokens["reception"], card).json()["insured"]["name"] == "山田 太郎"
    assert audits(session_factory) == ["linked", "refused_relink"]
    # both people see it: the one whose facts were used and the card's owner
    assert log_of(session_factory, client, HANAKO["name"]) == ["card_link_refused"]
    assert sorted(log_of(session_factory, client, "山田 太郎")) == ["card_link", "card_link_refused", "eligibility"]


def test_an_unrelated_card_with_the_facts_of_a_person_with_a_live_card_is_refused(
    client: TestClient,
    tokens: dict[str, str],
    test_ca: TestCA,
    two_people: None,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], own).status_code == 200
    unrelated = test_ca.issue_auth_certificate()
    r = register(client, tokens["pharmacist"], unrelated, FACTS)
    assert r.status_code == 409 and problem_code(r) == "registration_conflict"
    assert problem_code(by_card(client, tokens["pharmacist"], unrelated)) == "card_not_registered"
    assert audits(session_factory) == ["linked", "refused_second_card"]
    # once the older certificate is revoked (renewal, loss), the new card links like a first use
    revoke(test_ca, own.serial_number, session_factory, settings, monkeypatch)
    assert register(client, tokens["reception"], unrelated).json()["status"] == "linked"
    assert by_card(client, tokens["reception"], unrelated).json()["insured"]["name"] == "山田 太郎"


def test_a_new_insurance_of_the_same_person_takes_the_link(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, session_factory: Any
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).json()["insurer_number"] == INSURER_A
    # the person changes jobs: insurer A ends the record, insurer B adds one with the same facts
    upload(
        client, tokens["insurer"], eligibility_csv([person(action="loss", valid_to="2025-12-31", reason_of_loss="01")])
    )
    upload(client, tokens["insurer_b"], eligibility_csv([person(insurer_number=INSURER_B, number="1")]))
    assert by_card(client, tokens["reception"], card).json()["validity"] == 3
    r = register(client, tokens["reception"], card)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "linked", "insurer_number": INSURER_B, "branch": "00"}
    assert audits(session_factory) == ["linked", "relinked"]
    assert by_card(client, tokens["reception"], card).json()["validity"] == 1


def test_every_link_is_in_the_patients_access_log(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, two_people: None
) -> None:
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["pharmacist"], card).status_code == 200
    entries = my_log(client, tokens["reception"], card)
    links = [e for e in entries if e["what"] == "card_link"]
    assert [(e["facility_code"], e["facility_name"], e["role"]) for e in links] == [
        ("1341234563", "さくら薬局", "pharmacist")
    ]


def test_the_insurer_is_told_of_links_of_its_people_only(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, two_people: None
) -> None:
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    assert register(client, tokens["pharmacist"], card, HANAKO).status_code == 409
    r = client.get("/v1/insurer/card-links", headers=auth(tokens["insurer"]))
    assert r.status_code == 200, r.text
    links = r.json()["links"]
    assert [(x["outcome"], x["number"], x["facility_code"]) for x in links] == [
        ("linked", "４５６７", "0110113719"),
        ("refused_relink", "8888", "1341234563"),
    ]
    assert all(x["insurer_number"] == INSURER_A for x in links)
    # paging: after the last id nothing more; since a later time nothing
    after = client.get(f"/v1/insurer/card-links?after={links[-1]['id']}", headers=auth(tokens["insurer"]))
    assert after.json() == {"links": [], "next_after": links[-1]["id"]}
    later = client.get("/v1/insurer/card-links?since=2100-01-01T00:00:00Z", headers=auth(tokens["insurer"]))
    assert later.json()["links"] == []
    # another insurer sees none of it; a facility may not ask
    assert client.get("/v1/insurer/card-links", headers=auth(tokens["insurer_b"])).json()["links"] == []
    refused = client.get("/v1/insurer/card-links", headers=auth(tokens["reception"]))
    assert refused.status_code == 403 and problem_code(refused) == "forbidden_role"


@pytest.mark.parametrize("after", [2**63, 10**30, -1])
def test_a_cursor_beyond_any_id_is_422_not_500(client: TestClient, tokens: dict[str, str], after: int) -> None:
    # found by the schema fuzzer: an integer SQLite cannot bind (OverflowError) was a 500
    r = client.get(f"/v1/insurer/card-links?after={after}", headers=auth(tokens["insurer"]))
    assert r.status_code == 422 and problem_code(r) == "validation_error", r.text
    last = client.get(f"/v1/insurer/card-links?after={2**63 - 1}", headers=auth(tokens["insurer"]))
    assert last.status_code == 200 and last.json()["links"] == []
