"""居宅同意取得型: after one card check and a home-care consent, 再照会 re-checks eligibility without
the card for as long as that consent lasts; never under an outpatient consent, after a withdrawal
or a newer answer, or for another facility. Each re-check is in the person's access log."""

from __future__ import annotations

import unicodedata
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.access_log.models import AccessLogEntry
from testbed.pki import IssuedCertificate
from tests.conftest import auth
from tests.integration.test_card_api import problem_code
from tests.integration.test_consent_api import card, consent, visit
from tests.integration.test_me_api import me

__all__ = ["card"]


def recheck(client: TestClient, token: str, visit_id: str, **body: Any) -> Any:
    return client.post(f"/v1/visits/{visit_id}/recheck", headers=auth(token), json=body or None)


def test_recheck_without_the_card_while_the_home_consent_lasts(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], card)
    given = consent(client, tokens["physician"], v, drug=True, limit_certificate=True, setting="home")
    assert given.status_code == 200 and given.json()["expires_at"] is None
    for token in (tokens["physician"], tokens["reception"]):  # any role of the facility
        r = recheck(client, token, v)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["validity"], body["query_kind"], body["visit_id"]) == (1, "card", v)
        assert unicodedata.normalize("NFKC", body["insured"]["number"]) == "4567"
        assert body["limit_certificate"]["classification"] == "A03"  # shared under this consent
    r = recheck(client, tokens["physician"], v, as_of="2000-01-01")
    assert r.status_code == 200 and r.json()["validity"] == 4 and r.json()["as_of"] == "2000-01-01"
    with session_factory() as s:
        kinds = s.execute(
            sa.select(AccessLogEntry.query_kind, AccessLogEntry.consent_id, AccessLogEntry.role)
            .where(AccessLogEntry.query_kind == "recheck")
            .order_by(AccessLogEntry.id)
        ).all()
    cid = given.json()["consent_id"]
    assert [tuple(k) for k in kinds] == [
        ("recheck", cid, "physician"), ("recheck", cid, "reception"), ("recheck", cid, "physician")
    ]
    # another facility's token: the visit does not exist for it
    r = recheck(client, tokens["pharmacist"], v)
    assert r.status_code == 404
    # the patient withdraws: re-checks stop
    assert me(client, "/v1/me/consents/withdraw", card, consent_id=cid).status_code == 200
    r = recheck(client, tokens["physician"], v)
    assert r.status_code == 403 and problem_code(r) == "consent_expired"


def test_no_recheck_without_a_home_consent(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], card)
    assert problem_code(recheck(client, tokens["physician"], v)) == "consent_required"
    assert consent(client, tokens["physician"], v, drug=True).status_code == 200  # outpatient
    r = recheck(client, tokens["physician"], v)
    assert r.status_code == 403 and problem_code(r) == "consent_required"
    # a home consent, then a newer answer at a new card check (outpatient): the newer one is in force
    v2 = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v2, setting="home").status_code == 200
    assert recheck(client, tokens["physician"], v2).status_code == 200
    v3 = visit(client, tokens["physician"], card)
    assert consent(client, tokens["physician"], v3, drug=True).status_code == 200
    assert problem_code(recheck(client, tokens["physician"], v2)) == "consent_required"
