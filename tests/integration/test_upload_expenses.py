"""The ``expenses`` upload kind (医療費通知情報) on both backends: accepted and rejected rows with
their line, field and code; re-sends and cumulative files; the encodings and NDJSON; and the
patient's year, its 医療費集計フォーム (.xlsx) and CSV exports for a synthetic patient."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import shikaku_server.upload.bulk as bulk
from schemas.insurer_files import EXPENSE_COLUMNS
from shikaku_server.auth.service import add_insurer
from shikaku_server.database import transaction
from shikaku_server.expenses.service import expenses_of_year, export_year
from testbed.population import (
    ELIGIBILITY_HEADER,
    EXPENSE_HEADER,
    Population,
    eligibility_rows,
    expense_rows,
    generate_population,
    write_csv,
)
from tests.conftest import FACILITY_CODE, PHARMACY_CODE, auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person
from tests.meeting import meet_at_first_call

TODAY = dt.date(2026, 11, 28)
YEAR = 2026
HEADERS = {"Content-Type": "text/csv"}
DETAIL_HEADER = ("診療年月", "医療機関等コード", "医療機関等名称", "診療区分", "日数", "医療費の総額", "窓口負担相当額")


def send(client: TestClient, token: str, body: bytes, *, media: str = "text/csv") -> dict[str, Any]:
    r = client.post("/v1/uploads?kind=expenses", content=body, headers={**auth(token), "Content-Type": media})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def expense(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "insurer_number": INSURER_A,
        "symbol": "１２３",
        "number": "４５６７",
        "branch": "00",
        "service_month": "2026-03",
        "facility_code": FACILITY_CODE,
        "facility_name": "しかく内科クリニック",
        "care_kind": "2",
        "days": "2",
        "total_cost": "12340",
        "patient_paid": "3700",
    }
    row.update(over)
    return row


def expenses_csv(rows: list[dict[str, Any]]) -> bytes:
    return csv_bytes(list(EXPENSE_COLUMNS), rows)


def stored(session_factory: Any) -> list[tuple[Any, ...]]:
    with session_factory() as s:
        rows = s.execute(sa.text(
            "SELECT id, upload_id, service_month, facility_code, facility_name, care_kind, days, total_cost,"
            " patient_paid FROM expense ORDER BY id"
        )).all()
    return [(*r[:2], str(r[2]), *r[3:]) for r in rows]


@pytest.fixture
def yamada(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post("/v1/uploads?kind=eligibility", content=eligibility_csv([person()]),
                    headers={**auth(tokens["insurer"]), **HEADERS})
    assert r.json()["accepted"] == 1, r.text


def test_rows_are_accepted_and_bad_rows_rejected_with_line_field_and_code(
    client: TestClient, tokens: dict[str, str], session_factory: Any, yamada: None
) -> None:
    rows = [
        expense(),  # line 2
        expense(service_month="2026-03", facility_code=PHARMACY_CODE, facility_name="さくら薬局", care_kind="4"),
        expense(facility_code="0110113718"),  # line 4: check digit
        expense(care_kind="9"),  # 5
        expense(patient_paid="20000"),  # 6: more than total_cost
        expense(days="32", service_month="2026-01"),  # 7
        expense(days="29", service_month="2026-02"),  # 8: February 2026 has 28 days
        expense(service_month="2026-13"),  # 9
        expense(service_month="2099-01"),  # 10: not begun yet
        expense(total_cost="-1"),  # 11
        expense(number="9999"),  # 12: nobody
        expense(facility_name=""),  # 13
        expense(service_month="202604", total_cost="１０００", patient_paid="300"),  # 14: YYYYMM, full-width digits
    ]
    out = send(client, tokens["insurer"], expenses_csv(rows))
    assert (out["accepted"], out["rejected"]) == (3, 10), out["errors"]
    got = {(e["line"], e["field"], e["code"]) for e in out["errors"]}
    assert got == {
        (4, "facility_code", "check_digit"),
        (5, "care_kind", "invalid_code"),
        (6, "patient_paid", "exceeds_total"),
        (7, "days", "out_of_range"),
        (8, "days", "out_of_range"),
        (9, "service_month", "invalid_month"),
        (10, "service_month", "out_of_range"),
        (11, "total_cost", "out_of_range"),
        (12, "number", "unknown_person"),
        (13, "facility_name", "required"),
    }
    kept = {(r[2], r[3], r[5], r[7], r[8]) for r in stored(session_factory)}
    assert kept == {
        ("2026-03-01", FACILITY_CODE, "2", 12340, 3700),
        ("2026-03-01", PHARMACY_CODE, "4", 12340, 3700),
        ("2026-04-01", FACILITY_CODE, "2", 1000, 300),
    }


def test_the_same_file_twice_changes_nothing_and_says_so_and_a_cumulative_file_loads_only_new_rows(
    client: TestClient, tokens: dict[str, str], session_factory: Any, yamada: None
) -> None:
    first = [expense(service_month=f"2026-0{m}") for m in (1, 2, 3)]
    body = expenses_csv(first)
    assert send(client, tokens["insurer"], body)["accepted"] == 3
    before = stored(session_factory)
    again = send(client, tokens["insurer"], body)
    assert again["duplicate"] is True
    assert (again["accepted"], again["unchanged"]) == (0, 3)
    assert stored(session_factory) == before
    # the insurer's full state re-sent with a new month: the stored rows stay as they are
    cumulative = send(client, tokens["insurer"], expenses_csv([*first, expense(service_month="2026-04")]))
    assert cumulative["duplicate"] is False
    assert (cumulative["accepted"], cumulative["unchanged"], cumulative["rejected"]) == (1, 3, 0)
    assert stored(session_factory)[:3] == before
    # a corrected figure for a stored month replaces it (one row per person, month, facility, kind)
    fixed = send(client, tokens["insurer"], expenses_csv([expense(service_month="2026-01", patient_paid="3000")]))
    assert (fixed["accepted"], fixed["unchanged"]) == (1, 0)
    assert [r[8] for r in stored(session_factory)] == [3000, 3700, 3700, 3700]


def test_another_insurers_same_bytes_are_its_own_upload(
    client: TestClient, tokens: dict[str, str], session_factory: Any, yamada: None
) -> None:
    body = expenses_csv([expense()])
    assert send(client, tokens["insurer"], body)["accepted"] == 1
    other = send(client, tokens["insurer_b"], body)
    assert other["duplicate"] is False
    assert [(e["field"], e["code"]) for e in other["errors"]] == [("insurer_number", "insurer_not_permitted")]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_the_encodings_and_ndjson_load_the_same_rows(
    client: TestClient, tokens: dict[str, str], session_factory: Any, yamada: None, encoding: str
) -> None:
    text = expenses_csv([expense(), expense(service_month="2026-05", facility_name="髙橋歯科医院", care_kind="3",
                                            facility_code=FACILITY_CODE)]).decode()
    out = send(client, tokens["insurer"], text.encode(encoding))
    assert (out["accepted"], out["rejected"]) == (2, 0), out["errors"]
    names = sorted(r[4] for r in stored(session_factory))
    assert names == ["しかく内科クリニック", "髙橋歯科医院"]
    again = [expense(days=3), expense(service_month="2026-05", facility_name="髙橋歯科医院", care_kind="3")]
    ndjson = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in again).encode()
    out = send(client, tokens["insurer"], ndjson, media="application/x-ndjson")
    assert (out["accepted"], out["unchanged"], out["rejected"]) == (1, 1, 0), out["errors"]


@pytest.mark.parametrize(
    ("column", "code"),
    [("colour", "unknown_column"), ("my_number", "my_number_detected"), ("個人番号", "my_number_detected")],
)
def test_an_unknown_or_my_number_column_refuses_the_whole_file(
    client: TestClient, tokens: dict[str, str], session_factory: Any, yamada: None, column: str, code: str
) -> None:
    body = csv_bytes([*EXPENSE_COLUMNS, column], [expense(**{column: "x"})])
    r = client.post("/v1/uploads?kind=expenses", content=body, headers={**auth(tokens["insurer"]), **HEADERS})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert stored(session_factory) == []


def test_a_missing_column_refuses_the_whole_file(
    client: TestClient, tokens: dict[str, str], session_factory: Any, yamada: None
) -> None:
    body = csv_bytes([c for c in EXPENSE_COLUMNS if c != "patient_paid"], [expense()])
    r = client.post("/v1/uploads?kind=expenses", content=body, headers={**auth(tokens["insurer"]), **HEADERS})
    assert (r.status_code, r.json()["code"]) == (422, "missing_column")


# ---------------------------------------------------------------- the patient's year and its exports


@pytest.fixture
def population() -> Population:
    return generate_population(300, seed=15, today=TODAY)


@pytest.fixture
def loaded(client: TestClient, session_factory: Any, population: Population, tmp_path: Path) -> list[dict[str, Any]]:
    """The synthetic population and its expenses, uploaded; the generator's expense rows."""
    with transaction(session_factory) as s:
        token = add_insurer(s, numbers=sorted({p.insurer_number for p in population.people}), name="医療費試験")
    write_csv(tmp_path / "eligibility.csv", ELIGIBILITY_HEADER, eligibility_rows(population.people))
    r = client.post("/v1/uploads?kind=eligibility", content=(tmp_path / "eligibility.csv").read_bytes(),
                    headers={**auth(token), **HEADERS})
    assert r.json()["rejected"] == 0, r.json()["errors"][:3]
    rows = list(expense_rows(population.people, seed=15, today=TODAY))
    n = write_csv(tmp_path / "expenses.csv", EXPENSE_HEADER, rows, encoding="cp932")
    out = send(client, token, (tmp_path / "expenses.csv").read_bytes())
    assert (out["accepted"], out["rejected"]) == (n, 0), out["errors"][:3]
    return rows


