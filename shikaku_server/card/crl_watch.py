"""``shikaku-admin revocations watch URL|DIR``: poll the identity authority's full and delta CRLs
and import them, so that J-LIS revocations take effect without a person importing files.

A source is a directory (every file in it, in name order) or an ``http(s)://`` URL of a CRL;
a full CRL fetched from a URL that names its delta CRL (the Freshest CRL extension) brings the
delta along. Each CRL is parsed with ``cryptography``; its signature must verify against a
trusted authority (as ``revocations import``). A delta CRL (the Delta CRL Indicator extension)
adds its entries, and an entry with reason ``removeFromCRL`` (a hold released) takes the serial
off the revoked list. A CRL whose number (CRL Number extension) the watch has already applied for
that issuer and kind is skipped; importing is idempotent anyway. See docs/card.md."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.card import verify
from shikaku_server.card.models import RevokedCertificate
from shikaku_server.card.service import CertificateVerifier
from shikaku_server.database import transaction
from shikaku_server.digests import serial_text
from shikaku_server.errors import CertificateUntrustedError

log = logging.getLogger(__name__)
FETCH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Applied:
    issuer: str
    delta: bool
    number: int | None
    added: int
    removed: int


def _der(data: bytes) -> bytes:
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_crl(data).public_bytes(serialization.Encoding.DER)
    return data


def _extension(crl: x509.CertificateRevocationList, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return crl.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def is_delta(crl: x509.CertificateRevocationList) -> bool:
    return _extension(crl, x509.DeltaCRLIndicator) is not None


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    number = _extension(crl, x509.CRLNumber)
    return number.crl_number if isinstance(number, x509.CRLNumber) else None


def _removed(entry: x509.RevokedCertificate) -> bool:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value
    except x509.ExtensionNotFound:
        return False
    return reason.reason == x509.ReasonFlags.remove_from_crl


def apply_crl(session: Session, data: bytes, *, verifier: CertificateVerifier) -> Applied:
    """Import one full or delta CRL (DER or PEM) signed by an authority ``verifier`` trusts."""
    der = _der(data)
    anchors = verifier.anchors(session)
    issuer, _ = verify.revoked_serials_from_crl(der, anchors)  # verifies the signature
    crl = x509.load_der_x509_crl(der)
    removed = {serial_text(e.serial_number) for e in crl if _removed(e)}
    listed = {serial_text(e.serial_number) for e in crl} - removed
    known = {
        s for (s,) in session.execute(select(RevokedCertificate.serial).where(RevokedCertificate.issuer == issuer))
    }
    for serial in sorted(listed - known):
        entry = next(e for e in crl if serial_text(e.serial_number) == serial)
        session.add(RevokedCertificate(issuer=issuer, serial=serial, revoked_at=entry.revocation_date_utc))
    gone = removed & known
    if gone:
        session.execute(
            delete(RevokedCertificate).where(RevokedCertificate.issuer == issuer, RevokedCertificate.serial.in_(gone))
        )
    session.flush()
    return Applied(issuer, is_delta(crl), crl_number(crl), len(listed - known), len(gone))


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (operator's URL)
        body: bytes = response.read()
        return body


def _delta_urls(data: bytes) -> list[str]:
    try:
        crl = x509.load_der_x509_crl(_der(data))
    except ValueError:
        return []
    freshest = _extension(crl, x509.FreshestCRL)
    if not isinstance(freshest, x509.FreshestCRL):
        return []
    return [
        name.value
        for point in freshest
        for name in point.full_name or []
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def read_source(source: str, fetch: Callable[[str], bytes] = _fetch) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every CRL a source offers now: full CRLs before their deltas."""
    if source.startswith(("http://", "https://")):
        data = fetch(source)
        yield source, data
        for url in _delta_urls(data):
            yield url, fetch(url)
        return
    for path in sorted(Path(source).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            yield str(path), path.read_bytes()


@dataclass
class Watch:
    """The state of one watch: the CRL numbers applied per (issuer, delta?)."""

    factory: sessionmaker[Session]
    sources: list[str]
    verifier: CertificateVerifier  # whose trust anchors sign the CRLs
    seen: dict[tuple[str, bool], int] = field(default_factory=dict)

    def poll(self) -> list[Applied]:
        """One pass over every source; a source that fails is logged and tried again next time."""
        applied: list[Applied] = []
        for source in self.sources:
            try:
                items = list(read_source(source))
            except OSError as exc:
                log.warning("CRL source unreachable", extra={"code": "crl_source_unreachable", "source": source})
                log.debug("CRL fetch error", exc_info=exc)
                continue
            for name, data in items:
                try:
                    crl = x509.load_der_x509_crl(_der(data))
                except ValueError:
                    log.warning("not a CRL", extra={"code": "crl_invalid", "source": name})
                    continue
                key = (crl.issuer.rfc4514_string(), is_delta(crl))
                number = crl_number(crl)
                if number is not None and self.seen.get(key, -1) >= number:
                    continue
                try:
                    with transaction(self.factory) as session:
                        result = apply_crl(session, data, verifier=self.verifier)
                except CertificateUntrustedError:
                    log.warning(
                        "CRL not signed by a trusted authority", extra={"code": "crl_untrusted", "source": name}
                    )
                    continue
                if number is not None:
                    self.seen[key] = number
                applied.append(result)
        return applied

    def run(self, interval: float, *, passes: int | None = None, echo: Callable[[str], None] = print) -> None:
        done = 0
        while passes is None or done < passes:
            for a in self.poll():
                kind = "delta" if a.delta else "full"
                echo(f"{kind} CRL {a.number} of {a.issuer}: {a.added} revoked, {a.removed} released")
            done += 1
            if passes is None or done < passes:
                time.sleep(interval)
