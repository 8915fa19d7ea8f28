"""The eligibility rules that more than one place applies, each defined once.

- **A period covers a day**: ``[start, end]`` with both ends inclusive, ``end`` empty = open,
  no ``start`` = no period. ``covers`` on Python values (``dt.date``, or the ISO strings of the
  cached bundle: ``YYYY-MM-DD`` sorts as the date does) and ``covers_sql``, the same condition
  for a ``WHERE`` clause (a NULL start is never covered there either). Used for eligibility
  periods, the 高齢受給者証, 限度額 and 特定疾病 periods, and the upload's history algebra.
- **The four facts**: a person is found by name, birth date, sex and address only when all four
  match (normalised) on a current record covering the day (docs/domain.md, flow 2: never link
  on a partial match). Card linking, "newer eligibility exists" (validity 3) and the call
  centre's suspension by insurance number (any current record) ask it.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, and_, or_, select

from schemas.identifiers import normalize_person_text
from shikaku_server.eligibility.models import EligibilityPeriod

Day = TypeVar("Day", dt.date, str)


def covers(start: Day | None, end: Day | None, day: Day) -> bool:
    """Whether the period ``[start, end]`` covers ``day`` (see the module's docstring)."""
    return start is not None and start <= day and (end is None or day <= end)


def covers_sql(
    start: SQLColumnExpression[dt.date],
    end: SQLColumnExpression[dt.date] | SQLColumnExpression[dt.date | None],
    day: dt.date,
) -> ColumnElement[bool]:
    """``covers`` as a SQL condition over two date columns."""
    return and_(start <= day, or_(end.is_(None), end >= day))


def insured_with_four_facts(
    *, name: str, birth_date: dt.date, sex: str, address: str, as_of: dt.date | None
) -> Select[int]:
    """The insured ids with a current record that carries all four facts and covers ``as_of``
    (``None``: any current record, ended or not — the call centre's suspension by number).

    ``name`` and ``address`` as read (from the card, or as the insurer sent them): compared
    after ``normalize_person_text``, as the upload stored them."""
    found = select(EligibilityPeriod.insured_id).where(
        EligibilityPeriod.superseded_by.is_(None),
        EligibilityPeriod.birth_date == birth_date,
        EligibilityPeriod.name_norm == normalize_person_text(name),
        EligibilityPeriod.sex == sex,
        EligibilityPeriod.address_norm == normalize_person_text(address),
    )
    if as_of is not None:
        found = found.where(covers_sql(EligibilityPeriod.valid_from, EligibilityPeriod.valid_to, as_of))
    return found.distinct()