def _busiest(rows: list[dict[str, Any]]) -> tuple[tuple[str, str, str, str], list[dict[str, Any]]]:
    """The person with the most rows in YEAR, with a pharmacy among them, and those rows."""
    mine: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if str(r["service_month"]).startswith(f"{YEAR}-"):
            mine[(str(r["insurer_number"]), str(r["symbol"]), str(r["number"]), str(r["branch"]))].append(r)
    key = max((k for k, v in mine.items() if any(r["care_kind"] == "4" for r in v)), key=lambda k: len(mine[k]))
    return key, mine[key]


@pytest.fixture
def patient(session_factory: Any, loaded: list[dict[str, Any]]) -> tuple[int, tuple[str, ...], list[dict[str, Any]]]:
    """The busiest synthetic patient: insured id, key and the generator's rows of YEAR."""
    key, rows = _busiest(loaded)
    with session_factory() as s:
        found = s.execute(
            sa.text("SELECT id FROM insured WHERE insurer_number=:i AND symbol=:s AND number=:n AND branch=:b"),
            dict(zip("isnb", key, strict=True)),
        ).scalar_one()
    return int(found), key, rows


def _log(session_factory: Any, insured_id: int) -> list[tuple[str, str, str | None]]:
    with session_factory() as s:
        rows = s.execute(sa.text("SELECT what, role, facility_code FROM access_log WHERE insured_id=:i ORDER BY id"),
                         {"i": insured_id}).all()
    return [tuple(r) for r in rows]


