"""Certificate chain, validity (grace / expires soon), revocation and PIN signature checks."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shikaku_server.card.verify import (
    certificate_fingerprint,
    certificate_notice,
    grace_period_end,
    load_trust_anchors,
    revoked_serials_from_crl,
    verify_certificate_chain,
    verify_pin_signature,
)
from shikaku_server.errors import (
    CertificateExpiredError,
    CertificateRevokedError,
    CertificateUntrustedError,
    DomainError,
    SignatureInvalidError,
)
from testbed.pki import IssuedCertificate, TestCA, rsa_key

EXPIRY = dt.date(2030, 5, 10)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.create()


@pytest.fixture(scope="module")
def issued(ca: TestCA) -> IssuedCertificate:
    return ca.issue_auth_certificate(not_before=dt.date(2025, 5, 10), not_after=EXPIRY)


def _check(issued: IssuedCertificate, ca: TestCA, today: dt.date, revoked: frozenset[int] = frozenset()) -> str | None:
    return verify_certificate_chain(issued.der, [ca.certificate], set(revoked), today).notice


def test_valid_certificate(ca: TestCA, issued: IssuedCertificate) -> None:
    verified = verify_certificate_chain(issued.der, [ca.certificate], set(), dt.date(2026, 1, 1))
    assert verified.notice is None
    assert verified.serial_number == issued.serial_number
    assert verified.issuer == ca.certificate.subject.rfc4514_string()
    assert verified.fingerprint == hashlib.sha256(issued.der).hexdigest() == certificate_fingerprint(issued.der)
    assert verified.expires_on == EXPIRY
    assert verified.certificate == issued.certificate


def test_chain_found_among_several_anchors(ca: TestCA, issued: IssuedCertificate) -> None:
    other = TestCA.create(common_name="JPKI Test Another CA", key=rsa_key(1001))
    assert _check(issued, ca, dt.date(2026, 1, 1)) is None
    verify_certificate_chain(issued.der, [other.certificate, ca.certificate], set(), dt.date(2026, 1, 1))


def test_unknown_issuer_is_untrusted(issued: IssuedCertificate) -> None:
    other = TestCA.create(common_name="JPKI Test Another CA", key=rsa_key(1001))
    with pytest.raises(CertificateUntrustedError) as info:
        verify_certificate_chain(issued.der, [other.certificate], set(), dt.date(2026, 1, 1))
    assert info.value.code == "certificate_untrusted"
    assert info.value.status == 401
    assert isinstance(info.value, DomainError)


def test_same_name_other_key_is_untrusted(ca: TestCA) -> None:
    impostor = TestCA.create(key=rsa_key(1002))  # same subject as ``ca``, different key
    forged = impostor.issue_auth_certificate()
    with pytest.raises(CertificateUntrustedError):
        verify_certificate_chain(forged.der, [ca.certificate], set(), dt.date(2026, 1, 1))


def test_certificate_signed_by_the_wrong_key_is_untrusted(ca: TestCA) -> None:
    forged = ca.issue_auth_certificate(signing_key=rsa_key(1003))
    with pytest.raises(CertificateUntrustedError):
        verify_certificate_chain(forged.der, [ca.certificate], set(), dt.date(2026, 1, 1))


def test_no_anchors_means_untrusted(issued: IssuedCertificate) -> None:
    with pytest.raises(CertificateUntrustedError):
        verify_certificate_chain(issued.der, [], set(), dt.date(2026, 1, 1))


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x01", b"not a certificate"])
def test_garbage_is_untrusted(ca: TestCA, garbage: bytes) -> None:
    with pytest.raises(CertificateUntrustedError):
        verify_certificate_chain(garbage, [ca.certificate], set(), dt.date(2026, 1, 1))


def test_without_digital_signature_usage_is_untrusted(ca: TestCA) -> None:
    cert = ca.issue_auth_certificate(digital_signature=False)
    with pytest.raises(CertificateUntrustedError, match="digital signatures"):
        verify_certificate_chain(cert.der, [ca.certificate], set(), dt.date(2026, 1, 1))


def test_ca_certificate_is_not_a_card_certificate(ca: TestCA) -> None:
    with pytest.raises(CertificateUntrustedError):
        verify_certificate_chain(ca.der, [ca.certificate], set(), dt.date(2026, 1, 1))


def test_not_yet_valid_is_untrusted(ca: TestCA, issued: IssuedCertificate) -> None:
    with pytest.raises(CertificateUntrustedError, match="not valid yet"):
        _check(issued, ca, dt.date(2025, 5, 9))
    assert _check(issued, ca, dt.date(2025, 5, 10)) is None


def test_expired_anchor_is_untrusted() -> None:
    old = TestCA.create(common_name="JPKI Test Old CA", not_after=dt.date(2026, 12, 31))
    cert = old.issue_auth_certificate(not_after=dt.date(2026, 6, 30))
    assert verify_certificate_chain(cert.der, [old.certificate], set(), dt.date(2026, 1, 1)).notice is None
    with pytest.raises(CertificateUntrustedError):
        verify_certificate_chain(cert.der, [old.certificate], set(), dt.date(2027, 1, 1))


@pytest.mark.parametrize(
    ("today", "notice"),
    [
        (dt.date(2030, 2, 9), None),  # more than 3 months before expiry
        (dt.date(2030, 2, 10), "expires_soon"),  # exactly 3 months before
        (dt.date(2030, 5, 10), "expires_soon"),  # the last valid day
        (dt.date(2030, 5, 11), "grace_period"),  # expired: the card still works
        (dt.date(2030, 8, 31), "grace_period"),  # end of the 3rd month after the month of expiry
    ],
)
def test_expiry_notices(ca: TestCA, issued: IssuedCertificate, today: dt.date, notice: str | None) -> None:
    assert _check(issued, ca, today) == notice


def test_expired_after_the_grace_period(ca: TestCA, issued: IssuedCertificate) -> None:
    with pytest.raises(CertificateExpiredError) as info:
        _check(issued, ca, dt.date(2030, 9, 1))
    assert info.value.code == "certificate_expired"


@pytest.mark.parametrize(
    ("expires_on", "grace_end"),
    [
        (dt.date(2030, 5, 10), dt.date(2030, 8, 31)),
        (dt.date(2025, 11, 30), dt.date(2026, 2, 28)),
        (dt.date(2027, 11, 1), dt.date(2028, 2, 29)),  # leap year
        (dt.date(2026, 12, 31), dt.date(2027, 3, 31)),
    ],
)
def test_grace_period_end(expires_on: dt.date, grace_end: dt.date) -> None:
    assert grace_period_end(expires_on) == grace_end


def test_expires_soon_clamps_short_months() -> None:
    assert certificate_notice(dt.date(2030, 5, 31), dt.date(2030, 2, 28)) == "expires_soon"
    assert certificate_notice(dt.date(2030, 5, 31), dt.date(2030, 2, 27)) is None


def test_expiry_is_judged_in_japan_time(ca: TestCA) -> None:
    # notAfter 2030-05-10 23:30 UTC is already 2030-05-11 in Japan: valid through the 11th.
    cert = ca.issue_auth_certificate(not_after=dt.datetime(2030, 5, 10, 23, 30, tzinfo=dt.UTC))
    assert verify_certificate_chain(cert.der, [ca.certificate], set(), dt.date(2030, 5, 11)).notice == ("expires_soon")


def test_revoked(ca: TestCA, issued: IssuedCertificate) -> None:
    with pytest.raises(CertificateRevokedError) as info:
        _check(issued, ca, dt.date(2026, 1, 1), frozenset({issued.serial_number}))
    assert info.value.code == "certificate_revoked"
    assert _check(issued, ca, dt.date(2026, 1, 1), frozenset({issued.serial_number + 1})) is None


def test_revoked_serials_from_a_signed_crl(ca: TestCA) -> None:
    local = TestCA.create(common_name="JPKI Test CRL CA")
    cert = local.issue_auth_certificate()
    local.revoke(cert.serial_number)
    issuer, serials = revoked_serials_from_crl(local.crl_der(), [ca.certificate, local.certificate])
    assert serials == {cert.serial_number}
    assert issuer == local.certificate.subject.rfc4514_string()
    with pytest.raises(CertificateRevokedError):
        verify_certificate_chain(cert.der, [local.certificate], serials, dt.date(2026, 1, 1))
    with pytest.raises(CertificateUntrustedError):
        revoked_serials_from_crl(local.crl_der(), [ca.certificate])  # not signed by a trusted CA
    with pytest.raises(CertificateUntrustedError):
        revoked_serials_from_crl(b"junk", [local.certificate])


def test_load_trust_anchors(ca: TestCA) -> None:
    assert load_trust_anchors(ca.pem) == [ca.certificate]
    with pytest.raises(CertificateUntrustedError):
        load_trust_anchors(b"no pem here")


def _sign(issued: IssuedCertificate, nonce: bytes) -> bytes:
    return issued.private_key.sign(nonce, padding.PKCS1v15(), hashes.SHA256())


def test_pin_signature_ok(issued: IssuedCertificate) -> None:
    nonce = bytes(range(32))
    verify_pin_signature(issued.certificate, nonce, _sign(issued, nonce))


def test_bad_signature(issued: IssuedCertificate, ca: TestCA) -> None:
    nonce = bytes(range(32))
    signature = _sign(issued, nonce)
    with pytest.raises(SignatureInvalidError) as info:
        verify_pin_signature(issued.certificate, nonce[::-1], signature)  # another nonce
    assert info.value.code == "signature_invalid"
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(SignatureInvalidError):
        verify_pin_signature(issued.certificate, nonce, tampered)
    with pytest.raises(SignatureInvalidError):
        verify_pin_signature(issued.certificate, nonce, b"")
    other = ca.issue_auth_certificate(key_index=issued.serial_number % 16 + 1)
    with pytest.raises(SignatureInvalidError):
        verify_pin_signature(other.certificate, nonce, signature)  # signed by another card


def test_signature_needs_an_rsa_certificate(issued: IssuedCertificate) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(issued.certificate.subject)
        .issuer_name(issued.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(SignatureInvalidError, match="not RSA"):
        verify_pin_signature(cert, b"n", b"s")
