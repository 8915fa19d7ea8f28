"""The card path on the server: challenges, certificate checks, first-use linking and by-card
eligibility (the patient's own side is ``shikaku_server.me``).

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
from typing import TYPE_CHECKING, Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import and_, bindparam, exists, func, insert, literal_column, select, true
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from schemas.card import BasicFacts, ByCardQuery, Challenge, Registered
from schemas.codes import Validity
from schemas.eligibility import EligibilityResult
from schemas.identifiers import normalize_person_text
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.models import Facility, Terminal
from shikaku_server.auth.service import Principal
from shikaku_server.cache import Cache, CacheError, RedisCache
from shikaku_server.card import verify
from shikaku_server.card.models import CardLink, CardLinkAudit, RevokedCertificate, TrustAnchor
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.consent.service import live_consent
from shikaku_server.database import execute_raw, postgres_engine, transaction, utcnow
from shikaku_server.digests import from_hex, serial_text, sha256_text
from shikaku_server.eligibility.models import EligibilityPeriod
from shikaku_server.eligibility.models import Insured as InsuredRow
from shikaku_server.eligibility.service import (
    build_result,
    cached_bundle_async,
    evaluate_insured,
    load_insured_bundle,
    newer_eligibility_exists,
    result_dict,
    today_jst,
)
from shikaku_server.errors import (
    AttestationInvalidError,
    CardNotRegisteredError,
    CardSuspendedError,
    CertificateExpiredError,
    CertificateRevokedError,
    ChallengeExpiredError,
    ChallengeReusedError,
    ChallengeUnknownError,
    RegistrationAmbiguousError,
    RegistrationConflictError,
    RegistrationNoMatchError,
    UnavailableError,
    ValidationFailedError,
)
from shikaku_server.me.suspension import is_suspended, suspended
from shikaku_server.pgasync import AsyncPG, Prepared

if TYPE_CHECKING:
    from shikaku_server.state import AppState

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
    return _nonce_of(raw, facility_code)


# The challenge store on the event loop (the card-check hot path): with Redis spoken to by the
# cache's non-blocking client, a challenge costs one round trip to create (SET NX EX) and one to
# redeem (this script: take it, mark it used, or tell "reused" from "unknown"), no thread hop.
# Other caches (in-process, or a Redis URL the small client does not handle) use the calls above.
_REDEEM = """
local v = redis.call('GETDEL', KEYS[1])
if v then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
  return {1, v}
