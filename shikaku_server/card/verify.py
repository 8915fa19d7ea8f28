"""Verification of My Number card certificates and PIN signatures. Pure functions.

Rules (``domain.md``, flows 1 and 7):

* the user-authentication certificate must be directly issued by one of the trust anchors (JPKI
  user-authentication roots): issuer name matches and the anchor's signature verifies; its key is
  one a card generation carries (RSA-2048 on today's card, ECDSA P-384 on the 2026 card and on
  smartphones); it must not be a CA and its key usage must include ``digitalSignature`` → else
  ``certificate_untrusted``;
* its serial must not be on the revocation list → else ``certificate_revoked``;
* validity is judged in calendar days in Japan (JST): the certificate is valid through the JST
  date of ``notAfter``; after that the card keeps working until the end of the third month after
  the month of expiry (notice ``"grace_period"``), then ``certificate_expired``; during the
  3 months before expiry the notice is ``"expires_soon"``. Before ``notBefore``: untrusted;
* the PIN signature over the challenge nonce is checked by :func:`verify_pin_signature`, the one
  function for both generations: the certificate's key type chooses the scheme (``contract.md``,
  "Card signatures"), never anything the terminal says.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from shikaku_server.errors import (
    CertificateExpiredError,
    CertificateRevokedError,
    CertificateUntrustedError,
    SignatureInvalidError,
)

__all__ = [
    "CertificateNotice",
    "VerifiedCertificate",
    "certificate_fingerprint",
    "certificate_notice",
    "grace_period_end",
    "jst_date",
    "load_trust_anchors",
    "revoked_serials_from_crl",
    "verify_certificate_chain",
    "verify_pin_signature",
    "verify_signature",
]

CertificateNotice = Literal["expires_soon", "grace_period"]

JST = dt.timezone(dt.timedelta(hours=9), "JST")
_GRACE_MONTHS = 3
_WARN_MONTHS = 3


@dataclass(frozen=True)
class VerifiedCertificate:
    """A certificate that passed :func:`verify_certificate_chain`."""

    certificate: x509.Certificate
    issuer: str  # RFC 4514 issuer name: with ``serial_number`` the key the card is linked by
    serial_number: int
    fingerprint: str  # SHA-256 of the DER, lower-case hex
    expires_on: dt.date  # last valid day (JST)
    notice: CertificateNotice | None
    public_key: CertificatePublicKeyTypes  # loaded once: a cached chain check keeps it (``verify_signature``)


def certificate_fingerprint(cert_der: bytes) -> str:
    """SHA-256 of the DER encoding, lower-case hex."""
    return hashlib.sha256(cert_der).hexdigest()


def jst_date(moment: dt.datetime) -> dt.date:
    """The calendar day in Japan of an aware (or naive UTC) instant."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(JST).date()


