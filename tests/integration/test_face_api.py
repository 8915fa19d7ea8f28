"""By-card with auth_method "face": the terminal's signed attestation, verified against the
terminal's registered key and facility."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.attestation import (
    FaceAttestationClaims,
    certificate_fingerprint,
    generate_terminal_key,
    public_key_pem,
    sign_attestation,
)
from shikaku_server.auth.service import add_terminal
from shikaku_server.database import transaction
from testbed.pki import IssuedCertificate, TestCA
from tests.conftest import FACILITY_CODE, PHARMACY_CODE, auth
from tests.factories import eligibility_csv, person
from tests.integration.test_card_api import b64, challenge, problem_code, register
from tests.integration.test_eligibility_api import upload

TERMINAL_KEY = generate_terminal_key()
OTHER_KEY = generate_terminal_key()


@pytest.fixture
def card(client: TestClient, tokens: dict[str, str], test_ca: TestCA, session_factory: Any) -> IssuedCertificate:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    issued = test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], issued).status_code == 200
    with transaction(session_factory) as s:
        add_terminal(
            s, terminal_id="kiosk-1", facility_code=FACILITY_CODE, public_key_pem=public_key_pem(TERMINAL_KEY).decode()
        )
        add_terminal(
            s,
            terminal_id="pharmacy-kiosk",
            facility_code=PHARMACY_CODE,
            public_key_pem=public_key_pem(OTHER_KEY).decode(),
        )
    return issued


def attest(
    card: IssuedCertificate,
    challenge_id: str,
    *,
    key: Any = TERMINAL_KEY,
    terminal: str = "kiosk-1",
    facility: str = FACILITY_CODE,
    **over: Any,
) -> str:
    values: dict[str, Any] = {
        "challenge_id": challenge_id,
        "certificate_fingerprint": certificate_fingerprint(card.der),
        "distance": 0.37,
        "threshold": 0.45,
        "liveness": True,
        "match": True,
        "iat": int(time.time()),
        "facility_code": facility,
        "terminal_id": terminal,
    }
    claims = FaceAttestationClaims(**(values | over))
    return sign_attestation(claims, key, terminal)


def face_check(client: TestClient, token: str, card: IssuedCertificate, ch: dict[str, Any], attestation: str) -> Any:
    return client.post(
        "/v1/eligibility/by-card",
        headers=auth(token),
        json={
            "challenge_id": ch["challenge_id"],
            "certificate": b64(card.der),
            "auth_method": "face",
            "attestation": attestation,
        },
    )


def test_face_attestation_answers_eligibility(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate
) -> None:
    ch = challenge(client, tokens["reception"])
    r = face_check(client, tokens["reception"], card, ch, attest(card, ch["challenge_id"]))
    assert r.status_code == 200, r.text
    assert r.json()["validity"] == 1 and r.json()["insured"]["name"] == "山田 太郎"
    # the same attestation again: its challenge is spent
    assert (
        problem_code(face_check(client, tokens["reception"], card, ch, attest(card, ch["challenge_id"])))
        == "challenge_reused"
    )


@pytest.mark.parametrize(
    "forgery",
    ["other_key", "other_terminal", "other_challenge", "no_match", "no_liveness", "other_card", "garbage", "missing"],
)
def test_forged_attestations_are_refused(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, test_ca: TestCA, forgery: str
) -> None:
    ch = challenge(client, tokens["reception"])
    cid = ch["challenge_id"]
    makers: dict[str, Callable[[], str]] = {
        "other_key": lambda: attest(card, cid, key=OTHER_KEY),  # claims kiosk-1, signed by another key
        "other_terminal": lambda: attest(card, cid, key=OTHER_KEY, terminal="pharmacy-kiosk"),  # another facility's
        "other_challenge": lambda: attest(card, "not-this-one"),
        "no_match": lambda: attest(card, cid, match=False, distance=0.8),
        "no_liveness": lambda: attest(card, cid, liveness=False),
        "other_card": lambda: attest(test_ca.issue_auth_certificate(), cid),
        "garbage": lambda: "not.a.jws",
        "missing": lambda: "",
    }
    token = makers[forgery]()
    r = face_check(client, tokens["reception"], card, ch, token)
    assert r.status_code == 401, r.text
    assert problem_code(r) == "attestation_invalid"


def test_unregistered_terminal(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> None:
    ch = challenge(client, tokens["reception"])
    r = face_check(
        client,
        tokens["reception"],
        card,
        ch,
        attest(card, ch["challenge_id"], key=generate_terminal_key(), terminal="stranger"),
    )
    assert problem_code(r) == "attestation_invalid"
