"""By-number eligibility and insurer uploads through the HTTP API, on both backends."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import auth
from tests.factories import INSURER_A, INSURER_B, change, eligibility_csv, person


def upload(
    client: TestClient, token: str, body: bytes, kind: str = "eligibility", content_type: str = "text/csv"
) -> dict[str, Any]:
    r = client.post(f"/v1/uploads?kind={kind}", content=body, headers={**auth(token), "Content-Type": content_type})
    assert r.status_code == 200, r.text
    return dict(r.json())


def query(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    payload = {
        "insurer_number": INSURER_A,
        "symbol": "123",
        "number": "4567",
        "branch": "00",
        "birth_date": "1980-04-01",
    } | body
    r = client.post("/v1/eligibility/by-number", json=payload, headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_added_person_is_valid_with_full_width_symbol_normalised(client: TestClient, tokens: dict[str, str]) -> None:
    out = upload(client, tokens["insurer"], eligibility_csv([person()]))
    assert (out["accepted"], out["rejected"], out["duplicate"]) == (1, 0, False)
    result = query(client, tokens["reception"], as_of="2025-01-01")
    assert result["validity"] == 1
    assert result["processing"]["status"] == "ok"
    assert result["query_kind"] == "number"
    insured = result["insured"]
    assert insured["name"] == "山田 太郎"
    assert insured["symbol"] == "１２３"  # stored as the insurer sent it
    assert insured["copay_ratio"] == 30
    assert insured["sex"] == "1" and insured["card_classification"] == "01"
    assert insured["insurer_name"] == "全国健康保険協会 東京支部"
    assert result["visit_id"] is None


def test_wrong_birth_date_answers_none_and_discloses_nothing(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    result = query(client, tokens["reception"], birth_date="1980-04-02", as_of="2025-01-01")
    assert result["validity"] == 4
    assert result["insured"] is None


def test_change_of_copay_keeps_history(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    out = upload(client, tokens["insurer"], eligibility_csv([change(valid_from="2025-08-01", copay_ratio="20")]))
    assert out["accepted"] == 1, out
    assert query(client, tokens["reception"], as_of="2025-07-31")["insured"]["copay_ratio"] == 30
    after = query(client, tokens["reception"], as_of="2025-08-01")
    assert after["insured"]["copay_ratio"] == 20
    assert after["insured"]["name"] == "山田 太郎"  # carried over


def test_loss_makes_later_queries_invalid_with_reason(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    upload(
        client, tokens["insurer"], eligibility_csv([person(action="loss", valid_to="2025-03-31", reason_of_loss="03")])
    )
    assert query(client, tokens["reception"], as_of="2025-03-31")["validity"] == 1
    lost = query(client, tokens["reception"], as_of="2025-04-01")
    assert lost["validity"] == 2
    assert lost["insured"]["reason_of_loss"] == "03"
    assert lost["insured"]["valid_to"] == "2025-03-31"


def test_newer_eligibility_elsewhere_answers_3(client: TestClient, tokens: dict[str, str]) -> None:
    upload(
        client,
        tokens["insurer"],
        eligibility_csv(
            [
                person(),
                person(action="loss", valid_to="2025-03-31", reason_of_loss="03"),
            ]
        ),
    )
    upload(
        client,
        tokens["insurer_b"],
        eligibility_csv(
            [
                person(insurer_number=INSURER_B, symbol="77", number="1", valid_from="2025-04-01"),
            ]
        ),
    )
    assert query(client, tokens["reception"], as_of="2025-05-01")["validity"] == 3


def test_no_branch_with_two_matching_family_members_is_multiple(client: TestClient, tokens: dict[str, str]) -> None:
    twins = [
        person(branch="01", name="山田 一郎", birth_date="2010-05-05", personal_family="2"),
        person(branch="02", name="山田 二郎", birth_date="2010-05-05", personal_family="2"),
    ]
    upload(client, tokens["insurer"], eligibility_csv([person(), *twins]))
    result = query(client, tokens["reception"], branch=None, birth_date="2010-05-05", as_of="2025-01-01")
    assert result["validity"] == 5 and result["insured"] is None
    single = query(client, tokens["reception"], branch=None, as_of="2025-01-01")
    assert single["validity"] == 1 and single["insured"]["branch"] == "00"


def test_reupload_of_same_file_is_a_duplicate(client: TestClient, tokens: dict[str, str]) -> None:
    body = eligibility_csv([person(), person(branch="01", name="山田 花子", sex="2", personal_family="2")])
    first = upload(client, tokens["insurer"], body)
    again = upload(client, tokens["insurer"], body)
    assert first["accepted"] == 2
    assert again["duplicate"] is True and again["accepted"] == 0
    # the same records in a different file change nothing either
    reordered = eligibility_csv([person(branch="01", name="山田 花子", sex="2", personal_family="2"), person()])
    third = upload(client, tokens["insurer"], reordered)
    assert (third["accepted"], third["unchanged"], third["duplicate"]) == (0, 2, False)


def test_bad_rows_rejected_with_lines_good_rows_loaded(client: TestClient, tokens: dict[str, str]) -> None:
    rows = [
        person(),
        person(branch="1"),
        person(branch="02", sex="9"),
        person(branch="03", valid_from="2024-04-01", valid_to="2024-01-01"),
        person(branch="04", insurer_number="01130010"),
        person(branch="05", address="東京都 123456789018"),
        person(branch="06", name="山田 六郎"),
    ]
    out = upload(client, tokens["insurer"], eligibility_csv(rows))
    assert out["accepted"] == 2 and out["rejected"] == 5
    by_line = {(e["line"], e["field"]): e["code"] for e in out["errors"]}
    assert by_line[(3, "branch")] == "invalid_format"
    assert by_line[(4, "sex")] == "invalid_code"
    assert by_line[(5, "valid_to")] == "date_order"
    assert by_line[(6, "insurer_number")] in ("check_digit", "insurer_not_permitted")
    assert by_line[(7, "address")] == "my_number_detected"
    assert query(client, tokens["reception"], branch="06", as_of="2025-01-01")["validity"] == 1


def test_my_number_column_refuses_the_whole_file(client: TestClient, tokens: dict[str, str]) -> None:
    body = eligibility_csv([person()]).replace(b"reason_of_loss", b"reason_of_loss,my_number", 1)
    body = body.replace(b"\n", b",\n").replace(b"reason_of_loss,my_number,", b"reason_of_loss,my_number")
    r = client.post(
        "/v1/uploads?kind=eligibility", content=body, headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "my_number_detected"
    assert query(client, tokens["reception"], as_of="2025-01-01")["validity"] == 4


def test_token_of_one_insurer_cannot_write_another(client: TestClient, tokens: dict[str, str]) -> None:
    out = upload(client, tokens["insurer_b"], eligibility_csv([person()]))
    assert out["accepted"] == 0
    assert out["errors"][0]["code"] == "insurer_not_permitted"


def test_cp932_and_bom_files(client: TestClient, tokens: dict[str, str]) -> None:
    rows = [person(name_kana="ﾔﾏﾀﾞ ﾀﾛｳ")]
    upload(client, tokens["insurer"], eligibility_csv(rows, encoding="cp932"))
    assert query(client, tokens["reception"], as_of="2025-01-01")["insured"]["name_kana"] == "ヤマダ タロウ"
    out = upload(client, tokens["insurer"], b"\xef\xbb\xbf" + eligibility_csv([person(branch="01")]))
    assert out["accepted"] == 1


def test_rare_characters_survive(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person(name="𠮷田 髙志\U000e0100")]))
    assert query(client, tokens["reception"], as_of="2025-01-01")["insured"]["name"] == "𠮷田 髙志\U000e0100"


def test_cache_never_stale_after_upload_commits(client: TestClient, tokens: dict[str, str]) -> None:
    upload(client, tokens["insurer"], eligibility_csv([person()]))
    assert query(client, tokens["reception"], as_of="2025-06-01")["insured"]["copay_ratio"] == 30  # now cached
    upload(
        client, tokens["insurer"], eligibility_csv([person(action="change", valid_from="2025-01-01", copay_ratio="10")])
    )
    assert query(client, tokens["reception"], as_of="2025-06-01")["insured"]["copay_ratio"] == 10


def test_resend_announced_by_digest_is_answered_without_applying(client: TestClient, tokens: dict[str, str]) -> None:
    import hashlib

    body = eligibility_csv([person()])
    digest = hashlib.sha256(body).hexdigest()
    headers = {**auth(tokens["insurer"]), "Content-Type": "text/csv", "X-Content-SHA256": digest}
    first = client.post("/v1/uploads?kind=eligibility", content=body, headers=headers).json()
    assert first["accepted"] == 1 and first["duplicate"] is False
    again = client.post("/v1/uploads?kind=eligibility", content=body, headers=headers).json()
    assert again["duplicate"] is True and again["upload_id"] == first["upload_id"]
    # a digest that does not match the body: refused, nothing applied
    other = eligibility_csv([person(branch="01", name="山田 花子", sex="2", personal_family="2")])
    r = client.post("/v1/uploads?kind=eligibility", content=other, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "digest_mismatch"
    wrong = {**headers, "X-Content-SHA256": "0" * 64}
    r = client.post("/v1/uploads?kind=eligibility", content=other, headers=wrong)
    assert r.status_code == 422 and r.json()["code"] == "digest_mismatch"
    assert query(client, tokens["reception"], branch="01", as_of="2025-01-01")["validity"] == 4
