"""Certificate chain, validity (grace / expires soon), revocation and PIN signature checks."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

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
    key = issued.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(nonce, padding.PKCS1v15(), hashes.SHA256())


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


# ---------------------------------------------------------------- the 2026 generation: ECDSA P-384


@pytest.fixture(scope="module")
def ec_ca() -> TestCA:
    return TestCA.create_ecdsa()


@pytest.fixture(scope="module")
def ec_issued(ec_ca: TestCA) -> IssuedCertificate:
    return ec_ca.issue_auth_certificate(not_before=dt.date(2026, 1, 1), not_after=dt.date(2036, 1, 1))


def _ec_sign(issued: IssuedCertificate, nonce: bytes) -> bytes:
    return _ec_key(issued).sign(nonce, ec.ECDSA(hashes.SHA384()))


def _self_signed(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, issuer: TestCA | None = None
) -> x509.Certificate:
    """A card-shaped certificate for ``key``, issued by ``issuer`` (else self-signed)."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "JPKI-AUTH-TEST")])
    signer = issuer.root.private_key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    )
    return builder.sign(signer, hashes.SHA384() if isinstance(signer, ec.EllipticCurvePrivateKey) else hashes.SHA256())


def test_ecdsa_chain_is_trusted(ec_ca: TestCA, ec_issued: IssuedCertificate, ca: TestCA) -> None:
    root = ec_ca.certificate
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.signature_hash_algorithm is not None and root.signature_hash_algorithm.name == "sha384"
    key = ec_issued.certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    verified = verify_certificate_chain(ec_issued.der, [ca.certificate, root], set(), dt.date(2026, 6, 1))
    assert verified.issuer == root.subject.rfc4514_string()
    assert verified.serial_number == ec_issued.serial_number
    with pytest.raises(CertificateUntrustedError):  # the RSA root does not vouch for the ECDSA card
        verify_certificate_chain(ec_issued.der, [ca.certificate], set(), dt.date(2026, 6, 1))


def test_ecdsa_pin_signature_ok(ec_issued: IssuedCertificate) -> None:
    nonce = bytes(range(32))
    signature = _ec_sign(ec_issued, nonce)
    assert signature[0] == 0x30  # DER SEQUENCE {r, s}
    verify_pin_signature(ec_issued.certificate, nonce, signature)


def test_ecdsa_bad_signatures(ec_issued: IssuedCertificate, ec_ca: TestCA) -> None:
    nonce = bytes(range(32))
    signature = _ec_sign(ec_issued, nonce)
    r, s = decode_dss_signature(signature)
    refused = {
        "another nonce": (nonce[::-1], signature),
        "tampered s": (nonce, encode_dss_signature(r, s ^ 1)),
        "raw r||s, not DER": (nonce, r.to_bytes(48, "big") + s.to_bytes(48, "big")),
        "DER with trailing bytes": (nonce, signature + b"\x00"),
        "empty": (nonce, b""),
        "SHA-256 instead of SHA-384": (nonce, _ec_key(ec_issued).sign(nonce, ec.ECDSA(hashes.SHA256()))),
        "signed over the SHA-384 digest once more": (
            nonce,
            _ec_key(ec_issued).sign(hashlib.sha384(nonce).digest(), ec.ECDSA(hashes.SHA384())),
        ),
    }
    for what, (data, candidate) in refused.items():
        with pytest.raises(SignatureInvalidError) as info:
            verify_pin_signature(ec_issued.certificate, data, candidate)
        assert info.value.code == "signature_invalid", what
    other = ec_ca.issue_auth_certificate(key_index=ec_issued.serial_number % 16 + 1)
    with pytest.raises(SignatureInvalidError):
        verify_pin_signature(other.certificate, nonce, signature)  # signed by another card


def _ec_key(issued: IssuedCertificate) -> ec.EllipticCurvePrivateKey:
    key = issued.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_scheme_follows_the_certificate_not_the_signature(
    issued: IssuedCertificate, ec_issued: IssuedCertificate
) -> None:
    nonce = bytes(range(32))
    rsa_signature = _sign(issued, nonce)
    ec_signature = _ec_sign(ec_issued, nonce)
    with pytest.raises(SignatureInvalidError):  # RSA certificate, ECDSA signature
        verify_pin_signature(issued.certificate, nonce, ec_signature)
    with pytest.raises(SignatureInvalidError):  # ECDSA certificate, RSA signature
        verify_pin_signature(ec_issued.certificate, nonce, rsa_signature)
    # an ECDSA signature by the RSA card's holder is impossible; one by another P-384 key over the
    # RSA certificate's nonce is refused too
    stranger = ec.generate_private_key(ec.SECP384R1()).sign(nonce, ec.ECDSA(hashes.SHA384()))
    with pytest.raises(SignatureInvalidError):
        verify_pin_signature(issued.certificate, nonce, stranger)


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="P-256"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), id="P-521"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()), id="secp256k1"),
        # a key too weak for any card is the point here
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), id="RSA-1024"),  # noqa: S505
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072), id="RSA-3072"),
    ],
)
def test_keys_no_card_carries_are_refused(
    make_key: Callable[[], ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey], ec_ca: TestCA
) -> None:
    key = make_key()
    nonce = bytes(range(32))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(nonce, ec.ECDSA(hashes.SHA384()))  # a valid signature, wrong curve
    else:
        signature = key.sign(nonce, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(SignatureInvalidError, match="neither RSA-2048 nor ECDSA P-384"):
        verify_pin_signature(_self_signed(key), nonce, signature)
    cert = _self_signed(key, issuer=ec_ca)  # issued by a trusted root, still not a card key
    with pytest.raises(CertificateUntrustedError, match="neither RSA-2048 nor ECDSA P-384"):
        verify_certificate_chain(cert.public_bytes(Encoding.DER), [ec_ca.certificate], set(), dt.date(2026, 1, 1))


def test_ecdsa_crl_is_read(ec_ca: TestCA, ec_issued: IssuedCertificate) -> None:
    local = TestCA.create_ecdsa(common_name="JPKI Test ECDSA CRL CA")
    cert = local.issue_auth_certificate()
    local.revoke(cert.serial_number)
    issuer, serials = revoked_serials_from_crl(local.crl_der(), [ec_ca.certificate, local.certificate])
    assert (issuer, serials) == (local.certificate.subject.rfc4514_string(), {cert.serial_number})
    with pytest.raises(CertificateUntrustedError):
        revoked_serials_from_crl(local.crl_der(), [ec_ca.certificate])
