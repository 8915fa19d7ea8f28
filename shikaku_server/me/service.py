"""The patient's own data, for the person a card proved (``me.proof.prove``).

Plain functions over a session; the request owns the commit. Every read writes the person's
access-log entry first (role ``patient``, query kind ``self``, the kiosk's facility code when
the call came from a kiosk, else none), and a read that cannot be logged answers nothing.
What a person sees is theirs only, with one exception: the 本人 sees who is on their card
(family members' names, birth dates and current periods), and that read is in each family
member's own access log (query kind ``family``). See docs/patient.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from schemas.me import (
    CardProof,
    FamilyMember,
    MyCheckups,
    MyConsent,
    MyConsents,
    MyEligibility,
    MyMedications,
    MyPeriod,
    Suspended,
)
from schemas.procedures import MyProcedures
from shikaku_server.access_log import service as access_log
from shikaku_server.access_log.service import AccessLogWriter
from shikaku_server.auth.models import Facility
from shikaku_server.card.models import CardSuspension
from shikaku_server.card.service import CardPorts
from shikaku_server.clinical.service import checkup_items, drug_items, procedure_items, retention_since
from shikaku_server.consent.models import Consent
from shikaku_server.database import Transactions, utcnow
from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.eligibility.rules import covers
from shikaku_server.eligibility.service import insurer_name, today_jst
from shikaku_server.errors import NotFoundError, UnavailableError, ValidationFailedError
from shikaku_server.me import suspension
from shikaku_server.me.proof import Proven, prove

T = TypeVar("T")
SELF = "self"
PERSONAL = "1"  # 本人


@dataclass(frozen=True, slots=True)
class Ports:
    """What the patient's own calls work with (built by the views from the app's parts)."""

    card: CardPorts  # the card's proof (``me.proof.prove``)
    transactions: Transactions  # the read and its access-log entries, one transaction
    access_log: AccessLogWriter  # the queued lookups' entries, flushed before the log is read


async def answer(
    ports: Ports, proof: CardProof, facility_code: str | None, work: Callable[[Session, Proven], T]
) -> T:
    """Prove the card, then run ``work`` for the person in one transaction, committed before
    the answer is sent (its access-log entries with it)."""
    proven = await prove(
        ports.card,
        challenge_id=proof.challenge_id,
        cert_der=proof.certificate,
        signature=proof.signature,
        facility_code=facility_code,
    )

    return await ports.transactions.run(lambda session: work(session, proven))


async def access_log_entries(ports: Ports, proof: CardProof, facility_code: str | None) -> list[dict[str, Any]]:
    """The person's access log, every entry still queued by the access-log writer included.
    Both doors answer with it: ``/v1/me/access-log`` and FHIR ``AuditEvent``."""

    def read(session: Session, proven: Proven) -> list[dict[str, Any]]:
        ports.access_log.flush()
        return read_access_log(session, proven)

    return await answer(ports, proof, facility_code, read)


def log_read(session: Session, proven: Proven, what: str, *, insured_id: int | None = None, kind: str = SELF) -> None:
    """The person's access-log entry for this read, written before anything is read."""
    access_log.record(
        session,
        insured_id=proven.insured_id if insured_id is None else insured_id,
        facility_code=proven.facility_code,
        role="patient",
        what=what,
        query_kind=kind,
    )
    try:
        session.flush()
    except SQLAlchemyError as exc:
        raise UnavailableError("the access log could not be written: no data is served without it") from exc


def _covers(period: EligibilityPeriod, day: dt.date) -> bool:
    return covers(period.valid_from, period.valid_to, day)


def _periods(session: Session, insured_id: int) -> list[EligibilityPeriod]:
    return list(
        session.execute(
            select(EligibilityPeriod)
            .where(EligibilityPeriod.insured_id == insured_id, EligibilityPeriod.superseded_by.is_(None))
            .order_by(EligibilityPeriod.valid_from, EligibilityPeriod.id)
        ).scalars()
    )


def eligibility(session: Session, proven: Proven, as_of: dt.date | None) -> MyEligibility:
    """Every period of the person's record (current and past), and, when the period covering
    ``as_of`` says 本人, the family members of the same card whose period covers ``as_of``."""
    day = as_of or today_jst()
    log_read(session, proven, "eligibility")
    insured = session.get(Insured, proven.insured_id)
    assert insured is not None
    periods = _periods(session, insured.id)
    fields = set(MyPeriod.model_fields) - {"current"}
    mine = [
        MyPeriod.model_validate({**{f: getattr(p, f) for f in fields}, "current": _covers(p, day)}) for p in periods
    ]
    family: list[FamilyMember] = []
    if any(p.current and p.personal_family == PERSONAL for p in mine):
        others = session.execute(
            select(Insured)
            .where(
                Insured.insurer_number == insured.insurer_number,
                Insured.symbol_norm == insured.symbol_norm,
                Insured.number_norm == insured.number_norm,
                Insured.id != insured.id,
            )
            .order_by(Insured.branch)
        ).scalars()
        for other in others:
            current = [p for p in _periods(session, other.id) if _covers(p, day) and p.personal_family != PERSONAL]
            if not current:
                continue
            log_read(session, proven, "eligibility", insured_id=other.id, kind="family")
            p = current[-1]
            family.append(
                FamilyMember(
                    branch=other.branch,
                    name=p.name,
                    name_kana=p.name_kana,
                    sex=p.sex,
                    birth_date=p.birth_date,
                    valid_from=p.valid_from,
                    valid_to=p.valid_to,
                    copay_ratio=p.copay_ratio,
                )
            )
    return MyEligibility(
        as_of=day,
        insurer_number=insured.insurer_number,
        insurer_name=insurer_name(session, insured.insurer_number),
        symbol=insured.symbol,
        number=insured.number,
        branch=insured.branch,
        periods=mine,
        family=family,
    )


