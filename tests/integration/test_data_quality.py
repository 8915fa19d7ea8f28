"""Names outside JIS X 0208 (外字, 旧字): warned at upload per line and field, counted, stored as
sent on both backends (docs/uploads.md, Characters outside JIS X 0208)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from shikaku_server.eligibility.models import EligibilityPeriod
from tests.conftest import auth
from tests.factories import INSURER_A, eligibility_csv, person

# line 2: はしご高 (IBM extension), line 3: たつさき U+FA11 in the name and a private-use 外字 in
# the address, line 4: つちよし U+20BB7 (outside the BMP) in the name, line 5: all JIS X 0208
ODD = [
    person(number="1", name="髙橋 一郎", name_kana="タカハシ イチロウ"),
    person(number="2", name="山﨑 花子", address="東京都千代田区\ue000町1-1"),
    person(number="3", name="𠮷田 次郎"),
    person(number="4", name="高橋 三郎"),
]


def upload(client: TestClient, token: str, body: bytes) -> dict[str, Any]:
    r = client.post("/v1/uploads?kind=eligibility", content=body, headers={**auth(token), "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def query(client: TestClient, token: str, number: str) -> dict[str, Any]:
    payload = {"insurer_number": INSURER_A, "symbol": "123", "number": number, "branch": "00",
               "birth_date": "1980-04-01", "as_of": "2025-01-01"}
    r = client.post("/v1/eligibility/by-number", json=payload, headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_names_outside_jis_x0208_are_warned_per_line_and_field_and_still_accepted(
    client: TestClient, tokens: dict[str, str]
) -> None:
    out = upload(client, tokens["insurer"], eligibility_csv(ODD))
    assert (out["accepted"], out["rejected"], out["errors"]) == (4, 0, [])
    where = [(w["line"], w["field"], w["code"]) for w in out["warnings"]]
    assert where == [
        (2, "name", "outside_jis_x0208"),
        (3, "name", "outside_jis_x0208"),
        (3, "address", "outside_jis_x0208"),
        (4, "name", "outside_jis_x0208"),
    ]
    assert out["warning_count"] == 4
    messages = [w["message"] for w in out["warnings"]]
    assert "U+9AD9 髙" in messages[0]
    assert "U+FA11 﨑" in messages[1]
    assert "U+E000 (私用領域の外字)" in messages[2]
    assert "U+20BB7 𠮷" in messages[3]


def test_names_outside_jis_x0208_are_stored_and_answered_as_sent(
    client: TestClient, tokens: dict[str, str], session_factory: Any
) -> None:
    # sent as CP932 (what Windows spreadsheets write) too: 髙 and 﨑 decode to the same code points
    upload(client, tokens["insurer"], eligibility_csv(ODD[:2], encoding="cp932"))
    upload(client, tokens["insurer"], eligibility_csv(ODD[2:3]))  # 𠮷 has no CP932 code: UTF-8
    assert query(client, tokens["reception"], "1")["insured"]["name"] == "髙橋 一郎"
    second = query(client, tokens["reception"], "2")["insured"]
    assert (second["name"], second["address"]) == ("山﨑 花子", "東京都千代田区\ue000町1-1")
    assert query(client, tokens["reception"], "3")["insured"]["name"] == "𠮷田 次郎"
    with session_factory() as session:
        stored = set(session.execute(select(EligibilityPeriod.name, EligibilityPeriod.address)).all())
    assert stored == {("髙橋 一郎", "東京都千代田区霞が関1-2-2"), ("山﨑 花子", "東京都千代田区\ue000町1-1"),
                      ("𠮷田 次郎", "東京都千代田区霞が関1-2-2")}
