"""The card path on the server: challenges, certificate checks, first-use linking, by-card
eligibility, and the patient's own access log.

Certificates: the chain/signature check is cached per certificate fingerprint (bounded LRU);
revocation is looked up in the database on every check (indexed), so a CRL import takes effect
at once without any cache invalidation; trust anchors are reloaded when the ``trust_anchor``
table or the anchor files change.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from schemas.card import BasicFacts, ByCardQuery, Challenge, Registered
from schemas.eligibility import EligibilityResult
from schemas.identifiers import normalize_person_text
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.models import Terminal
from shikaku_server.auth.service import Principal
from shikaku_server.cache import Cache
from shikaku_server.card import verify
from shikaku_server.card.models import CardLink, CardLinkAudit, RevokedCertificate, TrustAnchor
from shikaku_server.consent.models import Visit
from shikaku_server.consent.service import live_consent
from shikaku_server.database import transaction, utcnow
from shikaku_server.digests import from_hex, serial_text, sha256_text
from shikaku_server.eligibility.models import EligibilityPeriod
from shikaku_server.eligibility.models import Insured as InsuredRow
from shikaku_server.eligibility.service import (
    build_result,
    evaluate_insured,
    load_insured_bundle,
    newer_eligibility_exists,
    today_jst,
)
from shikaku_server.errors import (
    AttestationInvalidError,
    CardNotRegisteredError,
    CertificateExpiredError,
    CertificateRevokedError,
    ChallengeExpiredError,
    ChallengeReusedError,
    ChallengeUnknownError,
    RegistrationAmbiguousError,
    RegistrationNoMatchError,
    ValidationFailedError,
)

log = logging.getLogger(__name__)
ANCHOR_RECHECK_SECONDS = 5.0  # `shikaku-admin trust add` reaches every server process within this


# ---------------------------------------------------------------- challenges


def create_challenge(cache: Cache, facility_code: str, ttl: int) -> Challenge:
    challenge_id = secrets.token_urlsafe(18)
    nonce = secrets.token_bytes(32)
    expires_at = utcnow() + dt.timedelta(seconds=ttl)
    record = {
        "nonce": base64.b64encode(nonce).decode(),
        "facility": facility_code,
        "expires_at": expires_at.isoformat(),
    }
    # kept twice as long as it is valid, so a late answer says "expired" rather than "unknown"
    cache.put_new(f"challenge:{challenge_id}", json.dumps(record).encode(), ttl * 2)
    return Challenge(challenge_id=challenge_id, nonce=base64.b64encode(nonce).decode(), expires_at=expires_at)


def redeem_challenge(cache: Cache, challenge_id: str, facility_code: str | None, ttl: int) -> bytes:
    """The nonce of a live challenge of this facility; the challenge is consumed either way."""
    raw = cache.take(f"challenge:{challenge_id}")
    if raw is None:
        if cache.get(f"challenge-used:{challenge_id}") is not None:
            raise ChallengeReusedError()
        raise ChallengeUnknownError()
    cache.set(f"challenge-used:{challenge_id}", b"1", ttl * 4)
    record = json.loads(raw)
    if facility_code is not None and record["facility"] != facility_code:
        raise ChallengeUnknownError("the challenge was issued to another facility")
    if dt.datetime.fromisoformat(record["expires_at"]) < utcnow():
        raise ChallengeExpiredError()
    return base64.b64decode(record["nonce"])


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CheckedCertificate:
    issuer: str
    serial_hex: str
    fingerprint: str
    certificate: x509.Certificate
    expires_on: dt.date
    notice: str | None


class CertificateVerifier:
    """Chain checks cached per fingerprint; revocation always from the database."""

    def __init__(self, anchor_files: list[Path], size: int) -> None:
        self._files = anchor_files
        self._size = size
        self._lock = threading.Lock()
        self._anchors: list[x509.Certificate] = []
        self._anchor_stamp: object = None
        self._checked_at = 0.0
        self._verified: OrderedDict[str, verify.VerifiedCertificate] = OrderedDict()

    def _anchors_for(self, session: Session) -> list[x509.Certificate]:
        now = time.monotonic()
        if self._anchor_stamp is not None and now - self._checked_at < ANCHOR_RECHECK_SECONDS:
            return self._anchors
        self._checked_at = now
        count, last = session.execute(select(func.count(), func.max(TrustAnchor.added_at))).one()
        files = tuple((str(p), p.stat().st_mtime_ns if p.exists() else 0) for p in self._files)
        stamp = (count, last, files)
        if stamp != self._anchor_stamp:
            anchors: list[x509.Certificate] = []
            for path in self._files:
                if path.exists():
                    anchors.extend(verify.load_trust_anchors(path.read_bytes()))
                else:
                    log.error("trust anchor file is missing", extra={"code": "trust_anchor_missing"})
            for (pem,) in session.execute(select(TrustAnchor.pem)):
                anchors.extend(x509.load_pem_x509_certificates(pem.encode()))
            with self._lock:
                self._anchors, self._anchor_stamp = anchors, stamp
                self._verified.clear()
        return self._anchors

    def check(self, session: Session, cert_der: bytes, today: dt.date) -> CheckedCertificate:
        anchors = self._anchors_for(session)
        fingerprint = verify.certificate_fingerprint(cert_der)
        with self._lock:
            verified = self._verified.get(fingerprint)
            if verified is not None:
                self._verified.move_to_end(fingerprint)
        if verified is None:
            verified = verify.verify_certificate_chain(cert_der, anchors, set(), today)
            with self._lock:
                self._verified[fingerprint] = verified
                while len(self._verified) > self._size:
                    self._verified.popitem(last=False)
        elif today > verify.grace_period_end(verified.expires_on):
            raise CertificateExpiredError()
        serial_hex = serial_text(verified.serial_number)
        revoked = session.execute(
            select(RevokedCertificate.id).where(
                RevokedCertificate.issuer == verified.issuer, RevokedCertificate.serial == serial_hex
            )
        ).first()
        if revoked is not None:
            raise CertificateRevokedError()
        return CheckedCertificate(
            issuer=verified.issuer,
            serial_hex=serial_hex,
            fingerprint=fingerprint,
            certificate=verified.certificate,
            expires_on=verified.expires_on,
            notice=verify.certificate_notice(verified.expires_on, today),
        )


def import_crl(session: Session, crl_bytes: bytes) -> int:
    """Record every serial of a CRL signed by a trusted authority (files or database)."""
    from shikaku_server.config import get_settings

    if not crl_bytes.lstrip().startswith(b"-----"):
        der = crl_bytes
    else:
        der = x509.load_pem_x509_crl(crl_bytes).public_bytes(serialization.Encoding.DER)
    anchors = CertificateVerifier(get_settings().trust_anchor_paths(), 1)._anchors_for(session)
    issuer, serials = verify.revoked_serials_from_crl(der, anchors)
    known = {
        s for (s,) in session.execute(select(RevokedCertificate.serial).where(RevokedCertificate.issuer == issuer))
    }
    new = [serial_text(s) for s in serials if serial_text(s) not in known]
    for serial in new:
        session.add(RevokedCertificate(issuer=issuer, serial=serial))
    session.flush()
    return len(new)


def add_trust_anchor(session: Session, data: bytes) -> str:
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValidationFailedError("not a PEM or DER certificate") from exc
    fingerprint = sha256_text(cert.public_bytes(serialization.Encoding.DER))
    if session.get(TrustAnchor, fingerprint) is None:
        session.add(
            TrustAnchor(
                fingerprint=fingerprint,
                subject=cert.subject.rfc4514_string(),
                pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            )
        )
        session.flush()
    return cert.subject.rfc4514_string()


# ---------------------------------------------------------------- card authentication


def authenticate_pin(
    session: Session,
    verifier: CertificateVerifier,
    nonce: bytes,
    cert_der: bytes,
    signature: bytes | None,
) -> CheckedCertificate:
    checked = verifier.check(session, cert_der, today_jst())
    if signature is None:
        raise ValidationFailedError("auth_method pin needs the card's signature")
    verify.verify_pin_signature(checked.certificate, nonce, signature)
    return checked


def authenticate_face(
    session: Session,
    verifier: CertificateVerifier,
    *,
    challenge_id: str,
    facility_code: str,
    cert_der: bytes,
    attestation: str | None,
) -> CheckedCertificate:
    import jwt

    from schemas import attestation as att

    checked = verifier.check(session, cert_der, today_jst())
    if not attestation:
        raise AttestationInvalidError("auth_method face needs the terminal's attestation")
    try:
        terminal_id = str(jwt.get_unverified_header(attestation).get("kid", ""))
    except jwt.PyJWTError as exc:
        raise AttestationInvalidError("the attestation is not a compact JWS") from exc
    terminal = session.get(Terminal, terminal_id) if terminal_id else None
    if terminal is None or terminal.revoked_at is not None or terminal.facility_code != facility_code:
        raise AttestationInvalidError("the attestation is not from a terminal registered to this facility")
    try:
        att.verify_attestation(
            attestation,
            terminal.public_key_pem.encode(),
            expected_challenge_id=challenge_id,
            expected_fingerprint=checked.fingerprint,
            expected_facility_code=facility_code,
            now=utcnow(),
        )
    except att.AttestationInvalidError as exc:
        raise AttestationInvalidError(str(exc)) from exc
    return checked


def _linked_insured(session: Session, checked: CheckedCertificate) -> int:
    insured_id = session.execute(
        select(CardLink.insured_id).where(CardLink.issuer == checked.issuer, CardLink.serial == checked.serial_hex)
    ).scalar_one_or_none()
    if insured_id is None:
        raise CardNotRegisteredError()
    return insured_id


def eligibility_by_card(
    session: Session,
    cache: Cache,
    principal: Principal,
    checked: CheckedCertificate,
    *,
    auth_method: str,
    as_of: dt.date | None,
) -> EligibilityResult:
    facility = principal.require_facility()
    insured_id = _linked_insured(session, checked)
    as_of = as_of or today_jst()
    bundle = load_insured_bundle(session, insured_id)
    evaluation = evaluate_insured(bundle, insured_id, as_of)
    if evaluation.validity == 2 and newer_eligibility_exists(session, evaluation, as_of):
        evaluation.validity = 3  # type: ignore[assignment]
    consent = live_consent(session, insured_id=insured_id, facility_code=facility)
    card_class = evaluation.period["card_classification"] if evaluation.period else "01"
    visit = Visit(
        id=secrets.token_urlsafe(24),
        facility_code=facility,
        insured_id=insured_id,
        auth_method=auth_method,
        card_classification=card_class,
        as_of=as_of,
    )
    session.add(visit)
    result = build_result(
        evaluation,
        insurer_name=bundle["insurer_name"],
        as_of=as_of,
        query_kind="card",
        share_limit_certificate=bool(consent and consent.limit_certificate),
        visit_id=visit.id,
        certificate_notice=checked.notice,
    )
    session.flush()
    access_log.record(
        session,
        insured_id=insured_id,
        facility_code=facility,
        role=principal.role or "",
        what="eligibility",
        query_kind="card",
        visit_id=visit.id,
        consent_id=consent.id if consent else None,
    )
    return result


def by_card(
    session: Session,
    cache: Cache,
    verifier: CertificateVerifier,
    principal: Principal,
    query: ByCardQuery,
    challenge_ttl: int,
) -> EligibilityResult:
    facility = principal.require_facility()
    nonce = redeem_challenge(cache, query.challenge_id, facility, challenge_ttl)
    if query.auth_method == "pin":
        checked = authenticate_pin(session, verifier, nonce, query.certificate, query.signature)
    else:
        checked = authenticate_face(
            session,
            verifier,
            challenge_id=query.challenge_id,
            facility_code=facility,
            cert_der=query.certificate,
            attestation=query.attestation,
        )
    return eligibility_by_card(session, cache, principal, checked, auth_method=query.auth_method, as_of=query.as_of)


# ---------------------------------------------------------------- first use: linking


def _audit(factory: sessionmaker[Session], **values: object) -> None:
    """Audit rows are written in their own transaction: a refused link is audited too."""
    with transaction(factory) as s:
        s.add(CardLinkAudit(**values))


def register(
    session: Session,
    factory: sessionmaker[Session],
    cache: Cache,
    verifier: CertificateVerifier,
    principal: Principal,
    *,
    challenge_id: str,
    cert_der: bytes,
    signature: bytes,
    facts: BasicFacts,
    challenge_ttl: int,
) -> Registered:
    facility = principal.require_facility()
    nonce = redeem_challenge(cache, challenge_id, facility, challenge_ttl)
    checked = authenticate_pin(session, verifier, nonce, cert_der, signature)
    today = today_jst()
    candidates = sorted(
        {
            insured_id
            for (insured_id,) in session.execute(
                select(EligibilityPeriod.insured_id).where(
                    EligibilityPeriod.superseded_by.is_(None),
                    EligibilityPeriod.birth_date == facts.birth_date,
                    EligibilityPeriod.name_norm == normalize_person_text(facts.name),
                    EligibilityPeriod.sex == facts.sex,
                    EligibilityPeriod.address_norm == normalize_person_text(facts.address),
                    EligibilityPeriod.valid_from <= today,
                    (EligibilityPeriod.valid_to.is_(None)) | (EligibilityPeriod.valid_to >= today),
                )
            )
        }
    )
    audit = {"facility_code": facility, "fingerprint": from_hex(checked.fingerprint), "candidates": len(candidates)}
    if not candidates:
        _audit(factory, outcome="no_match", insured_id=None, **audit)
        raise RegistrationNoMatchError()
    if len(candidates) > 1:
        _audit(factory, outcome="ambiguous", insured_id=None, **audit)
        raise RegistrationAmbiguousError()
    insured_id = candidates[0]
    link = session.execute(
        select(CardLink).where(CardLink.issuer == checked.issuer, CardLink.serial == checked.serial_hex)
    ).scalar_one_or_none()
    if link is None:
        outcome = "linked"
        session.add(
            CardLink(
                issuer=checked.issuer,
                serial=checked.serial_hex,
                fingerprint=from_hex(checked.fingerprint),
                insured_id=insured_id,
                not_after=checked.certificate.not_valid_after_utc,
            )
        )
    elif link.insured_id == insured_id:
        outcome = "already_linked"
    else:
        outcome = "relinked"  # the person's insurance changed: the link follows the four facts
        link.insured_id = insured_id
        link.linked_at = utcnow()
    session.add(CardLinkAudit(outcome=outcome, insured_id=insured_id, **audit))
    session.flush()
    insured = session.get(InsuredRow, insured_id)
    assert insured is not None
    status = "already_linked" if outcome == "already_linked" else "linked"
    return Registered(status=status, insurer_number=insured.insurer_number, branch=insured.branch)


# ---------------------------------------------------------------- the patient's own log


def my_access_log(
    session: Session,
    cache: Cache,
    verifier: CertificateVerifier,
    *,
    challenge_id: str,
    cert_der: bytes,
    signature: bytes,
    facility_code: str | None,
    challenge_ttl: int,
) -> list[dict[str, object]]:
    nonce = redeem_challenge(cache, challenge_id, facility_code, challenge_ttl)
    checked = authenticate_pin(session, verifier, nonce, cert_der, signature)
    insured_id = _linked_insured(session, checked)
    entries = access_log.entries_for(session, insured_id)
    access_log.record(
        session,
        insured_id=insured_id,
        facility_code=facility_code,
        role="patient",
        what="access_log",
        query_kind="card",
    )
    return entries
