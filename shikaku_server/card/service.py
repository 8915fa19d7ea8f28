"""The card path on the server: challenges, certificate checks, the card check (by-card
eligibility) and first-use linking; the patient's own side (``shikaku_server.me``) and the
emergency reading prove the card with the same steps.

One path for every use of the card, all async, in steps each use reuses:

1. ``redeem_challenge``: the challenge's nonce (single use, this facility's, not expired);
2. ``CertificateVerifier.check_chain``: the certificate's chain (cached per fingerprint);
3. ``CardStore.card_facts``: revocation (from the database on every check, so a CRL import takes
   effect at once), the linked person and their consent, in one statement on PostgreSQL;
4. the ``Authenticator``: the card's PIN signature over the nonce (``PinSignature``) or the
   terminal's face attestation (``FaceAttestation``); signatures are checked by ``card.verify``.

``authenticate_card`` runs 1–4 (registration uses it, and refuses a suspended card);
``prove_card`` adds "the card is linked" and "not suspended" and returns the person (``me.proof``, the emergency
reading); ``check_card`` answers eligibility for them.
Trust anchors are reloaded when the ``trust_anchor`` table or the anchor files change.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from schemas.card import BasicFacts, ByCardQuery, Challenge, Registered
from shikaku_server.access_log import service as access_log
from shikaku_server.auth.models import Facility
from shikaku_server.auth.service import Principal
from shikaku_server.cache import Cache, ChallengeStore
from shikaku_server.card import verify
from shikaku_server.card.models import CardLink, CardLinkAudit, RevokedCertificate, TrustAnchor
from shikaku_server.card.store import CardFacts, CardStore
from shikaku_server.database import Transactions, transaction, utcnow
from shikaku_server.digests import from_hex, serial_text, sha256_text
from shikaku_server.eligibility.models import EligibilityPeriod
from shikaku_server.eligibility.models import Insured as InsuredRow
from shikaku_server.eligibility.rules import insured_with_four_facts
from shikaku_server.eligibility.service import (
    BundleReader,
    cached_bundle,
    evaluate_insured,
    result_dict,
    settle_validity,
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

log = logging.getLogger(__name__)
ANCHOR_RECHECK_SECONDS = 5.0  # `shikaku-admin trust add` reaches every server process within this
Clock = Callable[[], dt.datetime]


# ---------------------------------------------------------------- challenges


async def create_challenge(
    challenges: ChallengeStore, facility_code: str, ttl: int, *, clock: Clock = utcnow
) -> Challenge:
    """A fresh challenge for a facility: one round trip to the store."""
    challenge_id = secrets.token_urlsafe(18)
    nonce = base64.b64encode(secrets.token_bytes(32)).decode()
    expires_at = clock() + dt.timedelta(seconds=ttl)
    record = {"nonce": nonce, "facility": facility_code, "expires_at": expires_at.isoformat()}
    # kept twice as long as it is valid, so a late answer says "expired" rather than "unknown"
    await challenges.put_new(f"challenge:{challenge_id}", orjson.dumps(record), ttl * 2)
    return Challenge(challenge_id=challenge_id, nonce=nonce, expires_at=expires_at)


async def withdraw_challenge(challenges: ChallengeStore, challenge_id: str) -> None:
    """Forget a challenge that was stored but not handed out (its request was refused); best
    effort: one that stays simply expires unused."""
    with contextlib.suppress(UnavailableError):
        await challenges.discard(f"challenge:{challenge_id}")


async def redeem_challenge(
    challenges: ChallengeStore, challenge_id: str, facility_code: str | None, ttl: int, *, clock: Clock = utcnow
) -> bytes:
    """The nonce of a live challenge of this facility (any facility when None); the challenge is
    consumed either way: one round trip. Raises reused / unknown / expired."""
    raw, reused = await challenges.take(f"challenge:{challenge_id}", ttl * 4)
    if raw is None:
        raise ChallengeReusedError() if reused else ChallengeUnknownError()
    record = orjson.loads(raw)
    if facility_code is not None and record["facility"] != facility_code:
        raise ChallengeUnknownError("the challenge was issued to another facility")
    if dt.datetime.fromisoformat(record["expires_at"]) < clock():
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
    public_key: CertificatePublicKeyTypes


class CertificateVerifier:
    """Chain checks cached per fingerprint; revocation always from the database."""

    def __init__(self, anchor_files: list[Path], size: int, reads: Transactions | None = None) -> None:
        self._reads = reads  # where the trust anchors of the database are re-read (``check_chain``)
        self._files = anchor_files
        self._size = size
        self._lock = threading.Lock()
        self._anchors: list[x509.Certificate] = []
        self._anchor_stamp: object = None
        self._checked_at = 0.0
        self._verified: OrderedDict[str, verify.VerifiedCertificate] = OrderedDict()

    def anchors(self, session: Session) -> list[x509.Certificate]:
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

    async def check_chain(self, cert_der: bytes, today: dt.date) -> tuple[verify.VerifiedCertificate, str]:
        """The chain check on the event loop (the anchors re-read through ``reads`` when due);
        the caller looks revocation up (``CardStore.card_facts``) and then calls ``checked``."""
        if self.anchors_due():
            assert self._reads is not None, "a verifier that checks chains is built with its reads"
            await self._reads.read(self.anchors)
        return self.verified(self._anchors, cert_der, today)

    def checked(self, verified: verify.VerifiedCertificate, fingerprint: str, today: dt.date) -> CheckedCertificate:
        return CheckedCertificate(
            issuer=verified.issuer,
            serial_hex=serial_text(verified.serial_number),
            fingerprint=fingerprint,
            certificate=verified.certificate,
            expires_on=verified.expires_on,
            notice=verify.certificate_notice(verified.expires_on, today),
            public_key=verified.public_key,
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


# ---------------------------------------------------------------- the ports, the authenticators


@dataclass(frozen=True)
class CardPorts:
    """What the card service works with, built once in the app's lifespan."""

    factory: sessionmaker[Session]  # read-write sessions (registration's audits of their own)
    transactions: Transactions  # units of work on ``factory``'s sessions (registration)
    challenges: ChallengeStore
    verifier: CertificateVerifier
    cards: CardStore
    cache: Cache
    bundles: BundleReader
    challenge_ttl: int
    eligibility_ttl: int
    clock: Clock = utcnow


