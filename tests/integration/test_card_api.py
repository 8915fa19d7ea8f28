"""The card path at the API: challenges, certificate checks, first-use linking, by-card queries."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from shikaku_server.card.crl_watch import apply_crl
from shikaku_server.card.models import CardLinkAudit
from shikaku_server.card.service import CertificateVerifier
from shikaku_server.config import Settings
from shikaku_server.database import transaction
from shikaku_server.eligibility.service import today_jst
from testbed.pki import CardPrivateKey, IssuedCertificate, TestCA, card_signature, rsa_key
from tests.conftest import auth
from tests.factories import eligibility_csv, family_member, person
from tests.integration.test_eligibility_api import upload

FACTS = {"name": "山田 太郎", "birth_date": "1980-04-01", "sex": "1", "address": "東京都千代田区霞が関1-2-2"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign(key: CardPrivateKey, nonce_b64: str) -> str:
    """The card's signature over the challenge nonce, as either generation makes it."""
    return b64(card_signature(key, base64.b64decode(nonce_b64)))


def challenge(client: TestClient, token: str) -> dict[str, Any]:
    r = client.post("/v1/card/challenges", headers=auth(token))
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert len(base64.b64decode(body["nonce"])) == 32
    return body


def register(client: TestClient, token: str, card: IssuedCertificate, facts: dict[str, str] = FACTS) -> Any:
    ch = challenge(client, token)
    return client.post(
        "/v1/card/registrations",
        headers=auth(token),
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "signature": sign(card.private_key, ch["nonce"]),
            "basic_facts": facts,
        },
    )


def another_key(card: IssuedCertificate) -> rsa.RSAPrivateKey:
    """A cached test key that is not the card's (its own is ``rsa_key(serial % 16)``)."""
    return rsa_key((card.serial_number + 1) % 16)


def by_card(
    client: TestClient,
    token: str,
    card: IssuedCertificate,
    *,
    ch: dict[str, Any] | None = None,
    key: rsa.RSAPrivateKey | None = None,
    **extra: Any,
) -> Any:
    ch = ch or challenge(client, token)
    return client.post(
        "/v1/eligibility/by-card",
        headers=auth(token),
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "auth_method": "pin",
            "signature": sign(key or card.private_key, ch["nonce"]),
            **extra,
        },
    )


@pytest.fixture
def card(test_ca: TestCA) -> IssuedCertificate:
    return test_ca.issue_auth_certificate()


@pytest.fixture
def loaded(client: TestClient, tokens: dict[str, str]) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [
                person(limit_kind="01", limit_class="A03", limit_valid_from="2024-04-01"),
                family_member(),
            ],
            optional=True,
        ),
    )


def revoke(test_ca: TestCA, serial_number: int, session_factory: Any, settings: Settings, monkeypatch: Any) -> None:
    """The CA revokes the certificate and the server imports its CRL (as ``shikaku-crl-watch`` does)."""
    from shikaku_server.config import get_settings

    test_ca.revoke(serial_number)
    monkeypatch.setenv("SHIKAKU_TRUST_ANCHORS", settings.trust_anchors or "")
    get_settings.cache_clear()
    try:
        with transaction(session_factory) as s:
            verifier = CertificateVerifier(settings.trust_anchor_paths(), 1)
            assert apply_crl(s, test_ca.crl_der(), verifier=verifier).added >= 1
    finally:
        get_settings.cache_clear()


def problem_code(response: Any) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["code"])


def test_register_then_check_by_card_with_pin(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, loaded: None
) -> None:
    r = register(
        client, tokens["reception"], card, {**FACTS, "name": "山田　太郎", "address": "東京都千代田区霞が関１－２－２"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "linked"
    r = by_card(client, tokens["reception"], card, as_of="2025-01-01")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["validity"] == 1 and result["query_kind"] == "card"
    assert result["insured"]["name"] == "山田 太郎"
    assert result["visit_id"]
    assert result["limit_certificate"] is None  # not without consent


def test_partial_match_never_links(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, loaded: None, session_factory: Any
) -> None:
    r = register(client, tokens["reception"], card, {**FACTS, "address": "東京都千代田区霞が関1-2-3"})
    assert r.status_code == 409 and problem_code(r) == "registration_no_match"
    assert problem_code(by_card(client, tokens["reception"], card)) == "card_not_registered"
    with session_factory() as s:
        outcomes = [a.outcome for a in s.query(CardLinkAudit).all()]
    assert outcomes == ["no_match"]


def test_ambiguous_four_facts_never_link(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person(), person(number="9999")]))
    r = register(client, tokens["reception"], card)
    assert problem_code(r) == "registration_ambiguous"


