"""Hostile input through the API (both backends): a My Number in any field, key or column is
refused with ``my_number_detected`` and never echoed or stored; bad bytes (NUL, lone surrogates,
deep nesting, over-long lines) are 422s or per-line rejects, never 500s; upload counts add up.
At the end the whole database (every text column of every table) and every captured log line
are scanned for a valid My Number."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from schemas.identifiers import my_number_in
from schemas.insurer_files import ELIGIBILITY_COLUMNS, MAX_LINE
from shikaku_server.logging_setup import JsonFormatter
from tests.conftest import auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person

MY_NUMBER = "123456789018"
ARABIC = "".join(chr(0x0660 + int(d)) for d in MY_NUMBER)
FORMS = [MY_NUMBER, "1234.5678.9018", "1234/5678/9018", "1234|5678|9018", "1234 5678 9018", ARABIC,
         "１２３４－５６７８－９０１８"]
QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}
FACTS = {"name": "山田 太郎", "birth_date": "1980-04-01", "sex": "1", "address": "東京都千代田区霞が関1-2-2"}
REGISTRATION = {"challenge_id": "c", "certificate": "AA==", "signature": "AA==", "basic_facts": FACTS}
MED_COLUMNS = ["insurer_number", "symbol", "number", "branch", "dispensed_on", "facility_code", "drug_code",
               "drug_name", "quantity", "unit", "days"]
MED = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "dispensed_on": "2025-01-10",
       "facility_code": "1312345679", "drug_code": "620000001", "drug_name": "ロキソニン錠60mg", "quantity": "3",
       "unit": "錠", "days": "5"}
CHK_COLUMNS = ["insurer_number", "symbol", "number", "branch", "checked_on", "hba1c", "systolic", "urine_protein"]
CHK = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "checked_on": "2025-04-01",
       "hba1c": "5.6", "systolic": "128", "urine_protein": "-"}


def with_field(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**base, key: value}


def hostile_bodies() -> list[tuple[str, dict[str, Any]]]:
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i, key in enumerate([*QUERY, "as_of", "include_limit_certificate"]):
        bodies.append(("/v1/eligibility/by-number", with_field(QUERY, key, FORMS[i % len(FORMS)])))
    bodies.append(("/v1/eligibility/by-number", with_field(QUERY, "insurer_number", int(MY_NUMBER))))
    bodies.append(("/v1/eligibility/by-number", with_field(QUERY, MY_NUMBER, "1")))  # as a key
    bodies.append(("/v1/eligibility/by-number", with_field(QUERY, "１２３４５６７８９０１８", "1")))
    bodies.append(("/v1/eligibility/batches", {"queries": [QUERY], "label": MY_NUMBER}))
    bodies.append(("/v1/eligibility/batches", {"queries": [QUERY], "label": "1234.5678.9018"}))
    bodies.append(("/v1/eligibility/batches", {"queries": [QUERY, with_field(QUERY, "symbol", ARABIC)]}))
    bodies.append(("/v1/consents", {"visit_id": MY_NUMBER, "drug": True}))
    for key in FACTS:
        facts = with_field(FACTS, key, "123456|789018")
        bodies.append(("/v1/card/registrations", {**REGISTRATION, "basic_facts": facts}))
    bodies.append(("/v1/card/registrations", {**REGISTRATION, "basic_facts": with_field(FACTS, MY_NUMBER, 1)}))
    bodies.append(("/v1/eligibility/by-card", {"challenge_id": MY_NUMBER, "certificate": "AA==", "auth_method": "pin"}))
    bodies.append(("/v1/me/access-log", {"challenge_id": "1234 5678 9018", "certificate": "AA==", "signature": "AA=="}))
    return bodies


TOKEN_FOR = {"/v1/consents": "reception", "/v1/me/access-log": None}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_my_number_anywhere(session_factory: Any, logs: pytest.LogCaptureFixture) -> None:
    """Every text column of every table, and every captured log line (formatted as the server
    writes it, and with its raw message and arguments)."""
    formatter = JsonFormatter()
    for record in logs.records:
        line = formatter.format(record) + " " + str(record.msg) + " " + repr(record.args)
        assert not my_number_in(line), line
    with session_factory() as s:
        engine = s.get_bind()
        inspector = sa.inspect(engine)
        scanned = 0
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                kind = str(column["type"]).upper()
                if not any(t in kind for t in ("CHAR", "TEXT", "JSON", "CLOB")):
                    continue
                name = engine.dialect.identifier_preparer.quote(column["name"])
                for (value,) in s.execute(sa.text(f"SELECT {name} FROM {table}")):  # names from the schema
                    scanned += 1
                    if value is not None:
                        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                        assert not my_number_in(text), (table, column["name"])
        assert scanned > 0


def upload(client: TestClient, token: str, body: bytes, kind: str = "eligibility", ctype: str = "text/csv") -> Any:
    r = client.post(f"/v1/uploads?kind={kind}", content=body, headers={**auth(token), "Content-Type": ctype})
    assert r.status_code == 200, r.text
    for value in FORMS:
        assert value not in r.text
    assert not my_number_in(r.text)
    return r.json()


def test_hostile_requests_are_refused_and_nothing_keeps_a_my_number(
    client: TestClient, tokens: dict[str, str], session_factory: Any, logs: pytest.LogCaptureFixture
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person(symbol="123", number="4567")]))
    for path, body in hostile_bodies():
        role = TOKEN_FOR.get(path, "reception")
        headers = auth(tokens[role]) if role else {}
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["code"] == "my_number_detected", (path, r.text)
        assert not my_number_in(r.text), (path, r.text)
        assert "1234" not in r.text and ARABIC[:4] not in r.text, (path, r.text)
    # the same values in every column of every kind of upload
    rows = []
    for i, column in enumerate(ELIGIBILITY_COLUMNS):
        rows.append(person(**{"number": str(100 + i), column: FORMS[i % len(FORMS)]}))
    out = upload(client, tokens["insurer"], eligibility_csv(rows))
    assert (out["accepted"], out["rejected"]) == (0, len(rows))
    assert {(e["line"], e["field"], e["code"]) for e in out["errors"]} >= {
        (i + 2, c, "my_number_detected") for i, c in enumerate(ELIGIBILITY_COLUMNS)
    }
    meds = [with_field(MED, c, FORMS[i % len(FORMS)]) for i, c in enumerate(MED_COLUMNS)]
    out = upload(client, tokens["insurer"], csv_bytes(MED_COLUMNS, meds), kind="medications")
    assert out["rejected"] == len(meds) and all(e["code"] == "my_number_detected" for e in out["errors"])
    checks = [with_field(CHK, c, FORMS[i % len(FORMS)]) for i, c in enumerate(CHK_COLUMNS)]
    out = upload(client, tokens["insurer"], csv_bytes(CHK_COLUMNS, checks), kind="checkups")
    assert out["rejected"] == len(checks) and all(e["code"] == "my_number_detected" for e in out["errors"])
    ndjson = "\n".join(
        [json.dumps(person(number="900", name=["123456", "789018"])),
         json.dumps(person(number="901", address={"x": "1234.5678.9018"})),
         json.dumps(person(number="902", post_number=int(MY_NUMBER)))]
    ).encode()
    out = upload(client, tokens["insurer"], ndjson, ctype="application/x-ndjson")
    assert [(e["line"], e["field"], e["code"]) for e in out["errors"]] == [
        (1, "name", "invalid_format"), (2, "address", "invalid_format"), (3, "post_number", "my_number_detected"),
    ]
    r = client.post("/v1/uploads?kind=eligibility", content=(json.dumps(person(**{MY_NUMBER: "1"})) + "\n").encode(),
                    headers={**auth(tokens["insurer"]), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["code"] == "my_number_detected"
    assert not my_number_in(r.text)
    assert_no_my_number_anywhere(session_factory, logs)


def test_nul_bytes_in_requests_are_422_never_500(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["reception"])
    cases = [
        ("/v1/eligibility/by-number", with_field(QUERY, "symbol", "1\x0023")),
        ("/v1/eligibility/by-number", with_field(QUERY, "number", "45\x0067")),
        ("/v1/eligibility/by-number", with_field(QUERY, "number", "45\ud80067")),
        ("/v1/consents", {"visit_id": "a\x00b", "drug": True}),
        ("/v1/card/registrations", {**REGISTRATION, "basic_facts": with_field(FACTS, "name", "山\x00田")}),
        ("/v1/card/registrations", {**REGISTRATION, "basic_facts": with_field(FACTS, "address", "\udc80")}),
        ("/v1/eligibility/batches", {"queries": [QUERY], "label": "lab\x00el"}),
        ("/v1/eligibility/batches", {"queries": [QUERY, with_field(QUERY, "symbol", "\x00")]}),
    ]
    for path, body in cases:
        # json.dumps writes "\u0000" and "\ud800" escapes: the server's JSON parser turns them back
        r = client.post(path, content=json.dumps(body), headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["code"] == "validation_error"
    for path in ("/v1/visits/a%00b/medications", "/v1/visits/a%00b/checkups", "/v1/eligibility/batches/a%00b"):
        r = client.get(path, headers=auth(tokens["physician"]))
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["code"] == "validation_error"
    # nothing was half-created: batches still answer
    r = client.post("/v1/eligibility/batches", json={"queries": [QUERY], "label": "ok"}, headers=h)
    assert r.status_code == 202, r.text


def test_unknown_keys_are_named_safely_in_422(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post("/v1/eligibility/by-number", json=with_field(QUERY, "山田 太郎", "x"),
                    headers=auth(tokens["reception"]))
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    assert "山田" not in r.text and "<key>" in r.text
    r = client.post("/v1/eligibility/by-number", json=with_field(QUERY, "nickname", "x"),
                    headers=auth(tokens["reception"]))
    assert r.status_code == 422 and "nickname" in r.json()["detail"]


def test_bad_bytes_in_uploads_are_per_line_rejects(
    client: TestClient, tokens: dict[str, str], session_factory: Any, logs: pytest.LogCaptureFixture
) -> None:
    good = [person(number=str(n)) for n in range(1, 4)]
    body = eligibility_csv(good).replace("山田 太郎".encode(), "山田\x00太郎".encode(), 1)
    out = upload(client, tokens["insurer"], body)
    assert (out["accepted"], out["rejected"]) == (2, 1)
    assert [(e["line"], e["code"]) for e in out["errors"]] == [(2, "invalid_character")]
    lines = [
        json.dumps(person(number="11")),
        json.dumps(person(number="12", name="山\u0000田")),
        json.dumps(person(number="13")).replace('"13"', '"1\\ud8003"'),
        "[" * 100_000 + "]" * 100_000,
        "{\"a\":" * 10_000 + "1" + "}" * 10_000,
        json.dumps(person(number="14", address="x" * (MAX_LINE + 10))),
        json.dumps(person(number="15")),
    ]
    out = upload(client, tokens["insurer"], ("\n".join(lines) + "\n").encode(), ctype="application/x-ndjson")
    assert (out["accepted"], out["rejected"]) == (2, 5)
    assert [(e["line"], e["code"]) for e in out["errors"]] == [
        (2, "invalid_character"), (3, "invalid_character"), (4, "line_too_long"), (5, "malformed_json"),
        (6, "line_too_long"),
    ]
    with session_factory() as s:
        numbers = {n for (n,) in s.execute(sa.text("SELECT number_norm FROM insured"))}
    assert {"2", "3", "11", "15"} <= numbers and not {"12", "13", "14"} & numbers
    assert_no_my_number_anywhere(session_factory, logs)


def test_a_long_line_is_rejected_and_the_rest_is_loaded(client: TestClient, tokens: dict[str, str]) -> None:
    rows = [person(number="21"), person(number="22", address="丸" * (3 * 1024 * 1024)), person(number="23")]
    out = upload(client, tokens["insurer"], eligibility_csv(rows))
    assert (out["accepted"], out["rejected"]) == (2, 1)
    assert [(e["line"], e["code"]) for e in out["errors"]] == [(3, "line_too_long")]


ADDRESS = FACTS["address"]
MALFORMED = {
    # name: ({line: (old, new)}, rejected lines)
    "stray quote on line 12, junk after a quote on 41": ({12: ("山田", '"山田'), 41: ("add,", '"add"x,')}, {12, 41}),
    "quote never closed, on the last line": ({61: ("山田", '"山田')}, {61}),
    "quote closed lines later, wrong shape": ({20: ("山田", '"山田'), 25: ("太郎", '太"郎,x')}, {20, 25}),
    "a quoted line break in a good record": ({30: (ADDRESS, f'"{ADDRESS[:7]}\n{ADDRESS[7:]}"')}, set()),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_csv_costs_its_own_lines_and_the_counts_add_up(
    client: TestClient, tokens: dict[str, str], case: str
) -> None:
    lines = eligibility_csv([person(number=str(500 + i)) for i in range(60)]).decode().splitlines()
    replaced, rejected = MALFORMED[case]
    for number, (old, new) in replaced.items():
        lines[number - 1] = lines[number - 1].replace(old, new, 1)
    body = ("\n".join(lines) + "\n").encode()
    out = upload(client, tokens["insurer"], body)
    assert out["accepted"] + out["rejected"] + out["unchanged"] == 60, out
    assert {e["line"] for e in out["errors"]} == rejected
    assert out["rejected"] == len(rejected)
    again = upload(client, tokens["insurer"], body + b"\n")  # the same records, other bytes
    assert again["accepted"] + again["rejected"] + again["unchanged"] == 60, again
