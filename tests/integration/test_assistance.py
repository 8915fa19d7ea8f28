"""医療扶助 (upload kind ``assistance``, ``POST /v1/assistance/by-number``) and 公費負担医療 (upload
kind ``public_expense``, ``public_expenses`` in the eligibility result) on both backends: uploads
with their rejects and re-sends, the token scopes, the statuses (valid, ended, 未委託, not found),
the access log, and the 限度額 consent gating of 公費 in the eligibility answer."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from click.testing import CliRunner
from fastapi.testclient import TestClient

from schemas.identifiers import luhn_check_digit
from schemas.insurer_files import (
    ASSISTANCE_COLUMNS,
    ASSISTANCE_OPTIONAL,
    PUBLIC_EXPENSE_COLUMNS,
    PUBLIC_EXPENSE_OPTIONAL,
)
from shikaku_server.admin import cli
from shikaku_server.assistance.service import month_day, reads_of
from shikaku_server.auth.service import add_payer, add_welfare_office
from shikaku_server.database import transaction
from tests.conftest import FACILITY_CODE, PHARMACY_CODE, auth
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person
from tests.integration.test_eligibility_api import query, upload
from tests.integration.test_tokens import admin as admin_cli  # noqa: F401  # test_tokens' CLI fixture
from tests.integration.test_tokens import rows, run

OFFICE, OTHER_OFFICE = "131016", "131024"
PAYER = "1213" + "001" + str(luhn_check_digit("1213001"))  # 生活保護, 東京都, 実施機関 001
NANBYO = "5413" + "001" + str(luhn_check_digit("5413001"))  # 難病 (法別 54)
SHOUMAN = "5213" + "001" + str(luhn_check_digit("5213001"))  # 小児慢性 (法別 52)


def recipient(six: str) -> str:
    return six + str(luhn_check_digit(six))


R1, R2 = recipient("100001"), recipient("100002")


def ticket(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "office_code": OFFICE,
        "payer_number": PAYER,
        "recipient_number": R1,
        "name": "保護 花子",
        "name_kana": "ﾎｺﾞ ﾊﾅｺ",
        "birth_date": "1950-05-05",
        "sex": "2",
        "month": "2026-10",
        "ticket_kind": "1",
        "facility_code": FACILITY_CODE,
        "valid_from": "2026-10-01",
        "valid_to": "2026-10-31",
        "self_pay": "",
    }
    row.update(over)
    return row


def tickets_csv(rows: list[dict[str, Any]]) -> bytes:
    return csv_bytes([*ASSISTANCE_COLUMNS, *ASSISTANCE_OPTIONAL], rows)


def ask(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    payload = {"payer_number": PAYER, "recipient_number": R1, "as_of": "2026-10-15"} | body
    r = client.post("/v1/assistance/by-number", json=payload, headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def welfare_tokens(session_factory: Any) -> tuple[str, str]:
    with transaction(session_factory) as s:
        return add_welfare_office(s, office_code=OFFICE), add_welfare_office(s, office_code=OTHER_OFFICE)


def test_assistance_upload_rejects_and_resend(client: TestClient, session_factory: Any, tokens: dict[str, str]) -> None:
    own, _ = welfare_tokens(session_factory)
    body = tickets_csv([
        ticket(),
        ticket(ticket_kind="2", facility_code=PHARMACY_CODE, self_pay="1200"),
        ticket(office_code=OTHER_OFFICE, recipient_number=R2),  # another office's record
        ticket(recipient_number=R1[:6] + str((int(R1[6]) + 1) % 10)),  # wrong check digit
        ticket(payer_number=NANBYO),  # not 医療扶助
        ticket(valid_from="2026-09-30"),  # outside the month
    ])
    out = upload(client, own, body, kind="assistance")
    assert (out["accepted"], out["rejected"], out["unchanged"], out["duplicate"]) == (2, 4, 0, False)
    assert [(e["line"], e["field"], e["code"]) for e in out["errors"]] == [
        (4, "office_code", "insurer_not_permitted"),
        (5, "recipient_number", "check_digit"),
        (6, "payer_number", "invalid_code"),
        (7, "valid_from", "out_of_range"),
    ]
    again = upload(client, own, body, kind="assistance")
    assert again["duplicate"] is True and again["accepted"] == 0
    # the same tickets in another file: unchanged; one with a shortened end (廃止): accepted
    other = tickets_csv([ticket(name="保護 花子"), ticket(valid_to="2026-10-20")])
    out = upload(client, own, other, kind="assistance")
    assert (out["accepted"], out["unchanged"]) == (1, 1)


def test_assistance_token_scope(client: TestClient, session_factory: Any, tokens: dict[str, str]) -> None:
    own, other = welfare_tokens(session_factory)
    body = tickets_csv([ticket()])
    for token in (tokens["reception"], tokens["insurer"]):
        headers = {**auth(token), "Content-Type": "text/csv"}
        r = client.post("/v1/uploads?kind=assistance", content=body, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = client.post("/v1/uploads?kind=eligibility", content=eligibility_csv([person()]),
                    headers={**auth(own), "Content-Type": "text/csv"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = client.post("/v1/assistance/by-number", json={"payer_number": PAYER, "recipient_number": R1},
                    headers=auth(own))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    upload(client, own, body, kind="assistance")
    # another office may not overwrite this office's recipient (same payer and recipient number)
    body = tickets_csv([ticket(office_code=OTHER_OFFICE, valid_to="2026-10-10")])
    out = upload(client, other, body, kind="assistance")
    assert out["accepted"] == 0 and out["errors"][0]["code"] == "insurer_not_permitted"
    assert ask(client, tokens["reception"])["tickets"][0]["valid_to"] == "2026-10-31"


def test_assistance_statuses_and_access_log(client: TestClient, session_factory: Any, tokens: dict[str, str]) -> None:
    own, _ = welfare_tokens(session_factory)
    upload(client, own, tickets_csv([
        ticket(month="2026-09", valid_from="2026-09-01", valid_to="2026-09-30"),
        ticket(),
        ticket(ticket_kind="2", facility_code=PHARMACY_CODE, self_pay="1200"),
        ticket(recipient_number=R2, month="2026-09", valid_from="2026-09-01", valid_to="2026-09-30"),
        ticket(recipient_number=R2, month="2026-10", valid_from="2026-10-01", valid_to="2026-10-10",
               name="保護 次郎", sex="1"),
    ]), kind="assistance")
    clinic, pharmacy = tokens["reception"], tokens["pharmacist"]
    valid = ask(client, clinic, birth_date="1950-05-05")
    assert (valid["status"], valid["validity"]) == ("valid", 1)
    assert valid["recipient"]["name"] == "保護 花子" and valid["recipient"]["name_kana"] == "ホゴ ハナコ"
    shown = [(t["ticket_kind"], t["month"], t["facility_code"]) for t in valid["tickets"]]
    assert shown == [("1", "2026-10", FACILITY_CODE)]
    assert ask(client, pharmacy)["tickets"][0] == {
        "ticket_kind": "2", "month": "2026-10", "facility_code": PHARMACY_CODE,
        "valid_from": "2026-10-01", "valid_to": "2026-10-31", "self_pay": 1200,
    }
    # November: the office has not loaded this month's tickets yet: 未委託
    late = ask(client, clinic, as_of="2026-11-02")
    assert (late["status"], late["validity"]) == ("not_delegated", 6)  # 有効（未登録）
    assert late["tickets"] == [] and late["recipient"]["recipient_number"] == R1
    # R2's October ticket ended on the 10th
    ended = ask(client, clinic, recipient_number=R2)
    assert (ended["status"], ended["validity"]) == ("ended", 2) and ended["tickets"][0]["valid_to"] == "2026-10-10"
    # R2 has no ticket for the pharmacy this month: 未委託 there
    assert ask(client, pharmacy, recipient_number=R2)["status"] == "not_delegated"
    nobody = ask(client, clinic, recipient_number=recipient("999999"))
    assert nobody == {"status": "not_found", "validity": 4, "as_of": "2026-10-15", "recipient": None, "tickets": []}
    wrong = ask(client, clinic, birth_date="1950-05-06")
    assert wrong["status"] == "not_found" and wrong["recipient"] is None
    with session_factory() as s:
        log = reads_of(s, PAYER, R1)
    assert [(e["facility_code"], e["what"], e["status"]) for e in reversed(log)] == [
        (FACILITY_CODE, "assistance", "valid"),
        (PHARMACY_CODE, "assistance", "valid"),
        (FACILITY_CODE, "assistance", "not_delegated"),
        (FACILITY_CODE, "assistance_no_match", "not_found"),
    ]


def test_assistance_by_month_lists_this_facilitys_recipients(
    client: TestClient, session_factory: Any, tokens: dict[str, str]
) -> None:
    own, _ = welfare_tokens(session_factory)
    upload(client, own, tickets_csv([
        ticket(),
        ticket(ticket_kind="2", facility_code=PHARMACY_CODE),
        ticket(recipient_number=R2, valid_to="2026-10-10", name="保護 次郎", sex="1"),
        ticket(recipient_number=recipient("100003"), facility_code=PHARMACY_CODE, ticket_kind="2"),
    ]), kind="assistance")
    r = client.post("/v1/assistance/by-month", json={"month": "2026-10"}, headers=auth(tokens["reception"]))
    assert r.status_code == 200, r.text
    month = r.json()
    assert (month["month"], month["as_of"]) == ("2026-10", "2026-10-31")  # an earlier month: its last day
    assert [(a["recipient"]["recipient_number"], a["status"], a["validity"]) for a in month["results"]] == [
        (R1, "valid", 1), (R2, "ended", 2),  # the pharmacy's recipient is not the clinic's
    ]
    assert [t["facility_code"] for t in month["results"][0]["tickets"]] == [FACILITY_CODE]
    with session_factory() as s:
        assert [(e["what"], e["status"]) for e in reads_of(s, PAYER, R2)] == [("assistance", "ended")]
    empty = client.post("/v1/assistance/by-month", json={"month": "2026-08"}, headers=auth(tokens["reception"]))
    assert empty.status_code == 200 and empty.json()["results"] == []
    bad = client.post("/v1/assistance/by-month", json={"month": "2026-13"}, headers=auth(tokens["reception"]))
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    r = client.post("/v1/assistance/by-month", json={"month": "2026-10"}, headers=auth(own))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"


def test_month_day() -> None:
    today = dt.date(2026, 10, 15)
    assert month_day(dt.date(2026, 10, 1), today) == today
    assert month_day(dt.date(2026, 11, 1), today) == dt.date(2026, 11, 1)
    assert month_day(dt.date(2026, 2, 1), today) == dt.date(2026, 2, 28)


def certificate(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "payer_number": NANBYO,
        "recipient_number": R1,
        "insurer_number": INSURER_A,
        "symbol": "１２３",
        "number": "４５６７",
        "branch": "00",
        "valid_from": "2026-04-01",
        "valid_to": "2027-03-31",
        "monthly_cap": "10000",
    }
    row.update(over)
    return row


def certificates_csv(rows: list[dict[str, Any]]) -> bytes:
    return csv_bytes([*PUBLIC_EXPENSE_COLUMNS, *PUBLIC_EXPENSE_OPTIONAL], rows)


def test_public_expense_in_the_answer_only_with_consent(
    client: TestClient, session_factory: Any, tokens: dict[str, str]
) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    with transaction(session_factory) as s:
        payer = add_payer(s, numbers=[NANBYO])
    clinic = tokens["reception"]
    before = query(client, clinic, as_of="2026-10-15", include_limit_certificate=True)
    assert before["public_expenses"] == []  # cached now (Redis on PostgreSQL)
    out = upload(client, payer, certificates_csv([
        certificate(),
        certificate(valid_from="2025-04-01", valid_to="2026-03-31", monthly_cap="5000"),  # ended
        certificate(payer_number=SHOUMAN),  # not this token's 公費負担者番号
        certificate(number="９９９９"),  # nobody
        certificate(monthly_cap="-1"),
    ]), kind="public_expense")
    assert (out["accepted"], out["rejected"]) == (2, 3)
    assert [(e["line"], e["field"], e["code"]) for e in out["errors"]] == [
        (4, "payer_number", "insurer_not_permitted"),
        (6, "monthly_cap", "out_of_range"),
        (5, "number", "unknown_person"),  # found when the batch is applied, after the row checks
    ]
    shared = query(client, clinic, as_of="2026-10-15", include_limit_certificate=True)
    assert shared["public_expenses"] == [{
        "payer_number": NANBYO, "recipient_number": R1, "monthly_cap": 10000,
        "valid_from": "2026-04-01", "valid_to": "2027-03-31",
    }]
    assert query(client, clinic, as_of="2026-10-15")["public_expenses"] == []  # no consent: not shown
    assert query(client, clinic, as_of="2025-10-15", include_limit_certificate=True)["public_expenses"][0][
        "monthly_cap"] == 5000
    # a payer token cannot upload eligibility, an insurer token cannot upload public_expense
    r = client.post("/v1/uploads?kind=public_expense", content=certificates_csv([certificate()]),
                    headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"


def test_assistance_encodings_and_a_refused_file(
    client: TestClient, session_factory: Any, tokens: dict[str, str]
) -> None:
    own, _ = welfare_tokens(session_factory)
    sjis = tickets_csv([ticket(name="髙橋 花子")]).decode().encode("cp932")
    out = upload(client, own, sjis, kind="assistance")
    assert out["accepted"] == 1
    ndjson = json.dumps(ticket(recipient_number=R2, self_pay=1500), ensure_ascii=False).encode() + b"\n"
    assert upload(client, own, ndjson, kind="assistance", content_type="application/x-ndjson")["accepted"] == 1
    assert ask(client, tokens["reception"])["recipient"]["name"] == "髙橋 花子"
    assert ask(client, tokens["reception"], recipient_number=R2)["tickets"][0]["self_pay"] == 1500
    # a file without a required column is refused whole: nothing of it is applied
    columns = [c for c in ASSISTANCE_COLUMNS if c != "facility_code"]
    body = csv_bytes(columns, [ticket(recipient_number=recipient("200002"))])
    r = client.post("/v1/uploads?kind=assistance", content=body, headers={**auth(own), "Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert ask(client, tokens["reception"], recipient_number=recipient("200002"))["status"] == "not_found"


def test_admin_issues_welfare_and_payer_tokens(
    admin_cli: CliRunner,  # noqa: F811  # the fixture imported above
    client: TestClient,
    tokens: dict[str, str],
) -> None:
    admin = admin_cli
    welfare = run(admin, "welfare", "add", OFFICE).strip()
    payer = run(admin, "payer", "add", "--number", NANBYO).strip()
    assert welfare.startswith("shk_wel_") and payer.startswith("shk_pay_")
    assert upload(client, welfare, tickets_csv([ticket()]), kind="assistance")["accepted"] == 1
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    assert upload(client, payer, certificates_csv([certificate()]), kind="public_expense")["accepted"] == 1
    listed = {(r[1], r[2]) for r in rows(admin)}
    assert {("welfare", OFFICE), ("payer", NANBYO)} <= listed
    refused = (
        ("welfare", "add", "13101"), ("payer", "add", "--number", PAYER), ("payer", "add", "--number", "54130019")
    )
    for args in refused:  # a 5-digit office, 医療扶助's 法別 12 as a payer, a wrong check digit
        assert admin.invoke(cli, list(args)).exit_code != 0