def test_the_year_lists_the_persons_rows_by_month_and_facility_with_totals(session_factory: Any, patient: Any) -> None:
    insured_id, _, rows = patient
    with transaction(session_factory) as s:
        year = expenses_of_year(s, insured_id, YEAR)
    expected = sorted((r["service_month"], r["facility_code"], r["care_kind"], r["days"], r["total_cost"],
                       r["patient_paid"]) for r in rows)
    assert [(i.service_month, i.facility_code, i.care_kind, i.days, i.total_cost, i.patient_paid)
            for i in year.items] == expected
    assert year.total.patient_paid == sum(int(r["patient_paid"]) for r in rows)
    assert year.total.total_cost == sum(int(r["total_cost"]) for r in rows)
    by_month = Counter[str]()
    for r in rows:
        by_month[str(r["service_month"])] += int(r["patient_paid"])
    assert {m.service_month: m.patient_paid for m in year.months} == dict(by_month)
    assert sum(f.total_cost for f in year.facilities) == year.total.total_cost
    # a year with nothing: empty, zero totals; and each read is in the person's access log
    with transaction(session_factory) as s:
        empty = expenses_of_year(s, insured_id, 2019)
    assert (empty.items, empty.total.patient_paid) == ([], 0)
    assert _log(session_factory, insured_id) == [("expenses", "patient", None)] * 2


def test_the_xlsx_export_is_the_iryouhi_form_with_the_persons_rows_and_total(
    session_factory: Any, patient: Any, population: Population
) -> None:
    insured_id, key, rows = patient
    with transaction(session_factory) as s:
        content, media, name = export_year(s, insured_id, YEAR, "xlsx")
    assert (media, name) == ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "iryouhi_2026.xlsx")
    book = openpyxl.load_workbook(io.BytesIO(content))
    form = book["医療費集計フォーム"]
    assert [c.value for c in form[8]] == [
        "No.", "医療を受けた人", "病院・薬局などの支払先の名称", "診療・治療", "医薬品購入", "介護保険サービス",
        "その他の医療費", "支払った医療費の金額", "左のうち、補填される金額", "支払年月日",
    ]
    patient = next(p for p in population.people if p.key == key)
    # the generator's rows summed per facility: pharmacy rows are 医薬品購入, all others 診療・治療
    want: Counter[tuple[str, str, str]] = Counter()
    names = {str(r["facility_code"]): str(r["facility_name"]) for r in rows}
    for r in rows:
        want[(str(r["facility_code"]), "E" if r["care_kind"] == "4" else "D", names[str(r["facility_code"])])] += int(
            r["patient_paid"])
    got = []
    for n, line in enumerate(form.iter_rows(min_row=9, values_only=True), start=1):
        number, who, facility, d, e, f, g, paid, covered, date = line
        assert (number, who, f, g, covered, date) == (n, patient.name, None, None, 0, None)
        assert [d, e].count("該当する") == 1
        assert isinstance(paid, int)
        got.append((facility, "D" if d else "E", paid))
    assert sorted(got) == sorted((nm, col, v) for (_, col, nm), v in want.items() if v)
    assert form["C3"].value == sum(int(r["patient_paid"]) for r in rows) == sum(v for *_, v in got)
    detail = book["医療費通知情報"]
    lines = list(detail.iter_rows(min_row=4, values_only=True))
    assert lines[0] == DETAIL_HEADER
    assert len(lines) == len(rows) + 2
    assert lines[-1][4:] == (sum(int(r["days"]) for r in rows), sum(int(r["total_cost"]) for r in rows),
                             sum(int(r["patient_paid"]) for r in rows))
    assert _log(session_factory, insured_id) == [("expenses_export", "patient", None)]


