"""医療扶助 (public assistance): applying a 福祉事務所's monthly file of 医療券/調剤券, and
answering a facility's by-number query (docs/assistance.md).

The answer's ``status``, for the querying facility F on day D of month M:

- ``valid``: a ticket of month M designating F covers D (the tickets returned are those);
- ``ended``: F's tickets of month M all ended before D (returned, so staff see the end);
- ``not_delegated`` (未委託): the recipient is known — a ticket of an earlier month, or of month
  M for another facility — but no ticket of month M for F covers D: the office has not entrusted
  this month's 医療券 to the online system yet (or issued it to another facility). No tickets are
  returned; the facility asks the 福祉事務所 as before;
- ``not_found``: no ticket of this 公費負担者番号 + 受給者番号 at all, or the birth date given is
  not the recipient's.

Every answer about a known recipient is logged first (``assistance_read``: ``what`` is
``assistance``, or ``assistance_no_match`` for a wrong birth date); when the entry cannot be
written the answer is 503 ``unavailable`` and discloses nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from schemas.assistance import (
    VALIDITY_OF_STATUS,
    AssistanceMonth,
    AssistanceMonthQuery,
    AssistanceQuery,
    AssistanceRecipient,
    AssistanceResult,
    AssistanceStatus,
)
from schemas.assistance import AssistanceTicket as TicketOut
from schemas.insurer_files import AssistanceRecord, RowError
from shikaku_server.assistance.models import AssistanceRead, AssistanceTicket
from shikaku_server.eligibility.rules import covers
from shikaku_server.errors import UnavailableError
from shikaku_server.upload.bulk import BulkWriter
from shikaku_server.upload.errors import ConcurrentUploadError

_FIELDS = (
    "office_code",
    "name",
    "name_kana",
    "birth_date",
    "sex",
    "valid_from",
    "valid_to",
    "self_pay",
)
TicketKey = tuple[str, str, dt.date, str, str]  # payer, recipient, month, kind, facility


def _ticket_key(r: AssistanceRecord | AssistanceTicket) -> TicketKey:
    return (r.payer_number, r.recipient_number, r.month, r.ticket_kind, r.facility_code)


class AssistanceApplier:
    """Upload kind ``assistance``: one row per recipient, month, ticket kind and facility; a
    row sent again with other facts (a shortened ``valid_to``: 廃止) replaces it, the same row
    again is ``unchanged``. A ticket of another office's recipient (the same 公費負担者番号 and
    受給者番号 written by another office) is rejected (``insurer_not_permitted``)."""

    def __init__(self, session: Session, upload_id: str, writer: BulkWriter) -> None:
        self.session = session  # row by row through the ORM (a few thousand tickets a month):
        self.upload_id = upload_id  # ``writer``, the upload's bulk writer, is not needed here

    def prepare(self, records: list[AssistanceRecord]) -> None:
        return None

    def apply(self, records: list[AssistanceRecord], outcome: Any, reject: Any, prepared: None = None) -> None:
        keys = sorted({_ticket_key(r) for r in records})
        known: dict[TicketKey, AssistanceTicket] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            statement = select(AssistanceTicket).where(
                tuple_(
                    AssistanceTicket.payer_number,
                    AssistanceTicket.recipient_number,
                    AssistanceTicket.month,
                    AssistanceTicket.ticket_kind,
                    AssistanceTicket.facility_code,
                ).in_(chunk)
            )
            for t in self.session.execute(statement).scalars():
                known[_ticket_key(t)] = t
        for record in records:
            values = {name: getattr(record, name) for name in _FIELDS}
            key = _ticket_key(record)
            current = known.get(key)
            if current is not None and current.office_code != record.office_code:
                outcome.rejected += 1
                reject(RowError(record.line, "recipient_number", "insurer_not_permitted",
                                "this recipient's ticket was written by another 福祉事務所"))
                continue
            if current is not None and all(getattr(current, k) == v for k, v in values.items()):
                outcome.unchanged += 1
                continue
            if current is None:
                current = known[key] = AssistanceTicket(
                    payer_number=record.payer_number,
                    recipient_number=record.recipient_number,
                    month=record.month,
                    ticket_kind=record.ticket_kind,
                    facility_code=record.facility_code,
                )
                self.session.add(current)
            for k, v in values.items():
                setattr(current, k, v)
            current.upload_id = self.upload_id
            outcome.accepted += 1
        try:
            self.session.flush()
        except IntegrityError as exc:
            # another upload of the same tickets committed meanwhile (PostgreSQL): the whole
            # file is rolled back and may be sent again
            raise ConcurrentUploadError() from exc


def _ticket(t: AssistanceTicket) -> TicketOut:
    return TicketOut(
        ticket_kind=t.ticket_kind,  # checked at upload
        month=t.month.strftime("%Y-%m"),
        facility_code=t.facility_code,
        valid_from=t.valid_from,
        valid_to=t.valid_to,
        self_pay=t.self_pay,
    )


def answer(
    session: Session, query: AssistanceQuery, *, facility_code: str, role: str, today: dt.date
) -> AssistanceResult:
    """The answer to a facility's query (the module's docstring: statuses and logging). The
    caller commits the log entry with the request."""
    day = query.as_of or today
    tickets = list(
        session.execute(
            select(AssistanceTicket)
            .where(
                AssistanceTicket.payer_number == query.payer_number,
                AssistanceTicket.recipient_number == query.recipient_number,
            )
            .order_by(AssistanceTicket.month, AssistanceTicket.ticket_kind, AssistanceTicket.id)
        ).scalars()
    )
    if not tickets:
        return AssistanceResult(status="not_found", validity=VALIDITY_OF_STATUS["not_found"], as_of=day)
    latest = tickets[-1]
    if query.birth_date is not None and query.birth_date != latest.birth_date:
        _log(session, query, facility_code, role, "assistance_no_match", "not_found")
        return AssistanceResult(status="not_found", validity=VALIDITY_OF_STATUS["not_found"], as_of=day)
    month = day.replace(day=1)
    own = [t for t in tickets if t.month == month and t.facility_code == facility_code]
    covering = [t for t in own if covers(t.valid_from, t.valid_to, day)]
    status: AssistanceStatus
    if covering:
        status, shown = "valid", covering
    elif own and all(t.valid_to is not None and t.valid_to < day for t in own):
        status, shown = "ended", own
    else:
        status, shown = "not_delegated", []
    _log(session, query, facility_code, role, "assistance", status)
    return AssistanceResult(
        status=status,
        validity=VALIDITY_OF_STATUS[status],
        as_of=day,
        recipient=AssistanceRecipient(
            office_code=latest.office_code,
            payer_number=latest.payer_number,
            recipient_number=latest.recipient_number,
            name=latest.name,
            name_kana=latest.name_kana,
            birth_date=latest.birth_date,
            sex=latest.sex,
        ),
        tickets=[_ticket(t) for t in shown],
    )


def month_day(month: dt.date, today: dt.date) -> dt.date:
    """The day a 診療年月's statuses are of: today in the current month, the first day of a
    later month (tickets are issued ahead), the last day of an earlier one."""
    if month == today.replace(day=1):
        return today
    if month > today:
        return month
    return (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def answer_month(
    session: Session, query: AssistanceMonthQuery, *, facility_code: str, role: str, today: dt.date
) -> AssistanceMonth:
    """Every recipient with a ticket of the month designating this facility, each answered (and
    logged) exactly as a by-number query of that recipient on ``month_day`` (the XML 一括照会
    ``OQSmutic01``; docs/assistance.md)."""
    month = dt.date.fromisoformat(f"{query.month}-01")
    day = month_day(month, today)
    pairs = session.execute(
        select(AssistanceTicket.payer_number, AssistanceTicket.recipient_number)
        .where(AssistanceTicket.month == month, AssistanceTicket.facility_code == facility_code)
        .distinct()
        .order_by(AssistanceTicket.payer_number, AssistanceTicket.recipient_number)
    ).all()
    results = [
        answer(
            session,
            AssistanceQuery(payer_number=payer, recipient_number=recipient, as_of=day),
            facility_code=facility_code,
            role=role,
            today=today,
        )
        for payer, recipient in pairs
    ]
    return AssistanceMonth(month=query.month, as_of=day, results=results)


def _log(session: Session, query: AssistanceQuery, facility_code: str, role: str, what: str, status: str) -> None:
    session.add(
        AssistanceRead(
            payer_number=query.payer_number,
            recipient_number=query.recipient_number,
            facility_code=facility_code,
            role=role,
            what=what,
            status=status,
        )
    )
    try:
        session.flush()  # the entry is written before anything is disclosed
    except SQLAlchemyError as exc:
        raise UnavailableError("the access log could not be written: no data is served without it") from exc


def reads_of(session: Session, payer_number: str, recipient_number: str) -> list[dict[str, Any]]:
    """The recipient's 情報提供等記録 (newest first)."""
    rows = session.execute(
        select(AssistanceRead)
        .where(AssistanceRead.payer_number == payer_number, AssistanceRead.recipient_number == recipient_number)
        .order_by(AssistanceRead.at.desc(), AssistanceRead.id.desc())
    ).scalars()
    return [
        {"at": r.at.isoformat(), "facility_code": r.facility_code, "role": r.role, "what": r.what, "status": r.status}
        for r in rows
    ]