end
return {0, redis.call('EXISTS', KEYS[2])}
"""


def _event_loop_redis(cache: Cache) -> RedisCache | None:
    return cache if isinstance(cache, RedisCache) and cache.on_event_loop else None


async def acreate_challenge(cache: Cache, facility_code: str, ttl: int) -> Challenge:
    """``create_challenge`` without blocking the event loop."""
    redis_cache = _event_loop_redis(cache)
    if redis_cache is None:
        return await run_in_threadpool(create_challenge, cache, facility_code, ttl)
    challenge_id = secrets.token_urlsafe(18)
    nonce = base64.b64encode(secrets.token_bytes(32)).decode()
    expires_at = utcnow() + dt.timedelta(seconds=ttl)
    record = {"nonce": nonce, "facility": facility_code, "expires_at": expires_at.isoformat()}
    try:
        await redis_cache.aput_new(f"challenge:{challenge_id}", json.dumps(record).encode(), ttl * 2)
    except CacheError as exc:
        raise UnavailableError("the challenge store (Redis) is unavailable") from exc
    return Challenge(challenge_id=challenge_id, nonce=nonce, expires_at=expires_at)


async def aredeem_challenge(cache: Cache, challenge_id: str, facility_code: str | None, ttl: int) -> bytes:
    """``redeem_challenge`` without blocking the event loop: one round trip, same answers."""
    redis_cache = _event_loop_redis(cache)
    if redis_cache is None:
        return await run_in_threadpool(redeem_challenge, cache, challenge_id, facility_code, ttl)
    try:
        reply = await redis_cache.aeval(
            _REDEEM, [f"challenge:{challenge_id}", f"challenge-used:{challenge_id}"], [str(ttl * 4).encode()]
        )
    except CacheError as exc:
        raise UnavailableError("the challenge store (Redis) is unavailable") from exc
    if reply[0] != 1:
        if reply[1]:
            raise ChallengeReusedError()
        raise ChallengeUnknownError()
    return _nonce_of(reply[1], facility_code)


def _nonce_of(raw: bytes, facility_code: str | None) -> bytes:
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

    def anchors_due(self) -> bool:
        """True when the next check must look at the anchors in the database first."""
        return self._anchor_stamp is None or time.monotonic() - self._checked_at >= ANCHOR_RECHECK_SECONDS

    def refresh_anchors(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            self._anchors_for(session)

    def check(self, session: Session, cert_der: bytes, today: dt.date) -> CheckedCertificate:
        anchors = self._anchors_for(session)
        verified, fingerprint = self.verified(anchors, cert_der, today)
        serial_hex = serial_text(verified.serial_number)
        revoked = session.execute(
            select(RevokedCertificate.id).where(
                RevokedCertificate.issuer == verified.issuer, RevokedCertificate.serial == serial_hex
            )
        ).first()
        if revoked is not None:
            raise CertificateRevokedError()
        if is_suspended(session, verified.issuer, serial_hex):
            raise CardSuspendedError()
        return self.checked(verified, fingerprint, today)

    async def acheck_chain(
        self, factory: sessionmaker[Session], cert_der: bytes, today: dt.date
    ) -> tuple[verify.VerifiedCertificate, str]:
        """The chain part of ``check`` from the event loop (anchors re-read in a thread when due);
        the caller looks revocation up (``card_facts``) and then calls ``checked``."""
        if self.anchors_due():
            await run_in_threadpool(self.refresh_anchors, factory)
        return self.verified(self._anchors, cert_der, today)

    def checked(self, verified: verify.VerifiedCertificate, fingerprint: str, today: dt.date) -> CheckedCertificate:
        return CheckedCertificate(
            issuer=verified.issuer,
            serial_hex=serial_text(verified.serial_number),
            fingerprint=fingerprint,
            certificate=verified.certificate,
            expires_on=verified.expires_on,
            notice=verify.certificate_notice(verified.expires_on, today),
        )

    def verified(
        self, anchors: list[x509.Certificate], cert_der: bytes, today: dt.date
    ) -> tuple[verify.VerifiedCertificate, str]:
        """The chain check, cached per fingerprint; raises untrusted / expired."""
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
        return verified, fingerprint


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
        share_limit_certificate=False,  # answered before this visit's consent: see CardFacts
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


# ---------------------------------------------------------------- by-card with the PIN: the hot path


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What a PIN card check reads from the database, in one statement on PostgreSQL: is the
    certificate revoked, whom is it linked to (and that person's bundle key), and the person's
    consent in force at this facility (for the access-log entry only). A card check answers
    before the consent of its own visit is taken, so it never carries the consent-gated parts
    (限度額, 特定疾病) under an earlier visit's consent: the patient may refuse them at this visit
    (docs/consent.md)."""

    revoked: bool
    suspended: bool
    insured_id: int | None
    insurer_number: str | None
    symbol_norm: str | None
    number_norm: str | None
    consent_id: int | None


def _live(consent_id: int | None, revoked_at: dt.datetime | None, expires_at: dt.datetime | None) -> bool:
    """``consent.service.live_consent`` on the columns of the latest consent."""
    return consent_id is not None and revoked_at is None and (expires_at is None or expires_at >= utcnow())


_LATEST_CONSENT = (
    select(Consent.id, Consent.revoked_at, Consent.expires_at)
    .where(Consent.insured_id == CardLink.insured_id, Consent.facility_code == bindparam("facility"))
    .order_by(Consent.given_at.desc(), Consent.id.desc())
    .limit(bindparam("one"))
    .lateral("latest_consent")
)
_FACTS_QUERY = (
    select(
        exists().where(
            RevokedCertificate.issuer == bindparam("issuer"), RevokedCertificate.serial == bindparam("serial")
        ),
        suspended(bindparam("issuer"), bindparam("serial")),
        CardLink.insured_id,
        InsuredRow.insurer_number,
        InsuredRow.symbol_norm,
        InsuredRow.number_norm,
        *_LATEST_CONSENT.c,
    )
    .select_from(select(literal_column("1").label("one")).subquery("one"))
    .outerjoin(CardLink, and_(CardLink.issuer == bindparam("issuer"), CardLink.serial == bindparam("serial")))
    .outerjoin(InsuredRow, InsuredRow.id == CardLink.insured_id)
    .outerjoin(_LATEST_CONSENT, true())
)
_PG_FACTS = Prepared("shikaku_card_facts", _FACTS_QUERY)


