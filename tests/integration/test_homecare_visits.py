"""居宅同意取得型, the rest of it: the 目視確認 first visit (recorded as such, on the visit and in
the patient's access log), the course's consent (its extent and its end), the facility's list of
ongoing courses, and 再照会 refused once the course's consent has ended or been refused."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.consent.models import Consent, Visit
from testbed.pki import IssuedCertificate
from tests.conftest import auth
from tests.factories import INSURER_A
from tests.integration.test_card_api import FACTS, problem_code
from tests.integration.test_consent_api import card, consent, visit
from tests.integration.test_homecare_recheck import recheck
from tests.integration.test_me_api import me

__all__ = ["card"]

INSURANCE = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00",
             "birth_date": "1980-04-01"}
TODAY = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()


def visual(client: TestClient, token: str, **body: Any) -> Any:
    return client.post("/v1/visits/visual", headers=auth(token), json={"confirmed_by": "訪問 看護師", **body})


def courses(client: TestClient, token: str, **params: str) -> Any:
    r = client.get("/v1/home-courses", headers=auth(token), params=params)
    assert r.status_code == 200, r.text
    return r.json()["courses"]


def test_visual_check_is_recorded_as_such_and_the_patient_sees_it(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    insurance = INSURANCE
    by_facts = visual(client, tokens["physician"], four_facts=FACTS)
    assert by_facts.status_code == 200, by_facts.text
    body = by_facts.json()
    assert body["validity"] == 1 and body["visit_id"] and body["insured"]["name"] == "山田 太郎"
    assert body["limit_certificate"] is None  # answered before the visit's consent, as a card check
    by_number = visual(client, tokens["physician"], insurance=insurance)
    assert by_number.status_code == 200 and by_number.json()["visit_id"]
    with session_factory() as s:
        row = s.get(Visit, body["visit_id"])
        assert row is not None
        assert (row.auth_method, row.confirmed_by) == ("visual", "訪問 看護師")
        assert row.confirmed_token_id is not None
    # a course of care on it: home-care consent with its extent and its last day
    until = TODAY + dt.timedelta(days=90)
    given = consent(client, tokens["physician"], body["visit_id"], drug=True, setting="home", online_care=False,
                    course_until=until.isoformat())
    assert given.status_code == 200, given.text
    record = given.json()
    assert (record["home_visit"], record["online_care"]) == (True, False)
    ends = dt.datetime.fromisoformat(record["expires_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (ends.date(), ends.hour, ends.minute) == (until, 23, 59)
    r = recheck(client, tokens["reception"], body["visit_id"])
    assert r.status_code == 200 and r.json()["validity"] == 1
    # online care is outside this course's extent
    r = recheck(client, tokens["physician"], body["visit_id"], care="online")
    assert r.status_code == 403 and problem_code(r) == "consent_required"
    # the patient sees how they were confirmed, at the check and at each re-check
    log = me(client, "/v1/me/access-log", card).json()["entries"]
    kinds = [(e["query_kind"], e["confirmation"]) for e in log if e["what"] == "eligibility"]
    assert ("visual", "visual") in kinds and ("recheck", "visual") in kinds
    assert ("card", "pin") not in kinds  # no card was read at this facility


def test_visual_check_needs_one_person_and_staff(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    wrong = visual(client, tokens["physician"], four_facts={**FACTS, "address": "大阪府大阪市北区1-1"})
    assert wrong.status_code == 200 and wrong.json()["validity"] == 4 and wrong.json()["visit_id"] is None
    wrong_birth = visual(client, tokens["physician"], insurance={**INSURANCE, "birth_date": "1981-04-01"})
    assert wrong_birth.json()["validity"] == 4 and wrong_birth.json()["visit_id"] is None
    both = visual(client, tokens["physician"], four_facts=FACTS, insurance=INSURANCE)
    assert both.status_code == 422
    assert visual(client, tokens["physician"], four_facts=FACTS, confirmed_by="").status_code == 422
    assert client.post("/v1/visits/visual", json={"confirmed_by": "x", "four_facts": FACTS}).status_code == 401
    assert visual(client, tokens["insurer"], four_facts=FACTS).status_code == 403
    with session_factory() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Visit)).scalar() == 0
        tried = s.execute(sa.select(AccessLogEntry.what, AccessLogEntry.query_kind)).all()
    # the wrong birth date was tried on the person of that number: they see it
    assert ("eligibility_no_match", "visual") in [tuple(t) for t in tried]


def test_a_visual_visit_takes_a_home_consent_or_a_refusal(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visual(client, tokens["physician"], four_facts=FACTS).json()["visit_id"]
    r = consent(client, tokens["physician"], v, drug=True)  # outpatient sharing on a visual visit
    assert r.status_code == 422
    assert consent(client, tokens["physician"], v).status_code == 200  # a refusal is taken
    r = consent(client, tokens["physician"], visit(client, tokens["physician"], card), setting="outpatient",
                online_care=True)
    assert r.status_code == 422  # the extent belongs to home care
    v2 = visit(client, tokens["physician"], card)
    r = consent(client, tokens["physician"], v2, setting="home", home_visit=False, online_care=False)
    assert r.status_code == 422
    r = consent(client, tokens["physician"], v2, setting="home",
                course_until=(TODAY + dt.timedelta(days=400)).isoformat())
    assert r.status_code == 422


def test_recheck_after_the_course_ended_or_was_refused(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    first = visit(client, tokens["physician"], card)
    given = consent(client, tokens["physician"], first, setting="home", drug=True,
                    course_until=TODAY.isoformat()).json()
    assert recheck(client, tokens["physician"], first, care="online").status_code == 200  # both kinds by default
    # the course's last day has passed
    with session_factory.begin() as s:
        s.execute(sa.update(Consent).where(Consent.id == given["consent_id"])
                  .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    r = recheck(client, tokens["physician"], first)
    assert r.status_code == 403 and problem_code(r) == "consent_expired"
    assert courses(client, tokens["physician"]) == []
    # a new course, then the patient refuses at a later card check: the refusal beats it
    second = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], second, setting="home").status_code == 200
    assert recheck(client, tokens["physician"], second).status_code == 200
    third = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], third).status_code == 200  # 提供しない, outpatient
    for v in (first, second):
        r = recheck(client, tokens["physician"], v)
        assert r.status_code == 403 and problem_code(r) in ("consent_required", "consent_expired")
    assert problem_code(recheck(client, tokens["physician"], second)) == "consent_required"
    # a refusal at a later 目視確認 ends a course too
    fourth = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], fourth, setting="home").status_code == 200
    v = visual(client, tokens["physician"], four_facts=FACTS).json()["visit_id"]
    assert consent(client, tokens["physician"], v).status_code == 200
    assert problem_code(recheck(client, tokens["physician"], fourth)) == "consent_required"


def test_the_list_of_courses_is_the_facilitys_and_each_listing_is_logged(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    assert courses(client, tokens["physician"]) == []
    v = visual(client, tokens["physician"], four_facts=FACTS).json()["visit_id"]
    cid = consent(client, tokens["physician"], v, setting="home", limit_certificate=True).json()["consent_id"]
    listed = courses(client, tokens["reception"])
    assert len(listed) == 1
    course = listed[0]
    assert (course["visit_id"], course["consent_id"], course["confirmation"], course["confirmed_by"]) == (
        v, cid, "visual", "訪問 看護師")
    assert course["person"]["name"] == "山田 太郎" and course["person"]["birth_date"] == "1980-04-01"
    assert (course["home_visit"], course["online_care"], course["limit_certificate"]) == (True, True, True)
    assert courses(client, tokens["pharmacist"]) == []  # another facility's courses are not listed
    one = courses(client, tokens["physician"], insurer_number=INSURER_A, symbol="１２３", number="4567")
    assert [c["visit_id"] for c in one] == [v]
    assert courses(client, tokens["physician"], insurer_number=INSURER_A, number="9999") == []
    with session_factory() as s:
        logged = s.execute(
            sa.select(AccessLogEntry.what, AccessLogEntry.consent_id).where(AccessLogEntry.what == "home_courses")
        ).all()
    assert [tuple(x) for x in logged] == [("home_courses", cid), ("home_courses", cid)]
    # withdrawn by the patient: off the list
    assert me(client, "/v1/me/consents/withdraw", card, consent_id=cid).status_code == 200
    assert courses(client, tokens["physician"]) == []
