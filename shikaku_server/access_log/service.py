"""情報提供等記録: write an entry for every read of a person's data; read a person's own log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.auth.models import Facility
from shikaku_server.database import utcnow


def record(
    session: Session,
    *,
    insured_id: int,
    facility_code: str | None,
    role: str,
    what: str,
    query_kind: str | None = None,
    consent_id: int | None = None,
    visit_id: str | None = None,
    at: dt.datetime | None = None,
) -> None:
    session.add(
        AccessLogEntry(
            insured_id=insured_id,
            facility_code=facility_code,
            role=role,
            what=what,
            query_kind=query_kind,
            consent_id=consent_id,
            visit_id=visit_id,
            at=at or utcnow(),
        )
    )


def record_many(session: Session, entries: list[dict[str, Any]]) -> None:
    if entries:
        now = utcnow()
        session.execute(insert(AccessLogEntry), [{"at": now, **e} for e in entries])


def entries_for(session: Session, insured_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AccessLogEntry, Facility.name)
        .outerjoin(Facility, Facility.code == AccessLogEntry.facility_code)
        .where(AccessLogEntry.insured_id == insured_id)
        .order_by(AccessLogEntry.at.desc(), AccessLogEntry.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": e.at.isoformat(),
            "facility_code": e.facility_code,
            "facility_name": name,
            "role": e.role,
            "what": e.what,
            "query_kind": e.query_kind,
            "consent_id": e.consent_id,
        }
        for e, name in rows
    ]