async def card_facts_async(pg: AsyncPG, issuer: str, serial_hex: str, facility_code: str) -> CardFacts:
    """``card_facts`` in one prepared statement on the event loop (PostgreSQL)."""
    rows = await pg.fetch(_PG_FACTS, {"issuer": issuer, "serial": serial_hex, "facility": facility_code, "one": 1})
    revoked, suspended_, insured_id, insurer_number, symbol_norm, number_norm, *consent = rows[0]
    consent_id, revoked_at, expires_at = consent
    live = _live(consent_id, revoked_at, expires_at)
    return CardFacts(
        revoked=bool(revoked),
        suspended=bool(suspended_),
        insured_id=insured_id,
        insurer_number=insurer_number,
        symbol_norm=symbol_norm,
        number_norm=number_norm,
        consent_id=consent_id if live else None,
    )


def card_facts(factory: sessionmaker[Session], issuer: str, serial_hex: str, facility_code: str) -> CardFacts:
    """The same facts through SQLAlchemy (SQLite has no LATERAL; a thread does this)."""
    with factory() as session:
        revoked = session.execute(
            select(RevokedCertificate.id).where(
                RevokedCertificate.issuer == issuer, RevokedCertificate.serial == serial_hex
            )
        ).first()
        row = session.execute(
            select(CardLink.insured_id, InsuredRow.insurer_number, InsuredRow.symbol_norm, InsuredRow.number_norm)
            .join(InsuredRow, InsuredRow.id == CardLink.insured_id)
            .where(CardLink.issuer == issuer, CardLink.serial == serial_hex)
        ).first()
        consent = None
        if row is not None:
            consent = live_consent(session, insured_id=row[0], facility_code=facility_code)
        card_suspended = is_suspended(session, issuer, serial_hex)
    return CardFacts(
        revoked=revoked is not None,
        suspended=card_suspended,
        insured_id=row[0] if row is not None else None,
        insurer_number=row[1] if row is not None else None,
        symbol_norm=row[2] if row is not None else None,
        number_norm=row[3] if row is not None else None,
        consent_id=consent.id if consent is not None else None,
    )


_VISIT_COLUMNS = ("id", "facility_code", "insured_id", "auth_method", "card_classification", "as_of", "created_at")
_ENTRY_COLUMNS = ("at", "insured_id", "facility_code", "role", "what", "query_kind", "consent_id")
_PG_VISIT_INSERT = (  # the columns in the order of the two tuples above
    "WITH visit_row AS (INSERT INTO visit (id, facility_code, insured_id, auth_method, card_classification, as_of, "
    "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id) "
    "INSERT INTO access_log (at, insured_id, facility_code, role, what, query_kind, consent_id, visit_id) "
    "SELECT %s, %s, %s, %s, %s, %s, %s, visit_row.id FROM visit_row"
)


def record_visit(factory: sessionmaker[Session], visit: dict[str, Any], entry: dict[str, Any]) -> None:
    """The visit and its access-log entry, committed together before the answer leaves.

    On PostgreSQL one statement (both inserts) and the commit on a pooled DBAPI connection: a
    fifth of the CPU of a SQLAlchemy session, time during which this thread holds the GIL."""
    now = utcnow()
    visit = {"created_at": now, **visit}
    entry = {"at": now, **entry}
    engine = postgres_engine(factory)
    if engine is None:
        with transaction(factory) as session:
            session.execute(insert(Visit).values(**visit))
            access_log.record_many(session, [{**entry, "visit_id": visit["id"]}])
        return
    execute_raw(engine, _PG_VISIT_INSERT, [visit[c] for c in _VISIT_COLUMNS] + [entry[c] for c in _ENTRY_COLUMNS])