def _add_months(day: dt.date, months: int) -> dt.date:
    """Same day-of-month ``months`` later/earlier, clamped to the month's last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def grace_period_end(expires_on: dt.date) -> dt.date:
    """Last day the card still works: the end of the 3rd month after the month of expiry."""
    index = expires_on.year * 12 + (expires_on.month - 1) + _GRACE_MONTHS
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def certificate_notice(expires_on: dt.date, today: dt.date) -> CertificateNotice | None:
    """``expires_soon``/``grace_period``/``None``; raises ``certificate_expired`` past grace."""
    if today > expires_on:
        if today > grace_period_end(expires_on):
            raise CertificateExpiredError(f"expired on {expires_on.isoformat()}")
        return "grace_period"
    if today >= _add_months(expires_on, -_WARN_MONTHS):
        return "expires_soon"
    return None


def _signature_check(public_key: object) -> Callable[[bytes, bytes], None] | None:
    """How a card key's signatures are checked: the one place where the key type chooses the
    scheme. ``None`` for a key no card generation carries (other size, curve or algorithm)."""
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048:
        rsa_key = public_key
        return lambda signature, data: rsa_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP384R1):
        ec_key = public_key
        return lambda signature, data: ec_key.verify(signature, data, ec.ECDSA(hashes.SHA384()))
    return None


def _issuer_of(cert: x509.Certificate, anchors: Iterable[x509.Certificate]) -> x509.Certificate:
    for anchor in anchors:
        if anchor.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return anchor
    raise CertificateUntrustedError("no trusted authority issued this certificate")


def _check_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateUntrustedError("the certificate has no key usage") from exc
    if not usage.digital_signature:
        raise CertificateUntrustedError("the key usage does not allow digital signatures")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise CertificateUntrustedError("a CA certificate is not a card certificate")


def verify_certificate_chain(
    cert_der: bytes,
    anchors: list[x509.Certificate],
    revoked_serials: set[int],
    today: dt.date,
) -> VerifiedCertificate:
    """Validate a card's user-authentication certificate (see the module docstring)."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise CertificateUntrustedError("not a DER X.509 certificate") from exc
    anchor = _issuer_of(cert, anchors)
    public_key = cert.public_key()
    if _signature_check(public_key) is None:
        raise CertificateUntrustedError("the card key is neither RSA-2048 nor ECDSA P-384")
    _check_usage(cert)
    if not jst_date(anchor.not_valid_before_utc) <= today <= jst_date(anchor.not_valid_after_utc):
        raise CertificateUntrustedError("the trusted authority's certificate is not valid today")
    if cert.serial_number in revoked_serials:
        raise CertificateRevokedError(f"serial {cert.serial_number:X} is revoked")
    if today < jst_date(cert.not_valid_before_utc):
        raise CertificateUntrustedError("the certificate is not valid yet")
    expires_on = jst_date(cert.not_valid_after_utc)
    notice = certificate_notice(expires_on, today)
    return VerifiedCertificate(
        certificate=cert,
        issuer=cert.issuer.rfc4514_string(),
        serial_number=cert.serial_number,
        fingerprint=certificate_fingerprint(cert_der),
        expires_on=expires_on,
        notice=notice,
        public_key=public_key,
    )


def verify_pin_signature(cert: x509.Certificate, nonce: bytes, signature: bytes) -> None:
    """Check the card's signature over the challenge nonce, by the certificate's key type.

    RSA-2048: PKCS#1 v1.5 with SHA-256. ECDSA P-384: ECDSA with SHA-384, the signature DER-encoded
    (``SEQUENCE {r, s}``; OpenSSL accepts only the canonical encoding, so a raw ``r || s`` or a
    re-encoded variant is refused). Any other key is refused (``signature_invalid``).
    """
    verify_signature(cert.public_key(), nonce, signature)


def verify_signature(public_key: CertificatePublicKeyTypes, nonce: bytes, signature: bytes) -> None:
    """:func:`verify_pin_signature` with the certificate's key already loaded (the server keeps
    it with the cached chain check, so a check does not parse the key again)."""
    check = _signature_check(public_key)
    if check is None:
        raise SignatureInvalidError("the certificate key is neither RSA-2048 nor ECDSA P-384")
    try:
        check(signature, nonce)
    except InvalidSignature as exc:
        raise SignatureInvalidError() from exc


def load_trust_anchors(pem: bytes) -> list[x509.Certificate]:
    """Parse a PEM bundle of trusted roots (``SHIKAKU_TRUST_ANCHORS``)."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateUntrustedError("the trust-anchor file holds no PEM certificate") from exc


def revoked_serials_from_crl(crl_der: bytes, anchors: list[x509.Certificate]) -> tuple[str, set[int]]:
    """``(issuer, serials)`` of a DER CRL whose signature one of ``anchors`` verifies."""
    try:
        crl = x509.load_der_x509_crl(crl_der)
    except ValueError as exc:
        raise CertificateUntrustedError("not a DER CRL") from exc
    for anchor in anchors:
        if anchor.subject != crl.issuer:
            continue
        public_key = anchor.public_key()
        if isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) and crl.is_signature_valid(public_key):
            return crl.issuer.rfc4514_string(), {entry.serial_number for entry in crl}
    raise CertificateUntrustedError("no trusted authority signed this CRL")
