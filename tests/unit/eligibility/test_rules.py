"""The eligibility rules of ``shikaku_server.eligibility.rules``, without HTTP.

"A period covers this day" is one definition with two forms: ``covers`` (dates, or the ISO
strings of the cached bundle) and ``covers_sql`` (a SQL condition). Both are checked against the
same table of cases, the SQL form on SQLite and on PostgreSQL. The four-facts rule (card
linking, "newer eligibility exists") is checked on rows written straight to the database.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.eligibility.rules import covers, covers_sql, insured_with_four_facts

D = dt.date
START, END = D(2024, 4, 1), D(2024, 9, 30)

# (start, end, day, covered): both ends inclusive, no end = open, no start = no period at all
CASES = [
    (START, END, D(2024, 3, 31), False),  # the day before it starts
    (START, END, START, True),  # its first day
    (START, END, D(2024, 6, 15), True),
    (START, END, END, True),  # its last day
    (START, END, D(2024, 10, 1), False),  # the day after it ends
    (START, None, D(2024, 3, 31), False),
    (START, None, START, True),
    (START, None, D(2099, 12, 31), True),  # open-ended
    (START, START, START, True),  # a one-day period
    (None, END, D(2024, 6, 15), False),  # no start: not a period
    (None, None, D(2024, 6, 15), False),
]


@pytest.mark.parametrize(("start", "end", "day", "covered"), CASES)
def test_covers_on_dates(start: D | None, end: D | None, day: D, covered: bool) -> None:
    assert covers(start, end, day) is covered


@pytest.mark.parametrize(("start", "end", "day", "covered"), CASES)
def test_covers_on_the_bundles_iso_strings(start: D | None, end: D | None, day: D, covered: bool) -> None:
    def iso(d: D | None) -> str | None:
        return None if d is None else d.isoformat()

    assert covers(iso(start), iso(end), day.isoformat()) is covered


def test_iso_strings_order_like_dates_across_years_and_months() -> None:
    # the bundle compares ISO strings: fine only because YYYY-MM-DD sorts as the date does
    assert covers("2023-12-31", "2024-01-09", "2024-01-01")
    assert not covers("2024-01-10", "2024-02-01", "2024-01-09")


def _sql_answers(factory: sessionmaker[Session]) -> list[bool]:
    """``covers_sql`` evaluated by the database for every case, on bound values."""
    out = []
    with factory() as session:
        for start, end, day, _ in CASES:
            cond = covers_sql(sa.literal(start, sa.Date), sa.literal(end, sa.Date), day)
            answer = session.execute(sa.select(sa.case((cond, True), else_=False))).scalar_one()
            out.append(bool(answer))
    return out


def test_covers_sql_agrees_with_covers(session_factory: sessionmaker[Session]) -> None:
    assert _sql_answers(session_factory) == [covered for *_, covered in CASES]
    assert [covers(s, e, d) for s, e, d, _ in CASES] == [covered for *_, covered in CASES]


def _insured(session: Session, number: str, *periods: dict[str, object]) -> int:
    person = Insured(
        insurer_number="01130012", symbol="1", number=number, branch="00", symbol_norm="1", number_norm=number
    )
    session.add(person)
    session.flush()
    for i, over in enumerate(periods or ({},)):
        values: dict[str, object] = {
            "upload_id": "u1",
            "line": i + 2,
            "valid_from": START,
            "valid_to": None,
            "name": "山田　太郎",
            "name_kana": "ヤマダ　タロウ",
            "name_norm": "山田太郎",
            "sex": "1",
            "birth_date": D(1980, 4, 1),
            "address": "東京都千代田区霞が関１－２－２",
            "address_norm": "東京都千代田区霞が関1-2-2",
            "personal_family": "1",
            "card_classification": "01",
            "copay_ratio": 30,
        }
        session.add(EligibilityPeriod(insured_id=person.id, **(values | over)))
    session.flush()
    return person.id


FACTS = {"name": "山田 太郎", "birth_date": D(1980, 4, 1), "sex": "1", "address": "東京都千代田区霞が関1ー2ー2"}


def test_four_facts_match_current_records_covering_the_day(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        current = _insured(s, "1")
        ended = _insured(s, "2", {"valid_to": D(2024, 5, 31), "reason_of_loss": "03"})
        future = _insured(s, "3", {"valid_from": D(2024, 7, 1)})
        superseded = _insured(s, "4", {"superseded_by": "u2"})
        other_sex = _insured(s, "5", {"sex": "2"})
        other_birth = _insured(s, "6", {"birth_date": D(1980, 4, 2)})
        other_name = _insured(s, "7", {"name_norm": "山田次郎"})
        other_address = _insured(s, "8", {"address_norm": "東京都千代田区霞が関1-2-3"})
        two_records = _insured(s, "9", {"valid_to": D(2024, 5, 31)}, {"valid_from": D(2024, 6, 1)})

        def found(day: D) -> set[int]:
            return set(s.execute(insured_with_four_facts(**FACTS, as_of=day)).scalars())  # type: ignore[arg-type]

        assert found(D(2024, 6, 15)) == {current, two_records}  # the person with two records once
        assert found(D(2024, 5, 31)) == {current, ended, two_records}  # an end day is still covered
        assert found(D(2024, 7, 1)) == {current, future, two_records}
        assert found(D(2024, 3, 31)) == set()
        assert {superseded, other_sex, other_birth, other_name, other_address}.isdisjoint(found(D(2024, 7, 1)))
        # no day: any current record, ended or not yet begun (never a superseded one)
        any_day = set(s.execute(insured_with_four_facts(**FACTS, as_of=None)).scalars())  # type: ignore[arg-type]
        assert any_day == {current, ended, future, two_records}
        s.rollback()
