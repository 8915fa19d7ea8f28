"""The bulk-load shortcut of an upload (``_fast_row``: an ``add`` for a person with no state goes
straight to a row) writes exactly the row the history algebra would have written for it."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.insurer_files import DiseaseEntry, EligibilityRecord
from shikaku_server.eligibility.history import KeyState, apply_record
from shikaku_server.eligibility.service import PERIOD_FIELDS
from shikaku_server.upload.service import _ROW_COLUMNS, _fast_row

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
