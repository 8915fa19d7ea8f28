"""Turn an accepted face check into the claims the terminal signs (schemas.attestation)."""

from __future__ import annotations

import time

from clinic_terminal.face.matcher import FaceCheckResult
from schemas.attestation import FaceAttestationClaims, certificate_fingerprint


def attestation_claims(
    result: FaceCheckResult,
    *,
    challenge_id: str,
    certificate_der: bytes,
    facility_code: str,
    terminal_id: str,
    now: float | None = None,
) -> FaceAttestationClaims:
    """Claims for :func:`schemas.attestation.sign_attestation`; only an accepted check may be attested."""
    if not result.accepted or result.distance is None:
        raise ValueError("only an accepted face check can be attested")
    return FaceAttestationClaims(
        challenge_id=challenge_id,
        certificate_fingerprint=certificate_fingerprint(certificate_der),
        distance=result.distance,
        threshold=result.threshold,
        liveness=result.liveness,
        match=result.match,
        iat=int(time.time() if now is None else now),
        facility_code=facility_code,
        terminal_id=terminal_id,
    )
