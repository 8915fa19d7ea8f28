"""The test CA issues JPKI-shaped certificates and CRLs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from testbed.pki import TestCA, rsa_key, write_pem_certificates


def test_root_is_a_self_signed_ca(test_ca: TestCA) -> None:
    root = test_ca.certificate
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign


def test_auth_certificate_names_nobody(test_ca: TestCA) -> None:
    issued = test_ca.issue_auth_certificate()
    cert = issued.certificate
    cert.verify_directly_issued_by(test_ca.certificate)
    assert [attr.oid for attr in cert.subject] == [NameOID.COUNTRY_NAME, NameOID.COMMON_NAME]
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(common_name, str)
    assert common_name.startswith("JPKI-AUTH-")
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048
    assert issued.private_key.public_key().public_numbers() == public_key.public_numbers()


def test_validity_dates_are_japanese_days(test_ca: TestCA) -> None:
    cert = test_ca.issue_auth_certificate(not_before=dt.date(2025, 4, 1), not_after=dt.date(2030, 3, 31))
    assert cert.certificate.not_valid_before_utc == dt.datetime(2025, 3, 31, 15, 0, tzinfo=dt.UTC)
    assert cert.certificate.not_valid_after_utc == dt.datetime(2030, 3, 31, 14, 59, 59, tzinfo=dt.UTC)


def test_serials_are_unique_and_keys_are_cached(test_ca: TestCA) -> None:
    first = test_ca.issue_auth_certificate(key_index=3)
    second = test_ca.issue_auth_certificate(key_index=3)
    assert first.serial_number != second.serial_number
    assert first.private_key is second.private_key is rsa_key(3)
    assert first.fingerprint != second.fingerprint


def test_crl_lists_revoked_serials(test_ca: TestCA, tmp_path: Path) -> None:
    ca = TestCA.create(common_name="JPKI Test CRL CA")
    revoked = ca.issue_auth_certificate()
    ca.issue_auth_certificate()
    ca.revoke(revoked.serial_number)
    crl = x509.load_der_x509_crl(ca.write_crl(tmp_path / "ca.crl").read_bytes())
    public_key = ca.certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert crl.is_signature_valid(public_key)
    assert [entry.serial_number for entry in crl] == [revoked.serial_number]


def test_pem_files_load_back(test_ca: TestCA, tmp_path: Path) -> None:
    anchor = x509.load_pem_x509_certificate(test_ca.write_trust_anchor(tmp_path / "root.pem").read_bytes())
    assert anchor == test_ca.certificate
    other = TestCA.create(common_name="JPKI Test Other CA")
    bundle = write_pem_certificates(tmp_path / "bundle.pem", test_ca.certificate, other.certificate)
    assert x509.load_pem_x509_certificates(bundle.read_bytes()) == [test_ca.certificate, other.certificate]
