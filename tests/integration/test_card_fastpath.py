"""The card check's two requests through the pure-ASGI fast path (``shikaku_server.fastpath``):
the same bytes, errors, headers, access log and metrics as the FastAPI routes, for both card
generations; the challenge's rate limit with the counters and the challenge in one round trip."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.app import create_app
from shikaku_server.cache import InMemoryChallengeStore, RedisChallengeStore
from shikaku_server.config import Settings
from shikaku_server.database import transaction
from shikaku_server.digests import serial_text
from shikaku_server.me.suspension import suspend_card
from testbed.pki import IssuedCertificate, TestCA, rsa_key
from tests.conftest import auth
from tests.factories import eligibility_csv, person
from tests.integration.metrics_helpers import sample
from tests.integration.test_card_api import another_key, b64, challenge, register, sign
from tests.integration.test_eligibility_api import upload

# "+json" is JSON to FastAPI but not one of the fast path's content types: the route answers
ROUTE_ONLY = "application/vnd.shikaku+json"
VISIT_ID = re.compile(rb'"visit_id":"[^"]+"')


def _check(client: TestClient, token: str, body: Any, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/eligibility/by-card", content=raw, headers={**auth(token), "Content-Type": content_type})


def _body(card: IssuedCertificate, ch: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "challenge_id": ch["challenge_id"],
        "certificate": b64(card.der),
        "auth_method": "pin",
        "signature": sign(card.private_key, ch["nonce"]),
        **extra,
    }


def _same(fast: Any, slow: Any, name: str = "") -> None:
    """The same answer, byte for byte (a success's random visit id aside), and the same headers."""
    assert fast.status_code == slow.status_code, (name, fast.text, slow.text)
    assert VISIT_ID.sub(b"", fast.content) == VISIT_ID.sub(b"", slow.content)
    for header in ("content-type", "retry-after", "www-authenticate"):
        assert fast.headers.get(header) == slow.headers.get(header)
    if fast.status_code == 200:
        assert fast.headers["content-length"] == slow.headers["content-length"]
    assert "x-request-id" in fast.headers


@pytest.fixture
def people(client: TestClient, tokens: dict[str, str]) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [
                person(limit_kind="01", limit_class="A03", limit_valid_from="2024-04-01"),
                person(
                    number="888", name="佐藤 一郎", birth_date="1970-01-01", valid_to="2024-09-30", reason_of_loss="01"
                ),
            ],
            optional=True,
        ),
    )


def _cases(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, unlinked: IssuedCertificate
) -> list[tuple[str, Any]]:
    """(name, request body) of the ordinary answers and of every refusal a check can meet."""
    token = tokens["reception"]
    used = challenge(client, token)
    assert _check(client, token, _body(card, used)).status_code == 200
    rogue = TestCA.create(common_name="Rogue CA", key=rsa_key(999)).issue_auth_certificate()
    cases: list[tuple[str, Any]] = [
        ("today", lambda: _body(card, challenge(client, token))),
        ("as_of_lost", lambda: _body(card, challenge(client, token), as_of="2025-01-01")),
        ("as_of_valid", lambda: _body(card, challenge(client, token), as_of="2024-06-01")),
        ("reused", lambda: _body(card, used)),
        ("unknown", lambda: _body(card, {**challenge(client, token), "challenge_id": "nope"})),
        ("other_facility", lambda: _body(card, challenge(client, tokens["pharmacist"]))),
        (
            "another_key",
            lambda: {
                **_body(card, (ch := challenge(client, token))),
                "signature": sign(another_key(card), ch["nonce"]),
            },
        ),
        ("no_signature", lambda: {k: v for k, v in _body(card, challenge(client, token)).items() if k != "signature"}),
        ("untrusted", lambda: _body(rogue, challenge(client, token))),
        ("not_registered", lambda: _body(unlinked, challenge(client, token))),
        ("face_without_attestation", lambda: {**_body(card, challenge(client, token)), "auth_method": "face"}),
        ("bad_base64", lambda: {**_body(card, challenge(client, token)), "certificate": "***"}),
        ("extra_key", lambda: {**_body(card, challenge(client, token)), "x": 1}),
        ("my_number_key", lambda: {**_body(card, challenge(client, token)), "123456789018": 1}),
        ("malformed", lambda: b'{"challenge_id": '),
        ("a_list", lambda: b"[1, 2]"),
        ("empty", lambda: b""),
    ]
    return cases


@pytest.mark.parametrize("generation", ["rsa", "ecdsa"])
def test_by_card_fast_path_answers_like_the_route(
    client: TestClient,
    tokens: dict[str, str],
    people: None,
    test_ca: TestCA,
    test_ca_ecdsa: TestCA,
    generation: str,
) -> None:
    ca = test_ca_ecdsa if generation == "ecdsa" else test_ca
    card, unlinked = ca.issue_auth_certificate(), ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200  # the token is now cached
    challenge(client, tokens["pharmacist"])
    codes = set()
    for name, make in _cases(client, tokens, card, unlinked):
        fast = _check(client, tokens["reception"], make())
        slow = _check(client, tokens["reception"], make(), ROUTE_ONLY)
        _same(fast, slow, name)
        codes.add(fast.json().get("code", fast.json().get("validity")))
    assert codes >= {
        1,
        "challenge_reused",
        "challenge_unknown",
        "signature_invalid",
        "validation_error",
        "certificate_untrusted",
        "card_not_registered",
        "attestation_invalid",
        "my_number_detected",
    }


