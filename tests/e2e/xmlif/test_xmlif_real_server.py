"""The folder interface against the real central server (``create_app``), on both backends.

Uses the suite's ``client`` (a TestClient over the app) and ``tokens`` fixtures; the terminal's
``ServerClient`` speaks to the app through the TestClient's transport.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher
from schemas.identifiers import luhn_check_digit
from schemas.insurer_files import ELIGIBILITY_COLUMNS
from testbed import xmlif_server as t

KOKUHO = "13805" + str(luhn_check_digit("13805"))  # 6 digits: space-padded on the wire


def _upload(client: TestClient, token: str) -> None:
    row = {
        "action": "add",
        "insurer_number": KOKUHO,
        "symbol": "１２－３４",
        "number": "５６７８",
        "branch": "01",
        "name": "𠮷田　花子",
        "name_kana": "ヨシダ　ハナコ",
        "sex": "2",
        "birth_date": "1950-04-01",
        "address": "東京都千代田区霞が関1-2-2",
        "post_number": "1008916",
        "personal_family": "1",
        "card_classification": "01",
        "valid_from": "2024-04-01",
        "valid_to": "",
        "copay_ratio": "30",
        "reason_of_loss": "",
    }
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ELIGIBILITY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerow({c: row.get(c, "") for c in ELIGIBILITY_COLUMNS})
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=buf.getvalue().encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1, r.text


def test_folder_requests_against_the_real_server(client: TestClient, tokens: dict[str, str], tmp_path: Path) -> None:
    _upload(client, tokens["insurer"])
    root = tmp_path / "oqs"
    with (
        ServerClient("http://testserver", tokens["reception"], transport=client._transport) as server,
        TerminalState.for_root(root) as state,
    ):
        watcher = FolderWatcher(root, XmlTerminal(server, state), encoding="shift_jis", durable=False)
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