def test_the_csv_export_has_the_persons_rows_and_a_total_line(session_factory: Any, patient: Any) -> None:
    insured_id, _, rows = patient
    with transaction(session_factory) as s:
        content, media, name = export_year(s, insured_id, YEAR, "csv")
    assert (media, name) == ("text/csv; charset=utf-8", "iryouhi_2026.csv")
    assert content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert tuple(lines[0]) == DETAIL_HEADER
    kinds = {"1": "医科入院", "2": "医科外来", "3": "歯科", "4": "調剤", "5": "訪問看護"}
    assert sorted(lines[1:-1]) == sorted(
        [str(r["service_month"]), str(r["facility_code"]), str(r["facility_name"]), kinds[str(r["care_kind"])],
         str(r["days"]), str(r["total_cost"]), str(r["patient_paid"])] for r in rows
    )
    assert lines[-1] == ["合計", "", "", "", str(sum(int(r["days"]) for r in rows)),
                         str(sum(int(r["total_cost"]) for r in rows)), str(sum(int(r["patient_paid"]) for r in rows))]


def test_an_export_never_holds_another_persons_rows_and_a_formula_stays_text(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    other = person(number="８８８８", name="佐藤 花子", name_kana="サトウ ハナコ")
    r = client.post("/v1/uploads?kind=eligibility", content=eligibility_csv([person(), other]),
                    headers={**auth(tokens["insurer"]), **HEADERS})
    assert r.json()["accepted"] == 2
    out = send(client, tokens["insurer"], expenses_csv([
        expense(facility_name="=HYPERLINK(\"http://x\")"),
        expense(number="８８８８", facility_name="ほかの病院", total_cost="99990", patient_paid="29990"),
    ]))
    assert out["accepted"] == 2, out["errors"]
    with session_factory() as s:
        yamada = s.execute(sa.text("SELECT id FROM insured WHERE number_norm='4567'")).scalar_one()
    with transaction(session_factory) as s:
        content, *_ = export_year(s, yamada, YEAR, "xlsx")
        csv_content, *_ = export_year(s, yamada, YEAR, "csv")
    form = openpyxl.load_workbook(io.BytesIO(content))["医療費集計フォーム"]
    assert [(c[1], c[2], c[7]) for c in form.iter_rows(min_row=9, values_only=True)] == [
        ("山田 太郎", "'=HYPERLINK(\"http://x\")", 3700)
    ]
    assert form["C9"].data_type == "s"
    assert "ほかの病院" not in csv_content.decode("utf-8-sig")
    assert "'=HYPERLINK" in csv_content.decode("utf-8-sig")


@pytest.mark.parametrize("same", [True, False], ids=["same-row", "other-amount"])
def test_two_concurrent_uploads_of_the_same_new_row_store_it_once(
    client: TestClient, tokens: dict[str, str], session_factory: Any, backend: str, monkeypatch: pytest.MonkeyPatch,
    yamada: None, same: bool,
) -> None:
    first = expenses_csv([expense(), expense(service_month="2026-04")])
    second = expenses_csv([expense(service_month="2026-05"), expense(patient_paid="3700" if same else "3000")])
    if backend == "postgres":
        # both files insert the shared row at the same moment: the later one merges into it
        monkeypatch.setattr(bulk.PostgresWriter, "insert_rows", meet_at_first_call(bulk.PostgresWriter.insert_rows))
    with ThreadPoolExecutor(2) as pool:
        out = list(pool.map(lambda body: send(client, tokens["insurer"], body), (first, second)))
    assert len(stored(session_factory)) == 3  # the shared row once
    assert sum(o["rejected"] for o in out) == 0
    assert sum(o["accepted"] + o["unchanged"] for o in out) == 4
    if same:
        assert sum(o["unchanged"] for o in out) == 1
