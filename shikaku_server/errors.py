"""Domain errors: every error the API can answer, each with the contract's stable ``code``.

Services raise these; one exception handler (``shikaku_server.app``) renders them as
``application/problem+json``. Nothing else in the server builds error bodies.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}  # response headers the answer carries (``Retry-After``)


class UnauthorizedError(DomainError):
    code = "unauthorized"
    title = "Missing or invalid token"
    status = 401


class ForbiddenRoleError(DomainError):
    code = "forbidden_role"
    title = "This role may not do that"
    status = 403


class ValidationFailedError(DomainError):
    code = "validation_error"
    title = "The request is not valid"
    status = 422


class NotFoundError(DomainError):
    code = "not_found"
    title = "No such resource"
    status = 404


class PayloadTooLargeError(DomainError):
    code = "payload_too_large"
    title = "The request body is too large"
    status = 413


class MyNumberDetectedError(DomainError):
    code = "my_number_detected"
    title = "A 12-digit individual number (My Number) was found; it is never accepted"
    status = 422


class ChallengeUnknownError(DomainError):
    code = "challenge_unknown"
    title = "Unknown challenge"
    status = 401


class ChallengeExpiredError(DomainError):
    code = "challenge_expired"
    title = "The challenge has expired"
    status = 401


class ChallengeReusedError(DomainError):
    code = "challenge_reused"
    title = "The challenge was already used"
    status = 401


class CertificateUntrustedError(DomainError):
    code = "certificate_untrusted"
    title = "The card certificate does not chain to a trusted authority"
    status = 401


class CertificateExpiredError(DomainError):
    code = "certificate_expired"
    title = "The card certificate has expired"
    status = 401


class CertificateRevokedError(DomainError):
    code = "certificate_revoked"
    title = "The card certificate has been revoked"
    status = 401


class SignatureInvalidError(DomainError):
    code = "signature_invalid"
    title = "The card signature does not verify"
    status = 401


class AttestationInvalidError(DomainError):
    code = "attestation_invalid"
    title = "The face attestation is not valid"
    status = 401


class CardSuspendedError(DomainError):
    code = "card_suspended"
    title = "This card is suspended (一時利用停止) until it is resumed"
    status = 403


class CardNotRegisteredError(DomainError):
    code = "card_not_registered"
    title = "This card is not linked to an insured person yet"
    status = 404


class RegistrationNoMatchError(DomainError):
    code = "registration_no_match"
    title = "No current insured person matches all four basic facts"
    status = 409


class RegistrationAmbiguousError(DomainError):
    code = "registration_ambiguous"
    title = "Several insured persons match; nothing was linked"
    status = 409


class RegistrationConflictError(DomainError):
    """The card is linked to another person, or the person already has a live card."""

    code = "registration_conflict"
    title = "The link conflicts with an existing one; nothing was changed"
    status = 409


class ConsentRequiredError(DomainError):
    code = "consent_required"
    title = "The patient has not consented to this"
    status = 403


class ConsentExpiredError(DomainError):
    code = "consent_expired"
    title = "The patient's consent has lapsed"
    status = 403


class RateLimitedError(DomainError):
    code = "rate_limited"
    title = "Too many requests"
    status = 429

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(retry_after)


RETRY_AFTER_SECONDS = 2  # on 503: the Redis breaker's and the pool's scale (docs/operations.md)


class UnavailableError(DomainError):
    code = "unavailable"
    title = "A backing service is unavailable"
    status = 503

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
