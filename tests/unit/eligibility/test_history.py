"""The eligibility history algebra (``shikaku_server.eligibility.history``) without a database:
how ``add``, ``change`` and ``loss`` records change one person's periods (docs/uploads.md,
"Eligibility actions and history" and "Re-sends")."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from schemas.insurer_files import EligibilityRecord
from shikaku_server.eligibility.history import Key, KeyState, Period, RecordError, apply_record, record_values

D = dt.date
KEY: Key = ("01130012", "123", "4567", "00")


def _record(action: str, line: int = 2, **over: Any) -> EligibilityRecord:
    person = {"name": "山田　太郎", "name_kana": "ヤマダ　タロウ", "sex": "1", "birth_date": D(1980, 4, 1),
              "address": "東京都千代田区霞が関１－２－２", "post_number": "100-8916", "personal_family": "1",
              "card_classification": "01", "copay_ratio": 30}
    values: dict[str, Any] = {
        "line": line, "action": action, "insurer_number": KEY[0], "symbol": "１２３", "number": "４５６７",
        "branch": KEY[3], "symbol_norm": KEY[1], "number_norm": KEY[2], "valid_from": None, "valid_to": None,
        "reason_of_loss": None,
        **(person if action == "add" else dict.fromkeys(person)),
    }
    return EligibilityRecord(**(values | over))


def add(start: D, end: D | None = None, **over: Any) -> EligibilityRecord:
    return _record("add", valid_from=start, valid_to=end, **over)


def change(day: D, **over: Any) -> EligibilityRecord:
    return _record("change", valid_from=day, **over)


def loss(last: D, reason: str = "03") -> EligibilityRecord:
    return _record("loss", valid_to=last, reason_of_loss=reason)


def stored(*records: EligibilityRecord) -> KeyState:
    """A person whose periods are the result of ``records``, as if read back from the database
    (each with a row id)."""
    state = KeyState(records[0], insured_id=1, periods=[])
    for record in records:
        assert apply_record(record, state, {}) is True
    for row_id, period in enumerate(state.periods, start=100):
        period.row_id = row_id
    return state


def spans(state: KeyState) -> list[tuple[D, D | None, int, str | None]]:
    return [(p.valid_from, p.valid_to, p.values["copay_ratio"], p.values["reason_of_loss"]) for p in state.periods]


def test_add_to_a_new_person_is_one_open_period_with_normalised_facts() -> None:
    state = KeyState(add(D(2024, 4, 1)), insured_id=None, periods=[])
    superseded: dict[int, Key] = {}
    assert apply_record(add(D(2024, 4, 1)), state, superseded) is True
    assert spans(state) == [(D(2024, 4, 1), None, 30, None)]
    assert state.periods[0].values["name_norm"] == "山田太郎"
    assert state.periods[0].values["address_norm"] == "東京都千代田区霞が関1-2-2"
    assert state.periods[0].row_id is None and superseded == {}


def test_the_same_add_again_is_unchanged() -> None:
    state = stored(add(D(2024, 4, 1)))
    assert apply_record(add(D(2024, 4, 1)), state, {}) is False
    assert spans(state) == [(D(2024, 4, 1), None, 30, None)]


@pytest.mark.parametrize(
    ("start", "end"),
    [(D(2024, 6, 1), None), (D(2023, 1, 1), D(2024, 4, 1)), (D(2023, 1, 1), None)],
    ids=["inside", "ends on its first day", "encloses it"],
)
def test_an_add_overlapping_a_period_is_refused(start: D, end: D | None) -> None:
    state = stored(add(D(2024, 4, 1)))
    with pytest.raises(RecordError) as caught:
        apply_record(add(start, end, copay_ratio=20), state, {})
    assert (caught.value.field, caught.value.code) == ("valid_from", "overlap")
    assert spans(state) == [(D(2024, 4, 1), None, 30, None)]  # nothing changed


def test_an_add_right_after_a_closed_period_is_a_second_period() -> None:
    state = stored(add(D(2024, 4, 1), D(2024, 9, 30)))
    assert apply_record(add(D(2024, 10, 1), copay_ratio=20), state, {}) is True
    assert spans(state) == [(D(2024, 4, 1), D(2024, 9, 30), 30, None), (D(2024, 10, 1), None, 20, None)]


def test_change_splits_the_covering_period_and_retires_the_stored_row() -> None:
    state = stored(add(D(2024, 4, 1)))
    superseded: dict[int, Key] = {}
    assert apply_record(change(D(2024, 8, 1), copay_ratio=20), state, superseded) is True
    assert spans(state) == [(D(2024, 4, 1), D(2024, 7, 31), 30, None), (D(2024, 8, 1), None, 20, None)]
    assert superseded == {100: KEY}
    assert all(p.row_id is None for p in state.periods)  # both halves are new rows
    assert state.periods[1].values["name"] == "山田　太郎"  # what the change left empty is kept


def test_change_on_the_first_day_replaces_the_period_whole() -> None:
    state = stored(add(D(2024, 4, 1)))
    assert apply_record(change(D(2024, 4, 1), address="大阪府大阪市北区1-1"), state, {}) is True
    assert spans(state) == [(D(2024, 4, 1), None, 30, None)]
    assert state.periods[0].values["address_norm"] == "大阪府大阪市北区1-1"


def test_the_same_change_again_is_unchanged() -> None:
    state = stored(add(D(2024, 4, 1)), change(D(2024, 8, 1), copay_ratio=20))
    superseded: dict[int, Key] = {}
    assert apply_record(change(D(2024, 8, 1), copay_ratio=20), state, superseded) is False
    assert superseded == {}
    assert spans(state) == [(D(2024, 4, 1), D(2024, 7, 31), 30, None), (D(2024, 8, 1), None, 20, None)]


@pytest.mark.parametrize("day", [D(2024, 3, 31), D(2024, 10, 1)], ids=["before it", "after its end"])
def test_change_of_a_day_no_period_covers_is_not_found(day: D) -> None:
    state = stored(add(D(2024, 4, 1), D(2024, 9, 30)))
    with pytest.raises(RecordError) as caught:
        apply_record(change(day, copay_ratio=20), state, {})
    assert (caught.value.field, caught.value.code) == ("valid_from", "not_found")


def test_change_on_the_last_day_of_a_period_is_covered() -> None:
    state = stored(add(D(2024, 4, 1), D(2024, 9, 30)))
    assert apply_record(change(D(2024, 9, 30), copay_ratio=20), state, {}) is True
    assert spans(state) == [(D(2024, 4, 1), D(2024, 9, 29), 30, None), (D(2024, 9, 30), D(2024, 9, 30), 20, None)]


def test_change_that_reopens_a_period_into_the_next_one_is_refused() -> None:
    state = stored(add(D(2024, 4, 1), D(2024, 9, 30)), add(D(2024, 10, 1), copay_ratio=20))
    superseded: dict[int, Key] = {}
    with pytest.raises(RecordError) as caught:
        apply_record(change(D(2024, 6, 1), valid_to=D(2024, 12, 31)), state, superseded)
    assert (caught.value.field, caught.value.code) == ("valid_to", "overlap")
    assert superseded == {} and len(state.periods) == 2


def test_loss_ends_the_period_on_its_last_day_and_retires_later_ones() -> None:
    state = stored(add(D(2024, 4, 1), D(2024, 9, 30)), add(D(2024, 10, 1), copay_ratio=20))
    superseded: dict[int, Key] = {}
    assert apply_record(loss(D(2024, 6, 30), "01"), state, superseded) is True
    assert spans(state) == [(D(2024, 4, 1), D(2024, 6, 30), 30, "01")]
    assert superseded == {100: KEY, 101: KEY}


def test_the_same_loss_again_is_unchanged_and_keeps_what_was_added_since() -> None:
    state = stored(add(D(2024, 4, 1)), loss(D(2024, 6, 30)), add(D(2024, 7, 1), copay_ratio=20))
    superseded: dict[int, Key] = {}
    assert apply_record(loss(D(2024, 6, 30)), state, superseded) is False
    assert superseded == {}
    assert spans(state) == [(D(2024, 4, 1), D(2024, 6, 30), 30, "03"), (D(2024, 7, 1), None, 20, None)]


def test_loss_before_any_period_or_after_one_ended_is_not_found() -> None:
    state = stored(add(D(2024, 4, 1), D(2024, 9, 30)))
    for last in (D(2024, 3, 31), D(2024, 12, 31)):
        with pytest.raises(RecordError) as caught:
            apply_record(loss(last), state, {})
        assert (caught.value.field, caught.value.code) == ("valid_to", "not_found")


def test_an_add_since_ended_by_a_loss_or_split_by_a_change_is_unchanged_when_sent_again() -> None:
    ended = stored(add(D(2024, 4, 1)), loss(D(2024, 6, 30)))
    assert apply_record(add(D(2024, 4, 1)), ended, {}) is False
    split = stored(add(D(2024, 4, 1)), change(D(2024, 8, 1), copay_ratio=20))
    assert apply_record(add(D(2024, 4, 1)), split, {}) is False
    assert len(split.periods) == 2


def test_an_add_overwritten_on_its_own_first_day_is_no_longer_recognised() -> None:
    # the documented limit (docs/uploads.md, Re-sends): the stored period has other facts now
    state = stored(add(D(2024, 4, 1)), change(D(2024, 4, 1), copay_ratio=20))
    with pytest.raises(RecordError) as caught:
        apply_record(add(D(2024, 4, 1)), state, {})
    assert caught.value.code == "overlap"


def test_records_apply_in_file_order_on_the_state_left_by_the_previous_one() -> None:
    state = KeyState(add(D(2024, 4, 1)), insured_id=None, periods=[])
    for record in (add(D(2024, 4, 1)), change(D(2024, 8, 1), copay_ratio=20), loss(D(2024, 12, 31), "02"),
                   add(D(2025, 1, 1), copay_ratio=10)):
        assert apply_record(record, state, {}) is True
    assert spans(state) == [
        (D(2024, 4, 1), D(2024, 7, 31), 30, None),
        (D(2024, 8, 1), D(2024, 12, 31), 20, "02"),
        (D(2025, 1, 1), None, 10, None),
    ]


def test_periods_cover_their_inclusive_span() -> None:
    period = Period({"valid_from": D(2024, 4, 1), "valid_to": D(2024, 9, 30)})
    assert [period.covers(d) for d in (D(2024, 3, 31), D(2024, 4, 1), D(2024, 9, 30), D(2024, 10, 1))] == [
        False, True, True, False,
    ]


def test_a_record_sets_only_what_it_carries() -> None:
    values = record_values(change(D(2024, 8, 1), copay_ratio=20))
    assert {k for k, v in values.items() if v is not None} == {"copay_ratio"}
    assert "name_norm" not in values  # no name: the stored one carries over
