"""The bulk-load shortcut of an upload (``_fast_row``: an ``add`` for a person with no state goes
straight to a row) writes exactly the row the history algebra would have written for it."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.insurer_files import DiseaseEntry, EligibilityRecord
from shikaku_server.eligibility.history import KeyState, apply_record
from shikaku_server.eligibility.service import PERIOD_FIELDS
from shikaku_server.upload.bulk import INSURED_COLUMNS, render_rows
from shikaku_server.upload.service import _ROW_COLUMNS, _add_lines, _fast_row, _insured_values

D = dt.date


def _record(**over: object) -> EligibilityRecord:
    values: dict[str, object] = {
        "line": 7,
        "action": "add",
        "insurer_number": "01130012",
        "symbol": "１２３",
        "number": "４５６７",
        "branch": "00",
        "symbol_norm": "123",
        "number_norm": "4567",
        "name": "山田　太郎",
        "name_kana": "ヤマダ　タロウ",
        "sex": "1",
        "birth_date": D(1950, 4, 1),
        "address": "東京都千代田区霞が関１－２－２",
        "post_number": "100-8916",
        "personal_family": "1",
        "card_classification": "01",
        "valid_from": D(2024, 4, 1),
        "valid_to": D(2026, 3, 31),
        "copay_ratio": 30,
        "reason_of_loss": "03",
        "elderly_ratio": 20,
        "elderly_valid_from": D(2024, 5, 1),
        "elderly_valid_to": D(2025, 7, 31),
        "limit_kind": "01",
        "limit_class": "A03",
        "limit_valid_from": D(2024, 4, 1),
        "limit_valid_to": D(2025, 3, 31),
        "diseases": [
            DiseaseEntry("1", D(2024, 4, 1), None, 10000),
            DiseaseEntry("3", D(2024, 6, 1), D(2025, 1, 1), None),
        ],
    }
    return EligibilityRecord(**(values | over))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "record",
    [
        _record(),  # every optional field given
        _record(address=None, post_number=None, valid_to=None, reason_of_loss=None, diseases=None, elderly_ratio=None,
                elderly_valid_from=None, elderly_valid_to=None, limit_kind=None, limit_class=None,
                limit_valid_from=None, limit_valid_to=None),
    ],
    ids=["everything", "nothing optional"],
)
def test_the_shortcut_row_is_the_history_algebras_row(record: EligibilityRecord) -> None:
    state = KeyState(record, None, [])
    assert apply_record(record, state, {}) is True
    (period,) = state.periods
    by_algebra = (*(period.values[f] for f in PERIOD_FIELDS), "u1", period.line)
    shortcut = _fast_row(record, "u1")
    columns = _ROW_COLUMNS[:-1]  # all but the insured id
    assert dict(zip(columns, shortcut, strict=True)) == dict(zip(columns, by_algebra, strict=True))


@pytest.mark.parametrize(
    "record",
    [
        _record(diseases=None),  # every other optional field given
        _record(address=None, post_number=None, valid_to=None, reason_of_loss=None, diseases=None, elderly_ratio=None,
                elderly_valid_from=None, elderly_valid_to=None, limit_kind=None, limit_class=None,
                limit_valid_from=None, limit_valid_to=None, symbol="", symbol_norm=""),
        _record(diseases=None, name="山田，太郎"),  # NFKC makes the name's comma plain: csv quotes name_norm
        _record(diseases=None, address='東京都"千代田区'),
        _record(diseases=None, name_kana="ヤマダ\rタロウ"),
        _record(diseases=None, address="東京都千代田区\n霞が関"),
        _record(),  # diseases: JSON, the csv module's way
    ],
    ids=["optional groups", "nothing optional", "comma after NFKC", "quote", "CR", "line break", "diseases"],
)
def test_the_lines_written_ahead_are_the_csv_modules(record: EligibilityRecord) -> None:
    """``_add_lines`` writes a new person's two COPY lines by hand; they must be exactly what
    ``render_rows`` (the csv module) writes, or it must decline (None) and leave them to it."""
    lines = _add_lines(record, "u1")
    insured = render_rows([_insured_values(record)], INSURED_COLUMNS)
    period = render_rows([_fast_row(record, "u1")], _ROW_COLUMNS[:-1])
    if lines is None:  # declined only for a reason: JSON, or a character COPY's csv needs quoted
        written = "".join(line[0] for line in (insured, period) if line)
        assert record.diseases is not None or None in (insured, period) or any(c in written for c in '"\r')
    else:
        assert insured is not None and period is not None
        assert lines == (insured[0], period[0])