async def by_card_pin(state: AppState, principal: Principal, query: ByCardQuery) -> bytes:
    """A card check with the PIN (``by_card`` with ``auth_method`` ``pin``), the JSON of the
    ``EligibilityResult``. Same checks in the same order, same answers and the same visit and
    access-log rows; on the event loop except the anchors' re-read (every few seconds), the
    rare "newer eligibility" check and the commit of the visit, which take one thread hop.
    The eligibility bundle is the one the by-number lookups cache (same invalidation)."""
    facility = principal.require_facility()
    nonce = await aredeem_challenge(state.cache, query.challenge_id, facility, state.settings.challenge_ttl_seconds)
    today = today_jst()
    verified, fingerprint = await state.verifier.acheck_chain(state.session_factory, query.certificate, today)
    serial_hex = serial_text(verified.serial_number)
    if state.pg is not None:
        facts = await card_facts_async(state.pg, verified.issuer, serial_hex, facility)
    else:
        facts = await run_in_threadpool(card_facts, state.session_factory, verified.issuer, serial_hex, facility)
    if facts.revoked:
        raise CertificateRevokedError()
    checked = state.verifier.checked(verified, fingerprint, today)
    if query.signature is None:
        raise ValidationFailedError("auth_method pin needs the card's signature")
    verify.verify_pin_signature(checked.certificate, nonce, query.signature)
    if facts.suspended:
        raise CardSuspendedError()
    insured_id = facts.insured_id
    if insured_id is None:
        raise CardNotRegisteredError()
    assert facts.insurer_number is not None and facts.symbol_norm is not None and facts.number_norm is not None
    as_of = query.as_of or today
    bundle = await cached_bundle_async(
        state.read_factory,
        state.cache,
        state.settings.eligibility_cache_ttl_seconds,
        facts.insurer_number,
        facts.symbol_norm,
        facts.number_norm,
        state.pg,
    )
    evaluation = evaluate_insured(bundle, insured_id, as_of)
    if evaluation.validity == Validity.INVALID:

        def newer() -> bool:
            with state.read_factory() as session:
                return newer_eligibility_exists(session, evaluation, as_of)

        if await run_in_threadpool(newer):
            evaluation.validity = Validity.INVALID_NEWER_EXISTS
    visit_id = secrets.token_urlsafe(24)
    await run_in_threadpool(
        record_visit,
        state.session_factory,
        {
            "id": visit_id,
            "facility_code": facility,
            "insured_id": insured_id,
            "auth_method": "pin",
            "card_classification": evaluation.period["card_classification"] if evaluation.period else "01",
            "as_of": as_of,
        },
        {
            "insured_id": insured_id,
            "facility_code": facility,
            "role": principal.role or "",
            "what": "eligibility",
            "query_kind": "card",
            "consent_id": facts.consent_id,
        },
    )
    return orjson.dumps(
        result_dict(
            evaluation,
            insurer_name=bundle["insurer_name"],
            as_of=as_of,
            query_kind="card",
            share_limit_certificate=False,  # answered before this visit's consent: see CardFacts
            visit_id=visit_id,
            certificate_notice=checked.notice,
        )
    )


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
#
# The four facts come from the terminal unsigned, so they prove nothing by themselves. A link is
# made when they match exactly one person insured today, and then only when it cannot take a
# card or a person away from someone (docs/card.md "Linking rules"):
# - a card linked to one person is never moved to another: only to a newer record of the same
#   person (same name, birth date and sex: a change of insurer), else ``registration_conflict``;
# - a person whose card (another certificate) is still live — neither expired nor revoked —
#   gets no second card: ``registration_conflict``. A renewed or reissued card links once the
#   old certificate is on an imported CRL or has expired.
# Every attempt is audited (``card_link_audit``); every link and every refused one is in the
# access log of the person(s) concerned (``card_link`` / ``card_link_refused``) and in the
# insurers' report (``card_link_report``).

LINK_OUTCOMES = ("linked", "relinked", "refused_relink", "refused_second_card")  # what insurers are told


def _audit(factory: sessionmaker[Session], **values: object) -> None:
    """Audit rows are written in their own transaction: a refused link is audited too."""
    with transaction(factory) as s:
        s.add(CardLinkAudit(**values))


def _refuse(
    factory: sessionmaker[Session],
    principal: Principal,
    audit: dict[str, Any],
    *,
    outcome: str,
    insured_id: int,
    told: list[int],
    detail: str,
) -> RegistrationConflictError:
    """Audit a refused link and tell the persons concerned (their access log), committed in a
    transaction of its own (the request's is rolled back by the error)."""
    with transaction(factory) as s:
        s.add(CardLinkAudit(outcome=outcome, insured_id=insured_id, **audit))
        for person in dict.fromkeys(told):
            access_log.record(
                s,
                insured_id=person,
                facility_code=audit["facility_code"],
                role=principal.role or "",
                what="card_link_refused",
                query_kind="card",
            )
    return RegistrationConflictError(detail)


