"""Issue 9, privacy and consent: the drug/checkup windows run from the real day of the visit; every
write is committed before its answer (and a read whose access-log entry cannot be written serves
nothing); a refusal at this visit beats an earlier consent."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.batch.models import Batch
from shikaku_server.card.models import CardLink
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.eligibility.service import today_jst
from shikaku_server.upload.models import Upload
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person
from tests.integration.test_card_api import b64, by_card, challenge, problem_code, sign
from tests.integration.test_consent_api import MED_COLUMNS, card, consent, med, visit
from tests.integration.test_eligibility_api import upload

__all__ = ["card"]  # the fixture, shared with test_consent_api

REAL_DAY = today_jst()


def years_before(day: dt.date, years: int) -> dt.date:
    return day.replace(year=day.year - years) if (day.month, day.day) != (2, 29) else day.replace(
        year=day.year - years, day=28
    )


def meds(client: TestClient, token: str, visit_id: str) -> Any:
    return client.get(f"/v1/visits/{visit_id}/medications", headers=auth(token))


def count(session_factory: Any, model: Any) -> int:
    with session_factory() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(model)).scalar_one())


# ---------------------------------------------------------------- 1. windows from the real day


@pytest.fixture
def old_drugs(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    """Drugs of 2001 and 2015 besides the month-old and 4-year-old ones of the ``card`` fixture."""
    rows = [
        med(drug_code="620000001", drug_name="二〇〇一年の薬", dispensed_on="2001-06-01"),
        med(drug_code="620000002", drug_name="二〇一五年の薬", dispensed_on="2015-06-01"),
    ]
    upload(client, tokens["insurer"], csv_bytes(MED_COLUMNS, rows), kind="medications")


def test_a_past_as_of_opens_no_drug_history(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, old_drugs: None
) -> None:
    r = by_card(client, tokens["physician"], card, as_of="2000-01-01")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] == "2000-01-01" and body["validity"] == 4
    past = body["visit_id"]
    # a re-check of another day is for billing: no consent is taken on it, no data read through it
    refused = consent(client, tokens["physician"], past, drug=True, checkup=True)
    assert refused.status_code == 422 and problem_code(refused) == "validation_error"
    assert problem_code(meds(client, tokens["physician"], past)) == "consent_required"
    # even with a live consent taken at today's check, the past-dated visit reads nothing
    today = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], today, drug=True, checkup=True).status_code == 200
    assert problem_code(meds(client, tokens["physician"], past)) == "consent_required"
    r = client.get(f"/v1/visits/{past}/checkups", headers=auth(tokens["physician"]))
    assert problem_code(r) == "consent_required"
    # today's visit: five years back from the real day, never further
    r = meds(client, tokens["physician"], today)
    assert r.status_code == 200, r.text
    assert r.json()["since"] == years_before(REAL_DAY, 5).isoformat()
    assert [i["drug_name"] for i in r.json()["items"]] == ["ロキソプロフェンNa錠60mg", "アムロジピン錠5mg"]


def test_a_future_as_of_opens_no_drug_history(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    r = by_card(client, tokens["physician"], card, as_of=(REAL_DAY + dt.timedelta(days=30)).isoformat())
    assert r.status_code == 200, r.text
    future = r.json()["visit_id"]
    assert consent(client, tokens["physician"], future, drug=True).status_code == 422
    assert problem_code(meds(client, tokens["physician"], future)) == "consent_required"


def test_windows_run_from_the_day_the_visit_was_made(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    """A visit of yesterday read today: the windows end at yesterday, the day of the card check."""
    v = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v, drug=True, checkup=True).status_code == 200
    day = dt.timedelta(days=1)
    with session_factory.begin() as s:
        row = s.get(Visit, v)
        assert row is not None
        row.created_at -= day
        row.as_of -= day
    r = meds(client, tokens["physician"], v)
    assert r.status_code == 200, r.text
    assert r.json()["since"] == years_before(REAL_DAY - day, 5).isoformat()
    r = client.get(f"/v1/visits/{v}/checkups", headers=auth(tokens["physician"]))
    assert r.status_code == 200, r.text
    assert r.json()["since"] == years_before(REAL_DAY - day, 5).isoformat()


# ---------------------------------------------------------------- 2. commit before the answer
#
# ``client.stream`` hands back the response as soon as its head is sent, while the app still holds
# its body: whatever the route wrote must already be committed, and a request made then must see it.


def test_a_withdrawal_is_in_force_when_its_answer_arrives(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    for _ in range(3):
        assert consent(client, tokens["physician"], v, drug=True).status_code == 200
        assert meds(client, tokens["physician"], v).status_code == 200
        body = {"visit_id": v, "drug": False}
        with client.stream("POST", "/v1/consents", headers=auth(tokens["physician"]), json=body) as answer:
            assert answer.status_code == 200
            r = meds(client, tokens["physician"], v)
            assert r.status_code == 403 and problem_code(r) == "consent_required"


def test_a_consent_is_in_force_when_its_answer_arrives(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    for _ in range(3):
        v = visit(client, tokens["physician"], card)
        body = {"visit_id": v, "drug": True}
        with client.stream("POST", "/v1/consents", headers=auth(tokens["physician"]), json=body) as answer:
            assert answer.status_code == 200
            r = meds(client, tokens["physician"], v)
            assert r.status_code == 200, r.text
            assert r.json()["items"]


def test_every_write_is_committed_before_its_answer(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, card: IssuedCertificate, session_factory: Any
) -> None:
    token = tokens["reception"]
    newcomer = {"name": "佐藤 花子", "birth_date": "1990-01-02", "sex": "2", "address": "東京都港区芝公園4-2-8"}
    upload(client, tokens["insurer"], eligibility_csv([person(number="9999", name_kana="サトウ ハナコ", **newcomer)]))
    other = test_ca.issue_auth_certificate()
    ch = challenge(client, token)
    registration = {
        "challenge_id": ch["challenge_id"],
        "certificate": b64(other.der),
        "signature": sign(other.private_key, ch["nonce"]),
        "basic_facts": newcomer,
    }
    query = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
    v = visit(client, token, card)
    ch = challenge(client, token)
    check = {
        "challenge_id": ch["challenge_id"],
        "certificate": b64(card.der),
        "auth_method": "pin",
        "signature": sign(card.private_key, ch["nonce"]),
    }
    writes: list[tuple[str, dict[str, Any], Any]] = [
        ("/v1/card/registrations", registration, CardLink),
        ("/v1/eligibility/batches", {"queries": [query]}, Batch),
        ("/v1/consents", {"visit_id": v, "limit_certificate": True}, Consent),
        ("/v1/eligibility/by-card", check, Visit),
    ]
    for path, body, table in writes:
        before = count(session_factory, table)
        with client.stream("POST", path, headers=auth(token), json=body) as answer:
            assert answer.status_code in (200, 202), path
            assert count(session_factory, table) == before + 1, path
    before = count(session_factory, Upload)
    rows = csv_bytes(MED_COLUMNS, [med(drug_code="620000003", drug_name="新しい薬")])
    headers = {**auth(tokens["insurer"]), "Content-Type": "text/csv"}
    with client.stream("POST", "/v1/uploads?kind=medications", headers=headers, content=rows) as answer:
        assert answer.status_code == 200
        assert count(session_factory, Upload) == before + 1


@contextlib.contextmanager
def access_log_refusing_reads(settings: Any, session_factory: Any) -> Iterator[None]:
    """The access log refuses the entries of drug and checkup reads (a database trigger)."""
    pg = not settings.database_url.startswith("sqlite")
    with session_factory.begin() as s:
        if pg:
            s.execute(
                sa.text(
                    "CREATE FUNCTION test_refuse_read_entry() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.what IN ('medications', 'checkups') THEN RAISE EXCEPTION 'access log refused'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            s.execute(
                sa.text(
                    "CREATE TRIGGER test_refuse_read_entry BEFORE INSERT ON access_log FOR EACH ROW "
                    "EXECUTE FUNCTION test_refuse_read_entry()"
                )
            )
        else:
            s.execute(
                sa.text(
                    "CREATE TRIGGER test_refuse_read_entry BEFORE INSERT ON access_log "
                    "WHEN NEW.what IN ('medications', 'checkups') BEGIN SELECT RAISE(ABORT, 'access log refused'); END"
                )
            )
    try:
        yield
    finally:
        with session_factory.begin() as s:
            s.execute(sa.text("DROP TRIGGER test_refuse_read_entry" + (" ON access_log" if pg else "")))
            if pg:
                s.execute(sa.text("DROP FUNCTION test_refuse_read_entry()"))


def read_entries(session_factory: Any) -> int:
    with session_factory() as s:
        query = "SELECT count(*) FROM access_log WHERE what IN ('medications', 'checkups')"
        return int(s.execute(sa.text(query)).scalar_one())


def test_a_read_whose_access_log_entry_fails_serves_nothing(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, settings: Any, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v, drug=True, checkup=True).status_code == 200
    assert meds(client, tokens["physician"], v).status_code == 200
    entries = read_entries(session_factory)
    with access_log_refusing_reads(settings, session_factory):
        for _ in range(3):
            for path in ("medications", "checkups"):
                r = client.get(f"/v1/visits/{v}/{path}", headers=auth(tokens["physician"]))
                assert r.status_code == 503, r.text
                assert problem_code(r) == "unavailable"
                assert "items" not in r.json()
    assert read_entries(session_factory) == entries
    assert meds(client, tokens["physician"], v).status_code == 200  # and reads work again after


# ---------------------------------------------------------------- 3. a refusal at this visit


def test_a_refusal_at_this_visit_beats_the_earlier_consent(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    token = tokens["reception"]
    first = by_card(client, token, card).json()
    assert consent(client, token, first["visit_id"], limit_certificate=True, drug=True).status_code == 200
    # the next visit, within the 24 h of that consent: its card check answers before this visit's
    # consent is taken, so it carries nothing the patient may refuse now
    second = by_card(client, token, card).json()
    assert second["limit_certificate"] is None and second["specific_diseases"] == []
    refusal = consent(client, token, second["visit_id"])
    assert refusal.status_code == 200, refusal.text
    assert not refusal.json()["limit_certificate"]
    # the refusal ends the earlier consent: nothing reads through the first visit either
    assert problem_code(meds(client, tokens["physician"], first["visit_id"])) == "consent_required"
    with session_factory() as s:
        earlier = s.execute(sa.select(Consent).where(Consent.visit_id == first["visit_id"])).scalar_one()
        assert earlier.revoked_at is not None
    # and the earlier visit cannot take a consent that would undo this visit's refusal
    again = consent(client, token, first["visit_id"], limit_certificate=True, drug=True)
    assert again.status_code == 422 and problem_code(again) == "validation_error"
    assert problem_code(meds(client, tokens["physician"], second["visit_id"])) == "consent_required"
    third = by_card(client, token, card).json()
    assert third["limit_certificate"] is None