def test_a_suspended_and_a_revoked_card_are_refused_on_the_fast_path(
    client: TestClient, tokens: dict[str, str], people: None, test_ca: TestCA, session_factory: Any
) -> None:
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    token = tokens["reception"]
    with transaction(session_factory) as s:
        insured_id = s.execute(sa.text("SELECT insured_id FROM card_link")).scalar_one()
        issuer = card.certificate.issuer.rfc4514_string()
        serial = serial_text(card.serial_number)
        assert suspend_card(s, issuer=issuer, serial_hex=serial, insured_id=insured_id, by="patient")
    fast = _check(client, token, _body(card, challenge(client, token)))
    slow = _check(client, token, _body(card, challenge(client, token)), ROUTE_ONLY)
    _same(fast, slow)
    assert fast.json()["code"] == "card_suspended"


def test_fast_card_checks_write_the_visit_and_the_log_and_are_counted(
    client: TestClient, tokens: dict[str, str], people: None, test_ca: TestCA, session_factory: Any
) -> None:
    card = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], card).status_code == 200
    token = tokens["reception"]
    visits = []
    for _ in range(3):
        r = _check(client, token, _body(card, challenge(client, token)))
        assert r.status_code == 200
        visits.append(r.json()["visit_id"])
        with transaction(session_factory) as s:  # committed before the answer: there at once
            row = s.execute(
                sa.text(
                    "SELECT v.auth_method, a.what, a.query_kind, a.role FROM visit v"
                    " JOIN access_log a ON a.visit_id = v.id WHERE v.id = :id"
                ),
                {"id": visits[-1]},
            ).all()
        assert row == [("pin", "eligibility", "card", "reception")]
    metrics = client.get("/metrics").text
    assert (
        sample(metrics, "shikaku_http_requests_total", method="POST", route="/v1/eligibility/by-card", status="200")
        == 3
    )
    assert sample(metrics, "shikaku_http_requests_total", method="POST", route="/v1/card/challenges", status="200") >= 4
    assert sample(metrics, "shikaku_events_total", event="card_check_pin") == 3


def test_challenge_fast_path_answers_like_the_route(client: TestClient, tokens: dict[str, str]) -> None:
    token = tokens["reception"]
    challenge(client, token)  # through the route: the token is now cached
    fast = client.post("/v1/card/challenges", headers=auth(token))
    slow = client.post(
        "/v1/card/challenges", headers={**auth(token), "Content-Type": "application/json"}, content=b"{}"
    )
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.headers["content-length"] == slow.headers["content-length"]
    shape = {k: (len(v), v[:2]) if k == "expires_at" else len(v) for k, v in fast.json().items()}
    assert shape == {k: (len(v), v[:2]) if k == "expires_at" else len(v) for k, v in slow.json().items()}
    for who in (None, "bogus", "insurer"):  # refused the route's way: the fast path passes them on
        headers = {} if who is None else auth(tokens.get(who, "shk_fac_unknown"))
        r = client.post("/v1/card/challenges", headers=headers)
        assert r.status_code in (401, 403) and r.headers["content-type"] == "application/problem+json"


def _stored_challenges(client: TestClient) -> int:
    store = client.app.state.shikaku.card.challenges  # type: ignore[attr-defined]
    if isinstance(store, InMemoryChallengeStore):
        return sum(1 for key in list(store._entries.data) if key.startswith("challenge:"))
    assert isinstance(store, RedisChallengeStore)
    return len(store.client.redis.keys(store.client.k("challenge:*")))


def test_a_refused_challenge_is_not_kept(settings: Settings, tokens: dict[str, str]) -> None:
    limited = settings.model_copy(
        update={"rate_limit_challenges_per_token": 2, "rate_limit_challenges_per_facility": 0}
    )
    with TestClient(create_app(limited)) as client:
        token = tokens["reception"]
        assert client.post("/v1/card/challenges", headers=auth(token)).status_code == 200  # the route
        assert client.post("/v1/card/challenges", headers=auth(token)).status_code == 200  # fast
        fast = client.post("/v1/card/challenges", headers=auth(token))
        slow = client.post(
            "/v1/card/challenges", headers={**auth(token), "Content-Type": "application/json"}, content=b"{}"
        )
        assert fast.status_code == slow.status_code == 429
        assert fast.content == slow.content and fast.json()["code"] == "rate_limited"
        assert abs(int(fast.headers["retry-after"]) - int(slow.headers["retry-after"])) <= 1  # a second apart
        assert _stored_challenges(client) == 2  # the refused ones were withdrawn