class Authenticator(Protocol):
    """How the holder proved the card is theirs, checked after the chain and revocation."""

    @property
    def method(self) -> str:
        """The visit's ``auth_method``: ``pin`` or ``face``."""
        ...

    async def authenticate(self, checked: CheckedCertificate, nonce: bytes) -> None:
        """Raise unless the proof holds for this certificate and challenge nonce."""
        ...


@dataclass(frozen=True)
class PinSignature:
    """The card's signature over the nonce, made with the PIN (``card.verify``)."""

    signature: bytes | None
    method: str = "pin"

    async def authenticate(self, checked: CheckedCertificate, nonce: bytes) -> None:
        if self.signature is None:
            raise ValidationFailedError("auth_method pin needs the card's signature")
        verify.verify_signature(checked.public_key, nonce, self.signature)


@dataclass(frozen=True)
class FaceAttestation:
    """A registered terminal of this facility attests it matched the holder's face to the card."""

    attestation: str | None
    challenge_id: str
    facility_code: str
    cards: CardStore
    clock: Clock = utcnow
    method: str = "face"

    async def authenticate(self, checked: CheckedCertificate, nonce: bytes) -> None:
        import jwt

        from schemas import attestation as att

        if not self.attestation:
            raise AttestationInvalidError("auth_method face needs the terminal's attestation")
        try:
            terminal_id = str(jwt.get_unverified_header(self.attestation).get("kid", ""))
        except jwt.PyJWTError as exc:
            raise AttestationInvalidError("the attestation is not a compact JWS") from exc
        terminal = await self.cards.terminal(terminal_id) if terminal_id else None
        if terminal is None or terminal.revoked or terminal.facility_code != self.facility_code:
            raise AttestationInvalidError("the attestation is not from a terminal registered to this facility")
        try:
            att.verify_attestation(
                self.attestation,
                terminal.public_key_pem.encode(),
                expected_challenge_id=self.challenge_id,
                expected_fingerprint=checked.fingerprint,
                expected_facility_code=self.facility_code,
                now=self.clock(),
            )
        except att.AttestationInvalidError as exc:
            raise AttestationInvalidError(str(exc)) from exc


@dataclass(frozen=True)
class CardPresented:
    """No proof by the holder, only the card itself (its certificate, a fresh challenge of this
    facility): the emergency reading of a patient who cannot enter a PIN (``emergency``)."""

    method: str = "emergency"

    async def authenticate(self, checked: CheckedCertificate, nonce: bytes) -> None:
        return None


def authenticator_for(query: ByCardQuery, ports: CardPorts, facility_code: str) -> Authenticator:
    """The authenticator a by-card query names (``auth_method``)."""
    if query.auth_method == "pin":
        return PinSignature(query.signature)
    return FaceAttestation(query.attestation, query.challenge_id, facility_code, ports.cards, ports.clock)


# ---------------------------------------------------------------- proving a card


@dataclass(frozen=True, slots=True)
class CardProof:
    checked: CheckedCertificate
    facts: CardFacts


@dataclass(frozen=True, slots=True)
class LinkedPerson:
    """A proven card and the person it is linked to (``prove_card``)."""

    insured_id: int
    checked: CheckedCertificate
    facts: CardFacts


