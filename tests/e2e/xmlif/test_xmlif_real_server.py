"""The folder interface against the real central server (``create_app``), on both backends.

Uses the suite's ``client`` (a TestClient over the app) and ``tokens`` fixtures; the terminal's
``ServerClient`` speaks to the app through the TestClient's transport.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.schema import validation_errors
from schemas.identifiers import luhn_check_digit
from testbed import xmlif_server as t
from tests.factories import eligibility_csv, person
from tests.folder_terminal import folder_terminal
from tests.integration.test_eligibility_api import upload

KOKUHO = "13805" + str(luhn_check_digit("13805"))  # 6 digits: space-padded on the wire


def _upload(client: TestClient, token: str) -> None:
    row = person(
        insurer_number=KOKUHO,
        symbol="１２－３４",
        number="５６７８",
        branch="01",
        name="𠮷田　花子",
        name_kana="ヨシダ　ハナコ",
        sex="2",
        birth_date="1950-04-01",
        post_number="1008916",
    )
    out = upload(client, token, eligibility_csv([row]))
    assert out["accepted"] == 1, out


def test_folder_requests_against_the_real_server(client: TestClient, tokens: dict[str, str], tmp_path: Path) -> None:
    _upload(client, tokens["insurer"])
    root = tmp_path / "oqs"
    with folder_terminal(
        client, tokens["reception"], root, server_client=ServerClient, encoding="shift_jis"
    ) as (watcher, _):
        req = root / "req"
        search = t.FULL_SEARCH.replace("  138057", f"  {KOKUHO}")
        (req / "OQSsiquc01req_1.xml").write_bytes(t.single(search, "Shift_JIS"))
        (req / "OQSsiquc01req_2.xml").write_bytes(t.single(search.replace("19500401", "19500402")))
        (req / "OQSmuquc01req_1.xml").write_bytes(t.bulk_registration(search, t.SIMPLE_SEARCH))
        assert watcher.scan() == 3

        single = (root / "res" / "OQSsiquc01res_1.xml").read_bytes()
        assert validation_errors("OQSsiquc01res", single) == []
        doc = etree.fromstring(single)
        assert doc.findtext(".//SegmentOfResult") == "1"
        assert doc.findtext(".//QualificationValidity") == "1"
        assert doc.findtext(".//ResultOfQualificationConfirmation/InsurerNumber") == f"  {KOKUHO}"
        name = doc.find(".//ResultOfQualificationConfirmation/Name")
        assert name is not None  # Shift_JIS: the substitute, marked, and the original as sent
        assert (name.text, name.get("{urn:shikaku:xmlif:gaiji}original")) == ("吉田\u3000花子", "𠮷田\u3000花子")
        assert doc.findtext(".//NameKana") == "ﾖｼﾀﾞ ﾊﾅｺ"
        assert b"&#134071;" in single

        wrong_birth = etree.fromstring((root / "res" / "OQSsiquc01res_2.xml").read_bytes())
        assert wrong_birth.findtext(".//QualificationValidity") == "4"
        assert wrong_birth.find(".//ResultOfQualificationConfirmation") is None

        registered = etree.fromstring((root / "res" / "OQSmuquc01res_1.xml").read_bytes())
        assert registered.findtext(".//SegmentOfResult") == "1"
        reception = registered.findtext(".//ReceptionNumber")
        assert reception
        (req / "OQSmuquc02req_1.xml").write_bytes(t.bulk_download(reception))
        assert watcher.scan() == 1
        bulk = (root / "res" / "OQSmuquc02res_1.xml").read_bytes()
        assert validation_errors("OQSmuquc02res", bulk) == []
        units = etree.fromstring(bulk).findall(".//BulkConfirmUnit")
        assert [u.findtext("QualificationValidity") for u in units] == ["1", "4"]
