"""The staff screen's data: checkups in the result form's terms with their thresholds, the drug
history's facility, form errors per field, and what changed since the person's previous check."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic_terminal.kiosk.history import checkups_json, facility_description, medications_json
from clinic_terminal.kiosk.staff import BatchInputError, ReceptionBoard, queries_from_rows, record_json, wari
from schemas.card import CheckupItem, Checkups, MedicationItem, Medications
from schemas.eligibility import ByNumberQuery, Elderly, EligibilityResult
from tests.unit.kiosk.conftest import TODAY, insured


def _checkups(*items: CheckupItem) -> Checkups:
    return Checkups(visit_id="v-1", since=dt.date(2021, 11, 28), consent_id=1, items=list(items))


def test_checkups_use_the_result_form_terms_units_and_thresholds() -> None:
    old = CheckupItem(checked_on=dt.date(2024, 6, 1), results={"systolic": 128, "hba1c": 5.4}, urine_protein="-")
    new = CheckupItem(checked_on=dt.date(2025, 6, 1), urine_protein="2+",
                      results={"systolic": 142, "hba1c": 5.7, "hdl": 38, "waist_cm": 86.0, "bmi": 24.9})
    view = checkups_json(_checkups(old, new), "男")
    assert view["dates"] == ["2025-06-01", "2024-06-01"]  # newest first
    rows = {r["key"]: r for r in view["rows"]}
    assert [r["label"] for r in view["rows"]] == [
        "腹囲", "BMI", "収縮期血圧", "HDLコレステロール", "HbA1c（NGSP値）", "尿蛋白"]  # the form's order
    assert (rows["systolic"]["unit"], rows["systolic"]["reference"]) == ("mmHg", "130 未満")
    assert [(v["text"], v["flag"]) for v in rows["systolic"]["values"]] == [("142", "referral"), ("128", None)]
    assert [(v["text"], v["flag"]) for v in rows["hba1c"]["values"]] == [("5.7", "guidance"), ("5.4", None)]
    assert rows["hdl"]["reference"] == "40 以上" and rows["hdl"]["values"][0]["flag"] == "guidance"
    assert rows["waist_cm"]["values"][0]["flag"] == "guidance"  # 男性 85 cm
    assert rows["bmi"]["values"][0]["flag"] is None
    assert [(v["text"], v["flag"]) for v in rows["urine_protein"]["values"]] == [
        ("（2+）", "referral"), ("（−）", None)]


def test_waist_threshold_follows_sex() -> None:
    view = checkups_json(_checkups(CheckupItem(checked_on=TODAY, results={"waist_cm": 86}, urine_protein=None)), "女")
    (row,) = view["rows"]
    assert (row["reference"], row["values"][0]["flag"]) == ("90 未満", None)


def test_drug_history_names_the_facility_and_keeps_the_code() -> None:
    meds = Medications(visit_id="v", since=dt.date(2023, 1, 1), consent_id=1, items=[
        MedicationItem(dispensed_on=dt.date(2026, 10, 1), facility_code="1341234563", drug_code="620000001",
                       drug_name="ロキソプロフェンNa錠60mg", quantity=21, unit="錠", days=7),
        MedicationItem(dispensed_on=dt.date(2026, 11, 1), facility_code="0110113719", drug_code="620000002",
                       drug_name="アムロジピン錠5mg", quantity=28, unit="錠", days=28),
    ])
    view = medications_json(meds, {"0110113719": "しかく内科クリニック"})
    first, second = view["items"]
    assert (first["facility_name"], first["facility_code"]) == ("しかく内科クリニック", "0110113719")
    assert (second["facility_name"], second["facility_description"]) == (None, "東京都の薬局")
    assert facility_description("9941234563") is None


def test_a_single_record_names_each_field_without_a_row_number() -> None:
    with pytest.raises(BatchInputError) as info:
        queries_from_rows([{"insurer_number": "123", "number": "1", "branch": "x", "birth_date": "x"}])
    fields = {p.field: p.message for p in info.value.fields}
    assert fields == {
        "insurer_number": "8桁の数字で入力してください（国民健康保険は6桁）",
        "branch": "2桁の数字で入力してください（例: 00）",
        "birth_date": "日付を入力してください（例: 1980-04-01）",
    }
    with pytest.raises(BatchInputError) as missing:
        queries_from_rows([{"insurer_number": "01130012"}])
    assert {p.field: p.message for p in missing.value.fields} == {
        "number": "入力してください", "birth_date": "入力してください"}
    assert "insurer_number" not in str(missing.value) and "番号: 入力してください" in str(missing.value)


def test_copay_is_in_wari_everywhere() -> None:
    assert (wari(30), wari(20), wari(10), wari(None)) == ("3割", "2割", "1割", "—")


def _result(**over: object) -> EligibilityResult:
    values: dict[str, object] = {"validity": 1, "query_kind": "number", "as_of": TODAY, "insured": insured()}
    values.update(over)
    return EligibilityResult(**values)


def test_board_shows_what_changed_since_the_previous_check_of_the_same_person() -> None:
    now = [dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)]
    board = ReceptionBoard(now=lambda: now[0])
    first = board.add_number_check(_result())
    assert record_json(first, board)["changes"] is None
    assert record_json(first, board)["attention"] == "ok"

    now[0] += dt.timedelta(days=1)  # the next day: the board is new, the previous check is remembered
    moved = insured(insurer_number="06139992", insurer_name="しかく健康保険組合", copay_ratio=30)
    second = board.add_number_check(_result(insured=moved, elderly=Elderly(
        copay_ratio=20, valid_from=dt.date(2026, 1, 1), valid_to=None, certificate_date=None)))
    view = record_json(second, board)
    assert view["attention"] == "changed" and view["attention_label"] == "変更あり"
    assert view["changes"] == {"previous_at": "11/27 10:00", "items": [
        "保険者が変わりました（全国健康保険協会 東京支部 → しかく健康保険組合）",
        "負担割合が変わりました（3割 → 2割）"]}
    assert view["result"]["copay_label"] == "2割" and view["result"]["elderly"]["copay_label"] == "2割"

    lost = board.add_number_check(_result(validity=2, insured=moved))
    view = record_json(lost, board)
    assert view["attention_label"] == "資格なし"
    assert "資格を喪失しています（前回は有効）" in view["changes"]["items"]


def test_a_lookup_that_found_nobody_shows_what_was_searched() -> None:
    board = ReceptionBoard()
    query = ByNumberQuery(insurer_number="01130012", symbol="12", number="34", branch="00",
                          birth_date=dt.date(1980, 1, 2))
    record = board.add_number_check(_result(validity=4, insured=None), query)
    view = record_json(record, board)
    assert view["attention"] == "not_insured"
    assert view["searched"] == {"insurer_number": "01130012", "symbol": "12", "number": "34", "branch": "00",
                                "birth_date": "1980-01-02", "as_of": None}