async def authenticate_card(
    ports: CardPorts,
    *,
    challenge_id: str,
    certificate: bytes,
    authenticator: Authenticator,
    facility_code: str | None,
) -> CardProof:
    """Steps 1–4 (module docstring): the challenge redeemed, the chain checked, the card's facts
    read (revoked: refused), the holder authenticated. Linked or not."""
    nonce = await redeem_challenge(
        ports.challenges, challenge_id, facility_code, ports.challenge_ttl, clock=ports.clock
    )
    today = today_jst()
    verified, fingerprint = await ports.verifier.check_chain(certificate, today)
    facts = await ports.cards.card_facts(verified.issuer, serial_text(verified.serial_number), facility_code)
    if facts.revoked:
        raise CertificateRevokedError()
    checked = ports.verifier.checked(verified, fingerprint, today)
    await authenticator.authenticate(checked, nonce)
    return CardProof(checked, facts)


async def prove_card(
    ports: CardPorts,
    *,
    challenge_id: str,
    certificate: bytes,
    authenticator: Authenticator,
    facility_code: str | None,
) -> LinkedPerson:
    """``authenticate_card``, and the person the card is linked to (else ``card_not_registered``),
    unless the card is suspended (``card_suspended``)."""
    proof = await authenticate_card(
        ports,
        challenge_id=challenge_id,
        certificate=certificate,
        authenticator=authenticator,
        facility_code=facility_code,
    )
    if proof.facts.insured_id is None:
        raise CardNotRegisteredError()
    if proof.facts.suspended:
        raise CardSuspendedError()
    return LinkedPerson(proof.facts.insured_id, proof.checked, proof.facts)


# ---------------------------------------------------------------- the card check


async def check_card(
    query: ByCardQuery, authenticator: Authenticator, *, principal: Principal, ports: CardPorts
) -> dict[str, Any]:
    """A card check (PIN or face: ``authenticator``), the JSON values of the ``EligibilityResult``:
    the card proven (``prove_card``), the person's cached bundle (the one the by-number lookups
    cache, same invalidation) evaluated, the visit and its access-log entry committed before the
    answer. On PostgreSQL all on the event loop except the anchors' re-read (every few seconds)
    and the rare "newer eligibility" check; on SQLite the database calls go through the
    ``Transactions`` ports (a worker thread)."""
    facility = principal.require_facility()
    person = await prove_card(
        ports,
        challenge_id=query.challenge_id,
        certificate=query.certificate,
        authenticator=authenticator,
        facility_code=facility,
    )
    facts = person.facts
    assert facts.insurer_number is not None and facts.symbol_norm is not None and facts.number_norm is not None
    as_of = query.as_of or today_jst()
    bundle = await cached_bundle(
        cache=ports.cache,
        bundles=ports.bundles,
        ttl=ports.eligibility_ttl,
        insurer_number=facts.insurer_number,
        symbol_norm=facts.symbol_norm,
        number_norm=facts.number_norm,
    )
    evaluation = await settle_validity(ports.bundles, evaluate_insured(bundle, person.insured_id, as_of), as_of)
    visit_id = secrets.token_urlsafe(24)
    await ports.cards.record_visit(
        {
            "id": visit_id,
            "facility_code": facility,
            "insured_id": person.insured_id,
            "auth_method": authenticator.method,
            "card_classification": evaluation.period["card_classification"] if evaluation.period else "01",
            "as_of": as_of,
        },
        {
            "insured_id": person.insured_id,
            "facility_code": facility,
            "role": principal.role or "",
            "what": "eligibility",
            "query_kind": "card",
            "consent_id": facts.consent_id,
        },
    )
    return result_dict(
        evaluation,
        insurer_name=bundle["insurer_name"],
        as_of=as_of,
        query_kind="card",
        share_limit_certificate=False,  # answered before this visit's consent: see CardFacts
        visit_id=visit_id,
        certificate_notice=person.checked.notice,
    )


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


async def register(
    ports: CardPorts,
    principal: Principal,
    *,
    challenge_id: str,
    cert_der: bytes,
    signature: bytes,
    facts: BasicFacts,
) -> Registered:
    """First use of a card at a facility: the card proven (challenge, chain, revocation, PIN
    signature: ``authenticate_card``), then linked to the one person its four facts match, all
    committed (link, audit, access-log entry) before the answer."""
    facility = principal.require_facility()
    proof = await authenticate_card(
        ports,
        challenge_id=challenge_id,
        certificate=cert_der,
        authenticator=PinSignature(signature),
        facility_code=facility,
    )
    if proof.facts.suspended:
        raise CardSuspendedError()

    return await ports.transactions.run(
        lambda session: _link(session, ports.factory, principal, proof.checked, facts, facility)
    )


def _link(
    session: Session,
    factory: sessionmaker[Session],
    principal: Principal,
    checked: CheckedCertificate,
    facts: BasicFacts,
    facility: str,
) -> Registered:
    today = today_jst()
    found = insured_with_four_facts(
        name=facts.name, birth_date=facts.birth_date, sex=facts.sex, address=facts.address, as_of=today
    )
    candidates = sorted(session.execute(found).scalars())
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