def _person_facts(session: Session, insured_id: int) -> tuple[str, dt.date, str] | None:
    """Name (normalised), birth date and sex of a record's latest current period."""
    row = session.execute(
        select(EligibilityPeriod.name_norm, EligibilityPeriod.birth_date, EligibilityPeriod.sex)
        .where(EligibilityPeriod.insured_id == insured_id, EligibilityPeriod.superseded_by.is_(None))
        .order_by(EligibilityPeriod.valid_from.desc(), EligibilityPeriod.id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def same_person(session: Session, a: int, b: int) -> bool:
    """Whether two insured records hold the same person (a change of insurer): the same
    normalised name, birth date and sex. The address may differ (people move when they change
    jobs); the facts compared are the insurers', not the terminal's."""
    facts_a = _person_facts(session, a)
    return facts_a is not None and facts_a == _person_facts(session, b)


def _live_other_cards(session: Session, insured_id: int, issuer: str, serial_hex: str) -> int:
    """How many certificates other than this one are linked to the person and still live."""
    now = utcnow()
    revoked = exists().where(RevokedCertificate.issuer == CardLink.issuer, RevokedCertificate.serial == CardLink.serial)
    rows = session.execute(
        select(CardLink.not_after).where(
            CardLink.insured_id == insured_id,
            ~and_(CardLink.issuer == issuer, CardLink.serial == serial_hex),
            ~revoked,
        )
    ).all()
    return sum(1 for (not_after,) in rows if not_after >= now)


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
    if link is not None and link.insured_id == insured_id:
        _audit(factory, outcome="already_linked", insured_id=insured_id, **audit)
        return _registered(session, "already_linked", insured_id)
    if link is not None and not same_person(session, link.insured_id, insured_id):
        raise _refuse(
            factory,
            principal,
            audit,
            outcome="refused_relink",
            insured_id=insured_id,
            told=[insured_id, link.insured_id],
            detail="this card is linked to another person; it is never moved to someone else",
        )
    if _live_other_cards(session, insured_id, checked.issuer, checked.serial_hex):
        raise _refuse(
            factory,
            principal,
            audit,
            outcome="refused_second_card",
            insured_id=insured_id,
            told=[insured_id],
            detail="the person matched already has a live card; a new card links once the old "
            "certificate is revoked or has expired",
        )
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
    else:
        outcome = "relinked"  # the same person under a new insurance record: the link follows
        link.insured_id = insured_id
        link.linked_at = utcnow()
    session.add(CardLinkAudit(outcome=outcome, insured_id=insured_id, **audit))
    access_log.record(
        session,
        insured_id=insured_id,
        facility_code=facility,
        role=principal.role or "",
        what="card_link",
        query_kind="card",
    )
    session.flush()
    return _registered(session, "linked", insured_id)


def _registered(session: Session, status: str, insured_id: int) -> Registered:
    insured = session.get(InsuredRow, insured_id)
    assert insured is not None
    return Registered.model_validate(
        {"status": status, "insurer_number": insured.insurer_number, "branch": insured.branch}
    )


def card_link_report(
    session: Session, principal: Principal, *, since: dt.datetime | None, after: int, limit: int = 1000
) -> tuple[list[dict[str, Any]], int]:
    """For an insurer: links made (and refused) to its insured persons, oldest first, from the
    audit id ``after`` (a cursor: pass back the ``next_after`` answered) and time ``since``."""
    numbers = principal.require_insurer()
    query = (
        select(CardLinkAudit, InsuredRow, Facility.name)
        .join(InsuredRow, InsuredRow.id == CardLinkAudit.insured_id)
        .outerjoin(Facility, Facility.code == CardLinkAudit.facility_code)
        .where(
            InsuredRow.insurer_number.in_(sorted(numbers)),
            CardLinkAudit.outcome.in_(LINK_OUTCOMES),
            CardLinkAudit.id > after,
        )
        .order_by(CardLinkAudit.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(CardLinkAudit.at >= since)
    items: list[dict[str, Any]] = [
        {
            "id": audit.id,
            "at": audit.at,
            "outcome": audit.outcome,
            "facility_code": audit.facility_code,
            "facility_name": facility_name,
            "insurer_number": insured.insurer_number,
            "symbol": insured.symbol,
            "number": insured.number,
            "branch": insured.branch,
        }
        for audit, insured, facility_name in session.execute(query)
    ]
    return items, (int(items[-1]["id"]) if items else after)