def medications(session: Session, proven: Proven) -> MyMedications:
    log_read(session, proven, "medications")
    since = retention_since(today_jst())
    return MyMedications(since=since, items=drug_items(session, proven.insured_id, since))


def checkups(session: Session, proven: Proven) -> MyCheckups:
    log_read(session, proven, "checkups")
    since = retention_since(today_jst())
    return MyCheckups(since=since, items=checkup_items(session, proven.insured_id, since))


def procedures(session: Session, proven: Proven) -> MyProcedures:
    """The person's own 診療・手術 information, for the retention period back from today."""
    log_read(session, proven, "procedures")
    since = retention_since(today_jst())
    return MyProcedures(since=since, items=procedure_items(session, proven.insured_id, since))


def read_access_log(session: Session, proven: Proven) -> list[dict[str, Any]]:
    """Who read the person's data (this read included: it is logged first)."""
    log_read(session, proven, "access_log")
    return access_log.entries_for(session, proven.insured_id)


def _state(consent: Consent, newer: bool, now: dt.datetime) -> str:
    if consent.revoked_at is not None:
        return "replaced" if newer else "withdrawn"
    if consent.expires_at is not None and consent.expires_at < now:
        return "expired"
    return "live"


def _my_consent(consent: Consent, facility_name: str | None, newer: bool, now: dt.datetime) -> MyConsent:
    state = _state(consent, newer, now)
    ended = (
        consent.revoked_at if consent.revoked_at is not None else (consent.expires_at if state == "expired" else None)
    )
    return MyConsent.model_validate(
        {
            "consent_id": consent.id,
            "facility_code": consent.facility_code,
            "facility_name": facility_name,
            "drug": consent.drug,
            "checkup": consent.checkup,
            "clinical": consent.clinical,
            "limit_certificate": consent.limit_certificate,
            "setting": consent.setting,
            "given_at": consent.given_at,
            "expires_at": consent.expires_at,
            "ended_at": ended,
            "state": state,
        }
    )


def _consent_rows(session: Session, insured_id: int) -> list[tuple[Consent, str | None]]:
    rows = session.execute(
        select(Consent, Facility.name)
        .outerjoin(Facility, Facility.code == Consent.facility_code)
        .where(Consent.insured_id == insured_id)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
    ).all()
    return [(c, name) for c, name in rows]


def consents(session: Session, proven: Proven) -> MyConsents:
    """Every consent the person gave, newest first, with its state: ``live`` (in force),
    ``expired`` (24 h outpatient consent past), ``withdrawn`` (by the patient), ``replaced``
    (a newer answer at the same facility ended it)."""
    log_read(session, proven, "consents")
    now = utcnow()
    seen: set[str] = set()
    out = []
    for consent, name in _consent_rows(session, proven.insured_id):
        out.append(_my_consent(consent, name, consent.facility_code in seen, now))
        seen.add(consent.facility_code)
    return MyConsents(consents=out)


def withdraw(session: Session, proven: Proven, consent_id: int) -> MyConsent:
    """End one of the person's live consents now: the facility reads nothing more under it
    (``consent_expired``); another person's consent does not exist here."""
    log_read(session, proven, "consent_withdraw")
    consent = session.get(Consent, consent_id)
    if consent is None or consent.insured_id != proven.insured_id:
        raise NotFoundError("no such consent of yours")
    now = utcnow()
    if _state(consent, False, now) != "live":
        raise ValidationFailedError("this consent is not in force: there is nothing to withdraw")
    session.execute(update(Consent).where(Consent.id == consent.id).values(revoked_at=now))
    session.refresh(consent)
    name = session.get(Facility, consent.facility_code)
    return _my_consent(consent, name.name if name else None, False, now)


def suspend(session: Session, proven: Proven) -> Suspended:
    """一時利用停止 of this card (the one that proved the call), until resumed. A suspended card
    proves nothing (``prove`` refuses it), so this is always a new suspension."""
    suspension.suspend_card(
        session, issuer=proven.issuer, serial_hex=proven.serial_hex, insured_id=proven.insured_id, by="patient"
    )
    at = session.execute(
        select(CardSuspension.suspended_at)
        .where(
            CardSuspension.issuer == proven.issuer,
            CardSuspension.serial == proven.serial_hex,
            CardSuspension.resumed_at.is_(None),
        )
        .limit(1)
    ).scalar_one()
    return Suspended(status="suspended", suspended_at=at)
