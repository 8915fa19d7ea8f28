"""Linked cards whose four facts drifted from the insurer's record since the link (docs/card.md,
"Drift since the link").

A card is linked when the four facts read from it (name, birth date, sex, address) match exactly
one current record (``card.service.register``). The 2023 mislinking started with records that
changed afterwards: the link stayed while the person behind the record no longer matched. This
report compares, for each of an insurer's linked cards, the facts of the record **as they stood
at the link** with the facts **now**, normalised the same way registration compares them
(``name_norm``/``address_norm``: ``normalize_person_text``, NFKC without spaces and one hyphen
form; birth date and sex as stored). So a re-send that only changes spacing or full-width digits
is no drift, while a new name, birth date, sex or address is.

The facts at the link are the record's history itself, nothing stored beside the link: the
latest period (by ``valid_from``) of the linked record among those written by an upload that had
finished by ``linked_at`` and not yet superseded by one that had; the facts now are the latest
period not superseded at all — the one ``same_person`` reads.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from shikaku_server.auth.service import Principal
from shikaku_server.card.models import CardLink
from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.upload.models import Upload

FACTS = ("name", "birth_date", "sex", "address")  # the four facts, as the report names them
_SCAN = 1000  # links examined per query


@dataclass(frozen=True, slots=True)
class _Period:
    valid_from: dt.date
    id: int
    written_at: dt.datetime | None  # when the upload that wrote it finished
    superseded_at: dt.datetime | None  # when the upload that replaced it finished (None: current)
    current: bool
    facts: tuple[str, dt.date, str, str | None]


def _latest(periods: list[_Period]) -> _Period | None:
    return max(periods, key=lambda p: (p.valid_from, p.id), default=None)


def _as_of(periods: list[_Period], at: dt.datetime) -> _Period | None:
    """The period the record showed at ``at``: written by then and not yet replaced."""
    return _latest([
        p for p in periods
        if p.written_at is not None and p.written_at <= at and (p.superseded_at is None or p.superseded_at > at)
    ])


def _periods(session: Session, insured_ids: list[int]) -> dict[int, list[_Period]]:
    written, replaced = aliased(Upload), aliased(Upload)
    rows = session.execute(
        select(
            EligibilityPeriod.insured_id,
            EligibilityPeriod.id,
            EligibilityPeriod.valid_from,
            EligibilityPeriod.name_norm,
            EligibilityPeriod.birth_date,
            EligibilityPeriod.sex,
            EligibilityPeriod.address_norm,
            EligibilityPeriod.superseded_by,
            written.finished_at,
            replaced.finished_at,
        )
        .outerjoin(written, written.id == EligibilityPeriod.upload_id)
        .outerjoin(replaced, replaced.id == EligibilityPeriod.superseded_by)
        .where(EligibilityPeriod.insured_id.in_(insured_ids))
    )
    out: dict[int, list[_Period]] = defaultdict(list)
    for insured_id, pid, valid_from, name, birth, sex, address, superseded_by, written_at, replaced_at in rows:
        current = superseded_by is None
        out[insured_id].append(
            _Period(valid_from, pid, written_at, None if current else replaced_at or written_at, current,
                    (name, birth, sex, address or None))
        )
    return out


def drifted_facts(periods: list[_Period], linked_at: dt.datetime) -> tuple[list[str], dt.datetime | None]:
    """Which of the four facts differ between the record at ``linked_at`` and now, and when the
    record now shown was written."""
    then = _as_of(periods, linked_at)
    now = _latest([p for p in periods if p.current])
    if then is None or now is None or then.id == now.id:
        return [], None
    changed = [fact for fact, a, b in zip(FACTS, then.facts, now.facts, strict=True) if a != b]
    return changed, now.written_at


def card_link_drift(
    session: Session, principal: Principal, *, after: int, limit: int = 1000
) -> tuple[list[dict[str, Any]], int]:
    """For an insurer: its linked cards (link id > ``after``, oldest first, at most ``limit``)
    whose record's four facts changed since the link, and the cursor to pass back as ``after``."""
    numbers = sorted(principal.require_insurer())
    items: list[dict[str, Any]] = []
    cursor = after
    while len(items) < limit:
        links = session.execute(
            select(CardLink.id, CardLink.linked_at, Insured)
            .join(Insured, Insured.id == CardLink.insured_id)
            .where(Insured.insurer_number.in_(numbers), CardLink.id > cursor)
            .order_by(CardLink.id)
            .limit(_SCAN)
        ).all()
        if not links:
            break
        periods = _periods(session, sorted({insured.id for _, _, insured in links}))
        for link_id, linked_at, insured in links:
            cursor = link_id
            changed, changed_at = drifted_facts(periods.get(insured.id, []), linked_at)
            if changed:
                items.append({
                    "link_id": link_id,
                    "linked_at": linked_at,
                    "changed_at": changed_at,
                    "drifted": changed,
                    "insurer_number": insured.insurer_number,
                    "symbol": insured.symbol,
                    "number": insured.number,
                    "branch": insured.branch,
                })
                if len(items) >= limit:
                    break
    return items, cursor
