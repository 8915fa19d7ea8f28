"""A JPKI-style test certificate authority.

The real identity authority (J-LIS) runs a self-signed "user authentication" root that issues one
RSA-2048 certificate per card. Those certificates carry no name, address, birth date or sex: the
subject is an opaque serial-like ``CN``. This module builds the same shape for tests:

* :class:`TestCA` — a self-signed root (``CA:true``, ``keyCertSign``/``cRLSign``) that issues
  user-authentication certificates (``digitalSignature``, ``CA:false``, ``clientAuth``) with
  validity dates the caller chooses (so tests can make expired or expiring-soon certificates),
  revokes serials and publishes a DER CRL.
* :func:`rsa_key` — RSA-2048 keys cached per index: key generation costs 50-100 ms, so tests
  reuse ``rsa_key(0)``, ``rsa_key(1)``, ... or pass ``key=`` explicitly;
  :func:`ec_key` — the same for ECDSA P-384 keys.
* two chains, one per card generation (``docs/card.md``, "Card generations"): the current card's
  RSA-2048 root signing with SHA-256 (``TestCA.create()``), and the 2026 card's and the
  smartphone's ECDSA P-384 root signing with SHA-384 (``TestCA.create_ecdsa()``). A CA issues
  card keys of its own kind unless ``key=`` says otherwise.
* PEM/DER writers for the files the server trusts (``SHIKAKU_TRUST_ANCHORS``) and imports
  (``shikaku-admin revocations import``).

Everything is deterministic within a process: serial numbers come from a per-CA counter and keys
from the cache, so the same calls give certificates with the same serials and keys.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CardPrivateKey",
    "IssuedCertificate",
    "TestCA",
    "card_signature",
    "ec_key",
    "rsa_key",
    "write_pem_certificates",
]

#: The private keys a card (or a CA) of either generation holds.
CardPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_UTC = dt.UTC
_JST = dt.timezone(dt.timedelta(hours=9), "JST")


@functools.cache
def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    """The ``index``-th cached RSA-2048 key of this process (generated on first use)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(index: int = 0) -> ec.EllipticCurvePrivateKey:
    """The ``index``-th cached ECDSA P-384 key of this process (the 2026 card's key type)."""
    return ec.generate_private_key(ec.SECP384R1())


def card_signature(key: CardPrivateKey, data: bytes) -> bytes:
    """The signature a card with ``key`` makes over ``data`` (``contract.md``, "Card signatures"):
    RSA PKCS#1 v1.5 with SHA-256, or ECDSA with SHA-384, DER-encoded."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA384()))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _hash_for(key: CardPrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """RSA roots sign with SHA-256 (today's JPKI), ECDSA P-384 roots with SHA-384."""
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) else hashes.SHA256()


