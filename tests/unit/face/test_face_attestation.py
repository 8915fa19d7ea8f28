"""Face attestation JWS: a good token verifies; every forgery raises AttestationInvalidError."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from schemas.attestation import (
    TOKEN_TYPE,
    AttestationInvalidError,
    FaceAttestationClaims,
    certificate_fingerprint,
    generate_terminal_key,
    load_private_key_pem,
    private_key_pem,
    public_key_pem,
    sign_attestation,
    terminal_id_of,
    verify_attestation,
)

NOW = 1_790_000_000
FINGERPRINT = hashlib.sha256(b"card certificate DER").hexdigest()
FACILITY = "0110113719"
TERMINAL = "kiosk-1"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return generate_terminal_key()


def _claims(**changes: Any) -> FaceAttestationClaims:
    data: dict[str, Any] = {
        "challenge_id": "ch-1",
        "certificate_fingerprint": FINGERPRINT,
        "distance": 0.38,
        "threshold": 0.5,
        "liveness": True,
        "iat": NOW,
        "facility_code": FACILITY,
        "terminal_id": TERMINAL,
    }
    data.update(changes)
    return FaceAttestationClaims(**data)


def _verify(token: str, pem: bytes, **changes: Any) -> FaceAttestationClaims:
    kwargs: dict[str, Any] = {
        "expected_challenge_id": "ch-1",
        "expected_fingerprint": FINGERPRINT,
        "expected_facility_code": FACILITY,
        "now": NOW + 5,
    }
    kwargs.update(changes)
    return verify_attestation(token, pem, **kwargs)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_good_attestation_verifies(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_attestation(_claims(), key, TERMINAL)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": TERMINAL, "typ": TOKEN_TYPE}
    assert terminal_id_of(token) == TERMINAL
    claims = _verify(token, public_key_pem(key))
    assert claims.match and claims.liveness
    assert claims.distance == pytest.approx(0.38)
    assert len(claims.jti) >= 8


def test_datetime_now_is_accepted(key: ec.EllipticCurvePrivateKey) -> None:
    import datetime as dt

    token = sign_attestation(_claims(), key, TERMINAL)
    _verify(token, public_key_pem(key), now=dt.datetime.fromtimestamp(NOW + 5, tz=dt.UTC))


def test_key_pem_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    pem = private_key_pem(key, password=b"pw")
    assert b"ENCRYPTED" in pem
    again = load_private_key_pem(pem, password=b"pw")
    assert public_key_pem(again) == public_key_pem(key)
    assert public_key_pem(key).startswith(b"-----BEGIN PUBLIC KEY-----")


def test_certificate_fingerprint() -> None:
    assert certificate_fingerprint(b"card certificate DER") == FINGERPRINT


def test_claims_carry_no_image_data() -> None:
    assert set(FaceAttestationClaims.model_fields) == {
        "challenge_id",
        "certificate_fingerprint",
        "distance",
        "threshold",
        "liveness",
        "match",
        "iat",
        "facility_code",
        "terminal_id",
        "jti",
    }


def test_signing_for_another_terminal_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="terminal"):
        sign_attestation(_claims(), key, "kiosk-2")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"expected_challenge_id": "ch-2"}, "another challenge"),
        ({"expected_fingerprint": "0" * 64}, "another card"),
        ({"expected_facility_code": "1341234563"}, "another facility"),
        ({"now": NOW + 121}, "too old"),
        ({"now": NOW + 61, "max_age_s": 60}, "too old"),
        ({"now": NOW - 3600}, "future"),
    ],
)
def test_binding_mismatch(key: ec.EllipticCurvePrivateKey, changes: dict[str, Any], reason: str) -> None:
    token = sign_attestation(_claims(), key, TERMINAL)
    with pytest.raises(AttestationInvalidError, match=reason):
        _verify(token, public_key_pem(key), **changes)


@pytest.mark.parametrize(
    ("claim_changes", "reason"),
    [
        ({"distance": 0.55}, "did not match"),
        ({"distance": 0.3, "match": False}, "did not match"),
        ({"distance": 0.55, "match": True}, "did not match"),
        ({"liveness": False}, "liveness"),
        ({"threshold": 0.7, "distance": 0.65}, "laxer"),
    ],
)
def test_failed_outcome_is_refused(key: ec.EllipticCurvePrivateKey, claim_changes: dict[str, Any], reason: str) -> None:
    token = sign_attestation(_claims(**claim_changes), key, TERMINAL)
    with pytest.raises(AttestationInvalidError, match=reason):
        _verify(token, public_key_pem(key))


def test_other_terminal_key_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_attestation(_claims(), generate_terminal_key(), TERMINAL)
    with pytest.raises(AttestationInvalidError, match="signature"):
        _verify(token, public_key_pem(key))


def test_tampered_payload_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_attestation(_claims(distance=0.55, match=False), key, TERMINAL)
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(distance=0.1, match=True)
    forged = ".".join([header, _b64(json.dumps(body).encode()), signature])
    with pytest.raises(AttestationInvalidError, match="signature"):
        _verify(forged, public_key_pem(key))


def test_alg_none_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": TERMINAL, "typ": TOKEN_TYPE}).encode())
    payload = _b64(json.dumps(_claims().model_dump(mode="json")).encode())
    with pytest.raises(AttestationInvalidError, match="ES256"):
        _verify(f"{header}.{payload}.", public_key_pem(key))


def test_hs256_with_the_public_key_as_secret_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    pem = public_key_pem(key)
    header = _b64(json.dumps({"alg": "HS256", "kid": TERMINAL, "typ": TOKEN_TYPE}).encode())
    payload = _b64(json.dumps(_claims().model_dump(mode="json")).encode())
    import hmac

    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(AttestationInvalidError, match="ES256"):
        _verify(f"{header}.{payload}.{_b64(signature)}", pem)


def test_other_es_algorithm_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(
        _claims().model_dump(mode="json"), p384, algorithm="ES384", headers={"kid": TERMINAL, "typ": TOKEN_TYPE}
    )
    with pytest.raises(AttestationInvalidError, match="ES256"):
        _verify(token, public_key_pem(p384))


def test_kid_must_be_the_terminal_in_the_claims(key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode(
        _claims().model_dump(mode="json"), key, algorithm="ES256", headers={"kid": "kiosk-9", "typ": TOKEN_TYPE}
    )
    with pytest.raises(AttestationInvalidError, match="kid"):
        _verify(token, public_key_pem(key))


def test_other_token_type_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode(_claims().model_dump(mode="json"), key, algorithm="ES256", headers={"kid": TERMINAL})
    with pytest.raises(AttestationInvalidError, match="not a face attestation"):
        _verify(token, public_key_pem(key))


def test_missing_claims_are_refused(key: ec.EllipticCurvePrivateKey) -> None:
    body = _claims().model_dump(mode="json")
    del body["certificate_fingerprint"]
    token = jwt.encode(body, key, algorithm="ES256", headers={"kid": TERMINAL, "typ": TOKEN_TYPE})
    with pytest.raises(AttestationInvalidError, match="malformed"):
        _verify(token, public_key_pem(key))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "....."])
def test_garbage_is_refused(key: ec.EllipticCurvePrivateKey, token: str) -> None:
    with pytest.raises(AttestationInvalidError):
        _verify(token, public_key_pem(key))
    with pytest.raises(AttestationInvalidError):
        terminal_id_of(token)


def test_non_ec_registered_key_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = sign_attestation(_claims(), key, TERMINAL)
    with pytest.raises(AttestationInvalidError, match="P-256"):
        _verify(token, pem)
    with pytest.raises(AttestationInvalidError, match="cannot be read"):
        _verify(token, b"not a pem")


def test_real_clock_default(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_attestation(_claims(iat=int(time.time())), key, TERMINAL)
    assert _verify(token, public_key_pem(key), now=None).terminal_id == TERMINAL