def test_challenge_is_single_use_and_bound_to_facility(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, loaded: None
) -> None:
    assert register(client, tokens["reception"], card).status_code == 200
    ch = challenge(client, tokens["reception"])
    assert by_card(client, tokens["reception"], card, ch=ch).status_code == 200
    assert problem_code(by_card(client, tokens["reception"], card, ch=ch)) == "challenge_reused"
    assert (
        problem_code(by_card(client, tokens["reception"], card, ch={**ch, "challenge_id": "nope"}))
        == "challenge_unknown"
    )
    other = challenge(client, tokens["pharmacist"])
    assert problem_code(by_card(client, tokens["reception"], card, ch=other)) == "challenge_unknown"


def test_signature_by_another_key(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, loaded: None
) -> None:
    register(client, tokens["reception"], card)
    r = by_card(client, tokens["reception"], card, key=another_key(card))
    assert r.status_code == 401 and problem_code(r) == "signature_invalid"


def test_untrusted_certificate(client: TestClient, tokens: dict[str, str], loaded: None) -> None:
    rogue = TestCA.create(common_name="Rogue CA", key=rsa_key(999)).issue_auth_certificate()
    assert problem_code(by_card(client, tokens["reception"], rogue)) == "certificate_untrusted"


def test_revoked_certificate_after_crl_import(
    client: TestClient,
    tokens: dict[str, str],
    test_ca: TestCA,
    loaded: None,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    assert by_card(client, tokens["reception"], card).status_code == 200  # verified (and cached)
    revoke(test_ca, card.serial_number, session_factory, settings, monkeypatch)
    assert problem_code(by_card(client, tokens["reception"], card)) == "certificate_revoked"


def test_expired_certificate_and_notices(
    client: TestClient, tokens: dict[str, str], test_ca: TestCA, loaded: None
) -> None:
    today = today_jst()
    expired = test_ca.issue_auth_certificate(not_before=dt.date(2019, 1, 1), not_after=today - dt.timedelta(days=200))
    assert problem_code(by_card(client, tokens["reception"], expired)) == "certificate_expired"
    grace = test_ca.issue_auth_certificate(not_before=dt.date(2019, 1, 1), not_after=today - dt.timedelta(days=2))
    assert register(client, tokens["reception"], grace).status_code == 200
    assert by_card(client, tokens["reception"], grace).json()["certificate_notice"] == "grace_period"
    soon = test_ca.issue_auth_certificate(not_after=today + dt.timedelta(days=30))
    assert register(client, tokens["reception"], soon).status_code == 200
    assert by_card(client, tokens["reception"], soon).json()["certificate_notice"] == "expires_soon"


def test_renewed_certificate_links_once_the_old_one_is_revoked(
    client: TestClient,
    tokens: dict[str, str],
    test_ca: TestCA,
    loaded: None,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = test_ca.issue_auth_certificate()
    new = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], old).status_code == 200
    refused = register(client, tokens["reception"], new)  # the old certificate is still live
    assert refused.status_code == 409 and problem_code(refused) == "registration_conflict"
    revoke(test_ca, old.serial_number, session_factory, settings, monkeypatch)
    assert register(client, tokens["reception"], new).status_code == 200
    assert by_card(client, tokens["reception"], new).json()["insured"]["name"] == "山田 太郎"
    assert register(client, tokens["reception"], new).json()["status"] == "already_linked"


def test_pin_check_commits_visit_and_access_log_and_answers_the_model(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, loaded: None, session_factory: Any
) -> None:
    """The PIN check's own rendering and its one-statement write (PostgreSQL) or session write
    (SQLite): the visit and its access-log entry are there when the answer arrives, and the body
    is exactly the ``EligibilityResult`` model's JSON."""
    from sqlalchemy import select

    from schemas.eligibility import EligibilityResult
    from shikaku_server.access_log.models import AccessLogEntry
    from shikaku_server.consent.models import Visit

    assert register(client, tokens["reception"], card).status_code == 200
    r = by_card(client, tokens["reception"], card, as_of="2025-01-01")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    model = EligibilityResult.model_validate_json(r.content)
    assert r.json() == model.model_dump(mode="json")
    visit_id = r.json()["visit_id"]
    with session_factory() as s:
        visit = s.get(Visit, visit_id)
        assert visit is not None
        assert (visit.auth_method, visit.card_classification, visit.as_of) == ("pin", "01", dt.date(2025, 1, 1))
        entries = s.execute(select(AccessLogEntry).where(AccessLogEntry.visit_id == visit_id)).scalars().all()
        assert [(e.insured_id, e.what, e.query_kind, e.role, e.consent_id) for e in entries] == [
            (visit.insured_id, "eligibility", "card", "reception", None)
        ]
        assert entries[0].at == visit.created_at
    # a refused check writes nothing
    from sqlalchemy import func

    def visits() -> int:
        with session_factory() as s:
            return int(s.execute(select(func.count()).select_from(Visit)).scalar_one())

    before = visits()
    assert problem_code(by_card(client, tokens["reception"], card, key=another_key(card))) == "signature_invalid"
    assert visits() == before
