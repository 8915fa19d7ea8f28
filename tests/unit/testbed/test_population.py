"""The synthetic population: deterministic, valid by the shared validators, realistic in
structure, and never carrying a My Number."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import unicodedata
from pathlib import Path

import pytest

from schemas.identifiers import contains_my_number, facility_code_problem, insurer_number_problem
from schemas.insurer_files import EligibilityRecord, FileKind, FileReader, check_rows
from testbed import population as pop
from testbed.population import (
    Population,
    generate_population,
    iter_people,
    to_halfwidth_kana,
    write_checkups_csv,
    write_checkups_ndjson,
    write_eligibility_csv,
    write_eligibility_ndjson,
    write_medications_csv,
    write_medications_ndjson,
    write_procedures_csv,
    write_procedures_ndjson,
)

TODAY = dt.date(2026, 11, 28)


@pytest.fixture(scope="module")
def people() -> Population:
    return generate_population(3000, seed=11, today=TODAY)


def check_file(kind: FileKind, path: Path, fmt: str = "csv") -> tuple[int, list[str]]:
    reader = FileReader(kind, [path.read_bytes()], fmt="ndjson" if fmt == "ndjson" else "csv")
    rows, problems = 0, list[str]()
    for checked in check_rows(reader):
        rows += 1
        problems.extend(f"{e.line} {e.field} {e.code} {e.message}" for e in checked.errors)
    return rows, problems


def test_same_seed_same_population_other_seed_other_population() -> None:
    a = [(*p.key, p.name, p.birth_date) for p in iter_people(300, seed=5, today=TODAY)]
    b = [(*p.key, p.name, p.birth_date) for p in iter_people(300, seed=5, today=TODAY)]
    c = [(*p.key, p.name, p.birth_date) for p in iter_people(300, seed=6, today=TODAY)]
    assert a == b
    assert a != c
    assert len(a) == 300


def test_files_are_byte_identical_for_a_seed(tmp_path: Path) -> None:
    write_eligibility_csv(tmp_path / "a.csv", iter_people(200, seed=3, today=TODAY))
    write_eligibility_csv(tmp_path / "b.csv", iter_people(200, seed=3, today=TODAY))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_insurers_have_valid_numbers_of_every_kind() -> None:
    insurers = pop.default_insurers()
    assert all(insurer_number_problem(i.number) is None for i in insurers)
    kinds = {i.kind: i.number for i in insurers}
    assert set(kinds) == {"kyokai", "kumiai", "kyosai", "kokuho", "koki"}
    assert all(len(i.number) == 6 for i in insurers if i.kind == "kokuho")
    assert all(len(i.number) == 8 for i in insurers if i.kind != "kokuho")
    assert all(i.number.startswith("39") for i in insurers if i.kind == "koki")


def test_households_have_branches_and_family_codes(people: Population) -> None:
    for household in people.households().values():
        branches = [p.branch for p in household]
        assert branches == [f"{i:02d}" for i in range(len(household))]
        assert [p.personal_family for p in household] == ["1"] + ["2"] * (len(household) - 1)
        assert len({p.address for p in household}) == 1
        assert all(p.household_size == len(household) for p in household)
    ambiguous = people.ambiguous_without_branch()
    assert len(ambiguous) > 100
    assert all(len({(p.insurer_number, p.symbol, p.number) for p in h}) == 1 for h in ambiguous)


def test_ages_decide_insurer_and_copay(people: Population) -> None:
    koki = {i.number for i in pop.default_insurers() if i.kind == "koki"}
    seen_elderly = seen_koki = False
    for p in people.people:
        years = p.age_on(TODAY)
        assert p.valid_from >= p.birth_date
        if p.insurer_number in koki:
            seen_koki = True
            assert years >= 75
            assert p.household_size == 1
            assert p.copay_ratio in (10, 30)
            assert p.valid_from >= pop._birthday(p.birth_date, 75)
        else:
            assert years < 75
            if years >= 70:
                seen_elderly = True
                assert p.elderly_ratio == p.copay_ratio
                assert p.copay_ratio in (20, 30)
                assert p.elderly_valid_from is not None
                assert p.elderly_valid_from >= p.valid_from
                assert p.elderly_valid_from.day == 1 or p.elderly_valid_from == p.valid_from
            elif years < 6:
                assert p.copay_ratio == 20
            else:
                assert p.copay_ratio == 30
    assert seen_elderly
    assert seen_koki


def test_the_population_answers_test_questions(people: Population) -> None:
    valid = people.valid_on(TODAY)
    lost = people.lost()
    assert valid
    assert lost
    assert all(p.is_valid_on(TODAY) for p in valid)
    for p in lost:
        assert p.lost_on is not None
        assert p.reason_of_loss in ("01", "03", "99")
        assert not p.is_valid_on(p.lost_on + dt.timedelta(days=1))
        assert p.is_valid_on(p.lost_on)
    assert {p.reason_of_loss for p in lost} >= {"01", "03"}
    assert people.changed()
    assert people.with_limit()
    assert people.with_elderly()
    assert people.with_diseases()
    for p in people.changed():
        assert p.change is not None
        assert p.change.on > p.valid_from, "a change row needs an existing period to change"
    some = valid[0]
    assert people.find(*some.key) is some
    assert people.find("00000000", "x", "y", "00") is None
    changed = people.changed()[0]
    assert changed.change is not None
    before, after = changed.change.on - dt.timedelta(days=1), changed.change.on
    assert (changed.copay_on(before), changed.address_on(before)) != (changed.copay_on(after),
                                                                      changed.address_on(after))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_generated_csv_files_pass_the_shared_validation(
    tmp_path: Path, people: Population, encoding: str
) -> None:
    writers = {
        "eligibility": write_eligibility_csv(tmp_path / "e.csv", people.people, encoding),
        "medications": write_medications_csv(tmp_path / "m.csv", people.people, encoding, today=TODAY),
        "checkups": write_checkups_csv(tmp_path / "c.csv", people.people, encoding, today=TODAY),
        "procedures": write_procedures_csv(tmp_path / "p.csv", people.people, encoding, today=TODAY),
    }
    for kind, name in (("eligibility", "e.csv"), ("medications", "m.csv"), ("checkups", "c.csv"),
                       ("procedures", "p.csv")):
        rows, problems = check_file(kind, tmp_path / name)  # type: ignore[arg-type]
        assert problems == []
        assert rows == writers[kind] > 100


def test_generated_ndjson_files_pass_the_shared_validation(tmp_path: Path, people: Population) -> None:
    n = write_eligibility_ndjson(tmp_path / "e.ndjson", people.people)
    write_medications_ndjson(tmp_path / "m.ndjson", people.people, today=TODAY)
    write_checkups_ndjson(tmp_path / "c.ndjson", people.people, today=TODAY)
    write_procedures_ndjson(tmp_path / "p.ndjson", people.people, today=TODAY)
    for kind, name in (("eligibility", "e.ndjson"), ("medications", "m.ndjson"), ("checkups", "c.ndjson"),
                       ("procedures", "p.ndjson")):
        rows, problems = check_file(kind, tmp_path / name, "ndjson")  # type: ignore[arg-type]
        assert problems == []
        assert rows > 100
    lines = (tmp_path / "e.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) == n
    with_diseases = [json.loads(x) for x in lines if "disease_category" in x]
    assert with_diseases
    assert all(isinstance(d["disease_category"], list) for d in with_diseases)


def test_eligibility_file_has_events_after_the_adds(tmp_path: Path, people: Population) -> None:
    path = tmp_path / "e.csv"
    write_eligibility_csv(path, people.people)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    actions = [r["action"] for r in rows]
    assert actions[: len(people.people)] == ["add"] * len(people.people)
    assert set(actions[len(people.people):]) == {"change", "loss"}
    for r in rows:
        if r["action"] == "loss":
            assert r["valid_to"]
            assert r["reason_of_loss"]
            assert not r["name"]
        if r["action"] == "change":
            assert r["valid_from"]
            assert (r["copay_ratio"] or r["address"])
            assert not r["name"]
    several = [r for r in rows if "|" in r["disease_category"]]
    assert several, "several specific diseases are |-separated in one row"
    for r in several:
        assert len(r["disease_valid_from"].split("|")) == len(r["disease_category"].split("|"))


def test_kana_full_width_some_half_width_and_rare_characters(tmp_path: Path) -> None:
    config = pop.PopulationConfig(halfwidth_kana_rate=0.2, rare_name_rate=0.2)
    people = generate_population(500, seed=2, today=TODAY, config=config)
    half = [p for p in people.people if p.kana_halfwidth]
    assert half
    assert all(unicodedata.normalize("NFKC", to_halfwidth_kana(p.name_kana)) ==
               unicodedata.normalize("NFKC", p.name_kana) for p in half)
    assert to_halfwidth_kana("ヤマダ　ガク") == "ﾔﾏﾀﾞ ｶﾞｸ"
    assert all(0x30A0 <= ord(ch) <= 0x30FF or ch == "\u3000" for p in people.people for ch in p.name_kana)

    path = tmp_path / "e.csv"
    write_eligibility_csv(path, people.people)
    text = path.read_text(encoding="utf-8")
    assert "𠮷" in text
    assert "髙" in text
    assert "ﾔ" in text or "ｶ" in text or "ﾀ" in text
    records = [c.record for c in check_rows(FileReader("eligibility", [path.read_bytes()]))]
    kana = {r.name_kana for r in records if isinstance(r, EligibilityRecord) and r.name_kana}
    half_width = [k for k in kana if any("\uff61" <= ch <= "\uff9f" for ch in k)]
    assert half_width == [], "the validator normalises half-width kana"

    cp932 = tmp_path / "e932.csv"
    write_eligibility_csv(cp932, people.people, encoding="cp932")
    decoded = cp932.read_bytes().decode("cp932")
    assert "𠮷" not in decoded
    assert "吉田" in decoded
    assert "髙" in decoded
    assert "\r\n" in decoded


def test_medication_and_checkup_values_are_plausible(tmp_path: Path, people: Population) -> None:
    rows = list(pop.medication_rows(people.people, today=TODAY))
    assert rows
    assert all(facility_code_problem(str(r["facility_code"])) is None for r in rows)
    assert all(str(r["facility_code"])[2] == "4" for r in rows)
    assert all(isinstance(r["days"], int) and 0 < r["days"] <= 90 for r in rows)
    checkups = list(pop.checkup_rows(people.people, today=TODAY))
    by_key = {p.key: p for p in people.people}
    for r in checkups:
        person = by_key[(str(r["insurer_number"]), str(r["symbol"]), str(r["number"]), str(r["branch"]))]
        assert 40 <= person.age_on(TODAY) <= 74
        assert 120 < float(str(r["height_cm"])) < 210
        assert float(str(r["systolic"])) > float(str(r["diastolic"]))
        assert dt.date.fromisoformat(str(r["checked_on"])) <= TODAY


def test_no_field_ever_holds_a_my_number(tmp_path: Path, people: Population) -> None:
    write_eligibility_csv(tmp_path / "e.csv", people.people)
    write_medications_csv(tmp_path / "m.csv", people.people, today=TODAY)
    write_checkups_csv(tmp_path / "c.csv", people.people, today=TODAY)
    write_procedures_csv(tmp_path / "p.csv", people.people, today=TODAY)
    cells = 0
    for name in ("e.csv", "m.csv", "c.csv", "p.csv"):
        for record in csv.reader(io.StringIO((tmp_path / name).read_text(encoding="utf-8"))):
            for cell in record:
                cells += 1
                assert not contains_my_number(cell), f"{name}: {cell!r}"
    assert cells > 50_000


def test_cli_writes_all_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = pop.main(["--people", "50", "--out", str(tmp_path), "--seed", "1", "--today", "2026-11-28",
                     "--encoding", "cp932", "--format", "both"])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    kinds = ("eligibility", "medications", "checkups", "expenses", "procedures", "public_expense",
             *(f"assistance_{o.code}" for o in pop.welfare_offices()))
    assert names == {f"{k}.{e}" for k in kinds for e in ("csv", "ndjson")}
    assert "eligibility.csv:" in capsys.readouterr().out
    rows, problems = check_file("eligibility", tmp_path / "eligibility.csv")
    assert problems == []
    assert rows >= 50


def test_fifty_thousand_people_generate_fast() -> None:
    started = time.process_time()  # CPU time: other processes on the machine do not count
    n = sum(1 for _ in iter_people(50_000, seed=1, today=TODAY))
    assert n == 50_000
    assert time.process_time() - started < 3.0


@pytest.mark.slow
def test_a_million_rows_written_well_under_a_minute(tmp_path: Path) -> None:
    started = time.process_time()
    rows = write_eligibility_csv(tmp_path / "e.csv", iter_people(1_000_000, seed=1, today=TODAY))
    assert rows >= 990_000
    assert time.process_time() - started < 40.0


def test_public_expense_rows_fit_ages_and_pass_the_shared_validation(tmp_path: Path, people: Population) -> None:
    path = tmp_path / "p.csv"
    n = pop.write_csv(path, pop.PUBLIC_EXPENSE_HEADER, pop.public_expense_rows(people.people, 3, today=TODAY))
    rows, problems = check_file("public_expense", path)
    assert problems == [] and rows == n > 20
    ages = {p.key: pop.age(p.birth_date, TODAY) for p in people.people}
    laws: set[str] = set()
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        law, years = row["payer_number"][:2], ages[(row["insurer_number"], row["symbol"], row["number"], row["branch"])]
        laws.add(law)
        expected = ("52", "88") if years < 15 else ("52",) if years < 18 else ("54", "21")
        assert law in expected
        assert row["valid_to"] == "2027-03-31" and row["valid_from"] >= "2026-04-01"
    assert {"54", "21"} <= laws


def test_assistance_rows_per_office_with_not_delegated_recipients(tmp_path: Path) -> None:
    rows = list(pop.assistance_rows(300, seed=2, today=TODAY))
    offices = {o.code: o.payer_number for o in pop.welfare_offices()}
    assert {r["office_code"] for r in rows} == set(offices)
    assert all(offices[str(r["office_code"])] == r["payer_number"] for r in rows)
    months: dict[object, set[object]] = {}
    for r in rows:
        months.setdefault(r["recipient_number"], set()).add(r["month"])
    late = [m for m in months.values() if "2026-11" not in m]
    assert 10 < len(late) < 60 and all(m == {"2026-09", "2026-10"} for m in late)  # 未委託 this month
    path = tmp_path / "a.ndjson"
    pop.write_ndjson(path, rows)
    checked, problems = check_file("assistance", path, "ndjson")
    assert problems == [] and checked == len(rows)


def test_gaiji_rate_writes_names_and_addresses_outside_jis_x0208_that_upload_warns_about(tmp_path: Path) -> None:
    today = dt.date(2026, 11, 28)
    off = pop.generate_population(300, seed=5, today=today)
    assert not any(p.address and pop.GAIJI_ADDRESS_MARK in p.address for p in off.people)  # off by default
    on = pop.generate_population(300, seed=5, today=today, config=pop.PopulationConfig(gaiji_rate=0.2))
    path = tmp_path / "e.csv"
    pop.write_eligibility_csv(path, on.people)
    checked = list(check_rows(FileReader("eligibility", [path.read_bytes()])))
    assert all(c.record is not None for c in checked)  # warnings, never rejects
    fields = {w.field for c in checked for w in c.warnings}
    assert fields == {"name", "address"}
    assert {w.code for c in checked for w in c.warnings} == {"outside_jis_x0208"}
    assert any("U+FA11" in w.message for c in checked for w in c.warnings)
