"""Face attestation: the kiosk's signed statement that the face path succeeded.

A compact JWS, ES256, signed by the TERMINAL's own P-256 key; header ``kid`` = terminal id,
``typ`` = ``face-attestation+jwt``. The server finds the terminal's registered public key by
``kid`` and calls :func:`verify_attestation`; every failure raises
:class:`AttestationInvalidError`, which the server maps to the contract code
``attestation_invalid``. The token carries scores only: no image, no encoding.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ALGORITHM = "ES256"
TOKEN_TYPE = "face-attestation+jwt"  # noqa: S105 - a JOSE typ, not a secret
MAX_AGE_S = 120
MAX_THRESHOLD = 0.6  # the library's own default: no terminal may be laxer than this
CLOCK_SKEW_S = 30


class AttestationInvalidError(Exception):
    """The attestation cannot be trusted; ``reason`` says why (no token content is quoted)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FaceAttestationClaims(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    challenge_id: str = Field(min_length=1, max_length=200)
    certificate_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the card certificate's DER, lower-case hex."""
    distance: float = Field(ge=0.0)
    threshold: float = Field(gt=0.0, le=1.0)
    liveness: bool
    match: bool = False
    """Filled from ``distance <= threshold`` when not given."""
    iat: int = Field(ge=0)
    facility_code: str = Field(pattern=r"^[0-9]{10}$")
    terminal_id: str = Field(min_length=1, max_length=200)
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=8, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _derive_match(cls, data: Any) -> Any:
        if isinstance(data, dict) and "match" not in data:
            distance, threshold = data.get("distance"), data.get("threshold")
            if isinstance(distance, int | float) and isinstance(threshold, int | float):
                data = {**data, "match": float(distance) <= float(threshold)}
        return data

    @model_validator(mode="after")
    def _finite(self) -> Self:
        if not (math.isfinite(self.distance) and math.isfinite(self.threshold)):
            raise ValueError("distance and threshold must be finite")
        return self


def certificate_fingerprint(cert_der: bytes) -> str:
    """The ``certificate_fingerprint`` claim: SHA-256 of the certificate DER, hex."""
    import hashlib

    return hashlib.sha256(cert_der).hexdigest()


# ------------------------------------------------------------------------------------------ keys


def generate_terminal_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key pair for a kiosk terminal."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, what ``shikaku-admin terminal add --public-key`` takes."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM of the terminal key (encrypted when ``password`` is given)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_private_key_pem(data: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the terminal key must be an EC P-256 private key")
    return key


def _load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise AttestationInvalidError("the terminal's registered key cannot be read") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AttestationInvalidError("the terminal's registered key is not EC P-256")
    return key


# ----------------------------------------------------------------------------------- sign/verify


def sign_attestation(claims: FaceAttestationClaims, private_key: ec.EllipticCurvePrivateKey, terminal_id: str) -> str:
    """Compact JWS (ES256, ``kid`` = ``terminal_id``) over the claims."""
    if claims.terminal_id != terminal_id:
        raise ValueError("claims.terminal_id must be the signing terminal")
    return jwt.encode(
        claims.model_dump(mode="json"),
        private_key,
        algorithm=ALGORITHM,
        headers={"kid": terminal_id, "typ": TOKEN_TYPE},
    )


def terminal_id_of(token: str) -> str:
    """The unverified ``kid`` header, to look up the terminal's key before verifying."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise AttestationInvalidError("the attestation is not a compact JWS") from exc
    if not isinstance(kid, str) or not kid:
        raise AttestationInvalidError("the attestation names no terminal (kid)")
    return kid


def _epoch(now: dt.datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        return now.timestamp()
    return float(now)


def verify_attestation(
    token: str,
    public_key_pem: bytes,
    *,
    expected_challenge_id: str,
    expected_fingerprint: str,
    expected_facility_code: str,
    now: dt.datetime | float | None = None,
    max_age_s: int = MAX_AGE_S,
    max_threshold: float = MAX_THRESHOLD,
) -> FaceAttestationClaims:
    """Verify signature, binding and outcome; return the claims or raise AttestationInvalidError."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AttestationInvalidError("the attestation is not a compact JWS") from exc
    if header.get("alg") != ALGORITHM:
        raise AttestationInvalidError("the attestation must be signed with ES256")
    if header.get("typ") != TOKEN_TYPE:
        raise AttestationInvalidError("the token is not a face attestation")
    key = _load_public_key(public_key_pem)
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["iat", "jti"], "verify_iat": False, "verify_exp": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise AttestationInvalidError("the attestation's signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise AttestationInvalidError("the attestation cannot be decoded") from exc
    try:
        claims = FaceAttestationClaims.model_validate(payload)
    except ValidationError as exc:
        raise AttestationInvalidError("the attestation's claims are malformed") from exc
    if header.get("kid") != claims.terminal_id:
        raise AttestationInvalidError("kid and terminal_id differ")
    if claims.challenge_id != expected_challenge_id:
        raise AttestationInvalidError("the attestation is for another challenge")
    if claims.certificate_fingerprint != expected_fingerprint.lower():
        raise AttestationInvalidError("the attestation is for another card certificate")
    if claims.facility_code != expected_facility_code:
        raise AttestationInvalidError("the attestation is for another facility")
    current = _epoch(now)
    if claims.iat > current + CLOCK_SKEW_S:
        raise AttestationInvalidError("the attestation is issued in the future")
    if current - claims.iat > max_age_s:
        raise AttestationInvalidError("the attestation is too old")
    if claims.threshold > max_threshold:
        raise AttestationInvalidError("the terminal's threshold is laxer than allowed")
    if not claims.match or claims.distance > claims.threshold:
        raise AttestationInvalidError("the face did not match the card photo")
    if not claims.liveness:
        raise AttestationInvalidError("the liveness check did not pass")
    return claims