def _as_utc(value: dt.date | dt.datetime, *, end_of_day: bool) -> dt.datetime:
    """Dates are Japanese calendar days: a ``not_after`` date is valid until 23:59:59 JST."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    clock = dt.time(23, 59, 59) if end_of_day else dt.time(0, 0, 0)
    return dt.datetime.combine(value, clock, tzinfo=_JST).astimezone(_UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key."""

    certificate: x509.Certificate
    private_key: CardPrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, data: bytes) -> bytes:
        """What the card holding this key answers for ``data`` (see :func:`card_signature`)."""
        return card_signature(self.private_key, data)

    @property
    def serial_number(self) -> int:
        return self.certificate.serial_number

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER encoding, lower-case hex."""
        return hashlib.sha256(self.der).hexdigest()


@dataclass
class TestCA:
    """A self-signed JPKI-style user-authentication root that issues card certificates."""

    __test__ = False  # not a pytest test class despite the name

    root: IssuedCertificate
    revoked: dict[int, dt.datetime] = field(default_factory=dict)
    _serials: itertools.count[int] = field(default_factory=lambda: itertools.count(0x1000))

    @classmethod
    def create(
        cls,
        *,
        common_name: str = "JPKI Test User Authentication CA",
        key: CardPrivateKey | None = None,
        not_before: dt.date | dt.datetime = dt.date(2020, 1, 1),
        not_after: dt.date | dt.datetime = dt.date(2045, 12, 31),
    ) -> TestCA:
        """A new root. ``key`` defaults to the cached ``rsa_key(1000)`` (shared by all roots)."""
        private_key = key if key is not None else rsa_key(1000)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI Test"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Shikaku Testbed"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        public_key = private_key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(1)
            .not_valid_before(_as_utc(not_before, end_of_day=False))
            .not_valid_after(_as_utc(not_after, end_of_day=True))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(private_key, _hash_for(private_key))
        )
        return cls(root=IssuedCertificate(certificate, private_key))

    @classmethod
    def create_ecdsa(
        cls,
        *,
        common_name: str = "JPKI Test User Authentication CA (ECDSA P-384)",
        key: ec.EllipticCurvePrivateKey | None = None,
        not_before: dt.date | dt.datetime = dt.date(2025, 1, 1),
        not_after: dt.date | dt.datetime = dt.date(2050, 12, 31),
    ) -> TestCA:
        """The 2026 generation's root: ECDSA P-384, signing with SHA-384. ``key`` defaults to
        the cached ``ec_key(1000)``."""
        return cls.create(
            common_name=common_name,
            key=key if key is not None else ec_key(1000),
            not_before=not_before,
            not_after=not_after,
        )

    @property
    def is_ecdsa(self) -> bool:
        return isinstance(self.root.private_key, ec.EllipticCurvePrivateKey)

    @property
    def certificate(self) -> x509.Certificate:
        return self.root.certificate

    @property
    def der(self) -> bytes:
        return self.root.der

    @property
    def pem(self) -> bytes:
        return self.root.pem

    def issue_auth_certificate(
        self,
        *,
        key: CardPrivateKey | None = None,
        key_index: int | None = None,
        not_before: dt.date | dt.datetime = dt.date(2024, 1, 1),
        not_after: dt.date | dt.datetime = dt.date(2034, 1, 1),
        serial_number: int | None = None,
        digital_signature: bool = True,
        signing_key: CardPrivateKey | None = None,
    ) -> IssuedCertificate:
        """Issue a user-authentication certificate.

        ``key`` (or the cached ``rsa_key(key_index)``/``ec_key(key_index)``, after the CA's own key
        type; by default index ``serial % 16``) is the card's key. ``digital_signature=False`` and
        ``signing_key`` (sign with another key than the root's) make deliberately broken
        certificates for negative tests.
        """
        serial = serial_number if serial_number is not None else next(self._serials)
        if key is None:
            index = key_index if key_index is not None else serial % 16
            key = ec_key(index) if self.is_ecdsa else rsa_key(index)
        public_key = key.public_key()
        # JPKI authentication certificates name no person: an opaque serial-like CN only.
        opaque_cn = hashlib.sha256(f"{self.root.serial_number}:{serial}".encode()).hexdigest()[:24].upper()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"JPKI-AUTH-{opaque_cn}"),
            ]
        )
        ca_key = self.root.private_key
        signer = signing_key if signing_key is not None else ca_key
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(_as_utc(not_before, end_of_day=False))
            .not_valid_after(_as_utc(not_after, end_of_day=True))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=digital_signature,
                    content_commitment=False,
                    key_encipherment=not digital_signature,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(signer, _hash_for(signer))
        )
        return IssuedCertificate(certificate, key)

    def revoke(self, serial_number: int, *, when: dt.datetime | None = None) -> None:
        self.revoked[serial_number] = when or dt.datetime(2025, 1, 1, tzinfo=_UTC)

    def crl_der(
        self,
        *,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
    ) -> bytes:
        """A DER CRL, signed by the root, listing every revoked serial."""
        now = this_update or dt.datetime(2025, 1, 1, tzinfo=_UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(next_update or now + dt.timedelta(days=3650))
        )
        for serial, when in sorted(self.revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(self.root.private_key, _hash_for(self.root.private_key))
        return crl.public_bytes(serialization.Encoding.DER)

    def write_trust_anchor(self, path: Path) -> Path:
        """Write the root as PEM (the format of ``SHIKAKU_TRUST_ANCHORS``)."""
        path.write_bytes(self.pem)
        return path

    def write_crl(self, path: Path) -> Path:
        path.write_bytes(self.crl_der())
        return path


def write_pem_certificates(path: Path, *certificates: x509.Certificate) -> Path:
    """Write several certificates into one PEM bundle."""
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path
