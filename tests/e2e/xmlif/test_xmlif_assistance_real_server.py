"""The 医療扶助 families of the folder interface against the real server, on both backends, with
tickets from the population generator (``assistance_rows``): a by-number query (``OQSsiquc01req``
with a 公費負担者番号) answered valid with its 医療券, 未委託 (QualificationValidity 6), no match;
the 一括照会 by 診療年月 (``OQSmutic01`` / ``OQSmutic02``); bad request files; each answered once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.watcher import FolderWatcher
from shikaku_server.auth.service import add_welfare_office
from shikaku_server.database import transaction
from shikaku_server.eligibility.service import today_jst
from testbed import xmlif_server as t
from testbed.population import ASSISTANCE_HEADER, assistance_rows, welfare_offices
from tests.conftest import FACILITY_CODE
from tests.factories import csv_bytes
from tests.folder_terminal import folder_terminal
from tests.integration.test_eligibility_api import upload

TODAY = today_jst()
MONTH = TODAY.strftime("%Y%m")
GAIJI = {"name": "𠮷田\u3000一郎", "name_kana": "ヨシダ\u3000イチロウ"}
G = "{urn:shikaku:xmlif:gaiji}"


class Tickets:
    """The generated tickets, every 医療券 designating this clinic; who is what today."""

    def __init__(self) -> None:
        rows: list[dict[str, Any]] = [dict(r) for r in assistance_rows(40, 17, today=TODAY, not_delegated=0.3)]
        for r in rows:
            if r["ticket_kind"] == "1":
                r["facility_code"] = FACILITY_CODE
        this_month = TODAY.strftime("%Y-%m")

        def here(r: dict[str, Any]) -> bool:
            return bool(r["month"] == this_month and r["facility_code"] == FACILITY_CODE)

        people = {(r["payer_number"], r["recipient_number"]): r for r in rows}
        self.valid = [k for k in people if any(
            here(r) and r["valid_from"] <= TODAY.isoformat() <= r["valid_to"]
            for r in rows if (r["payer_number"], r["recipient_number"]) == k)]
        self.late = [k for k in people if not any(
            r["month"] == this_month for r in rows if (r["payer_number"], r["recipient_number"]) == k)]
        self.this_month = sorted({(r["payer_number"], r["recipient_number"]) for r in rows if here(r)})
        assert self.valid and self.late, "the seed gives valid and 未委託 recipients"
        for r in rows:  # the first valid recipient is named with a 外字 (outside the BMP)
            if (r["payer_number"], r["recipient_number"]) == self.valid[0]:
                r.update(GAIJI)
        self.rows = rows
        self.people = people

    def birth(self, key: tuple[str, str]) -> str:
        return str(self.people[key]["birth_date"]).replace("-", "")


def search(payer: str, recipient: str, birth: str) -> str:
    return (
        "<MessageBody><QualificationConfirmSearchInfo>"
        f"<InsurerNumber>{payer}</InsurerNumber>"
        f"<InsuredIdentificationNumber>{recipient}</InsuredIdentificationNumber>"
        f"<Birthdate>{birth}</Birthdate>"
        "<LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg>"
        "</QualificationConfirmSearchInfo></MessageBody>"
    )


HEADER = (
    "<MessageHeader>"
    f"<QualificationConfirmationDate>{TODAY:%Y%m%d}</QualificationConfirmationDate>"
    f"<MedicalInstitutionCode>{FACILITY_CODE}</MedicalInstitutionCode>"
    "<ArbitraryFileIdentifier>A-0001</ArbitraryFileIdentifier>"
    "</MessageHeader>"
)


@pytest.fixture
def tickets(client: TestClient, session_factory: Any) -> Tickets:
    data = Tickets()
    for office in welfare_offices():
        with transaction(session_factory) as s:
            token = add_welfare_office(s, office_code=office.code)
        rows = [r for r in data.rows if r["office_code"] == office.code]
        if rows:
            out = upload(client, token, csv_bytes(list(ASSISTANCE_HEADER), rows), kind="assistance")
            assert (out["accepted"], out["rejected"]) == (len(rows), 0), out
    return data


def ask(watcher: FolderWatcher, root: Path, name: str, body: str, *, header: str = HEADER) -> Any:
    (root / "req" / f"{name}.xml").write_bytes(t.document(body, "Shift_JIS", header=header))
    assert watcher.scan() == 1
    out = f"{name.replace('req_', 'res_')}.xml"
    data = (root / "res" / out).read_bytes()
    declared = "Shift_JIS" if watcher.encoding == "shift_jis" else "UTF-8"
    assert data.startswith(f'<?xml version="1.0" encoding="{declared}" standalone="no"?>'.encode())
    assert validation_errors(out.split("_", 1)[0], data) == []
    return etree.fromstring(data)


def test_assistance_single_and_bulk_against_the_real_server(
    client: TestClient, tokens: dict[str, str], tickets: Tickets, tmp_path: Path
) -> None:
    root = tmp_path / "oqs"
    with folder_terminal(
        client, tokens["reception"], root, server_client=ServerClient, encoding="shift_jis"
    ) as (watcher, state):
        payer, recipient = tickets.valid[0]
        doc = ask(watcher, root, "OQSsiquc01req_a1", search(f"{payer}", recipient, tickets.birth(tickets.valid[0])))
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ReferenceClassification")) == ("1", "2")
        assert doc.findtext(".//QualificationValidity") == "1"
        found = doc.find(".//ResultOfQualificationConfirmation")
        assert found is not None
        assert found.findtext("InsuredCardClassification") == "A1"
        assert (found.findtext("InsurerNumber"), found.findtext("InsuredIdentificationNumber")) == (payer, recipient)
        assert found.find("PersonalFamilyClassification") is None
        name = found.find("Name")
        assert name is not None and (name.text, name.get(f"{G}original")) == ("吉田\u3000一郎", GAIJI["name"])
        assert name.get(f"{G}substituted") == "1" and found.findtext("NameKana") == "ﾖｼﾀﾞ ｲﾁﾛｳ"
        ticket = found.find("PublicExpenseResultList/MedicalTicketInfo")
        assert ticket is not None
        assert ticket.findtext("TicketType") == "1"  # 医療券
        assert ticket.findtext("MedicalTreatmentMonth") == MONTH
        assert ticket.findtext("DesignatedMedicalInstitutionCode") == FACILITY_CODE
        assert ticket.findtext("MedicalTicketValidDate") == f"{MONTH}01"

        # 未委託: known recipient, no ticket of this month for this clinic → 6 有効（未登録）, no tickets
        late = tickets.late[0]
        doc = ask(watcher, root, "OQSsiquc01req_a2", search(*late, tickets.birth(late)))
        assert doc.findtext(".//QualificationValidity") == "6"
        assert doc.findtext(".//ResultOfQualificationConfirmation/InsuredIdentificationNumber") == late[1]
        assert doc.find(".//PublicExpenseResultList") is None

        # no match: a recipient number nobody holds, and a wrong birth date → 4, no result
        doc = ask(watcher, root, "OQSsiquc01req_a3", search(payer, "0000000", "19500101"))
        assert doc.findtext(".//QualificationValidity") == "4" and doc.find(".//ResultList") is None
        doc = ask(watcher, root, "OQSsiquc01req_a4", search(payer, recipient, "19000101"))
        assert doc.findtext(".//QualificationValidity") == "4" and doc.find(".//ResultList") is None

        # the 一括照会 of this month: registration, then the download by ReceptionNumber
        bulk_header = f"<MessageHeader><MedicalInstitutionCode>{FACILITY_CODE}</MedicalInstitutionCode></MessageHeader>"
        body = f"<MessageBody><QualificationConfirmSearchInfo><MedicalTreatmentMonth>{MONTH}</MedicalTreatmentMonth>"
        doc = ask(watcher, root, "OQSmutic01req_1", body + "</QualificationConfirmSearchInfo></MessageBody>",
                  header=bulk_header)
        reception = doc.findtext(".//ReceptionNumber")
        assert doc.findtext(".//SegmentOfResult") == "1" and reception and len(reception) == 20
        doc = ask(watcher, root, "OQSmutic02req_1", f"<MessageBody><ReceptionNumber>{reception}</ReceptionNumber>"
                  "</MessageBody>", header=bulk_header)
        units = doc.findall(".//BulkConfirmUnit")
        listed = [(u.findtext(".//InsurerNumber"), u.findtext(".//InsuredIdentificationNumber")) for u in units]
        assert listed == tickets.this_month and late not in listed
        assert doc.findtext(".//NumberOfProcessingResult") == str(len(units))
        assert doc.findtext(".//MedicalTreatmentMonth") == MONTH
        assert {u.findtext("QualificationValidity") for u in units} <= {"1", "2"}
        assert all(u.find(".//MedicalTicketInfo") is not None for u in units)
        stored = state.result("OQSmutic02res_1")
        assert stored is not None and stored["kind"] == "assistance_bulk_download"
        assert len(stored["units"]) == len(units)

        # answered once: the same requests again, and a restarted watcher, answer nothing
        assert watcher.scan() == 0
        before = sorted(p.name for p in (root / "res").iterdir())
        terminal = XmlTerminal(watcher.terminal.server, state)
        restarted = FolderWatcher(root, terminal, encoding="shift_jis", durable=False, mode="poll")
        assert restarted.scan() == 0
        assert sorted(p.name for p in (root / "res").iterdir()) == before


def test_assistance_refusals_and_bad_request_files(
    client: TestClient, tokens: dict[str, str], tickets: Tickets, tmp_path: Path
) -> None:
    root = tmp_path / "oqs"
    payer, recipient = tickets.valid[0]
    with folder_terminal(
        client, tokens["reception"], root, server_client=ServerClient, encoding="utf-8"
    ) as (watcher, _):
        req = root / "req"
        (req / "OQSsiquc01req_b1.xml").write_bytes(t.document(search(payer, "12345", "19500101"), header=HEADER))
        month = "<MessageBody><QualificationConfirmSearchInfo><MedicalTreatmentMonth>{}</MedicalTreatmentMonth>"
        (req / "OQSmutic01req_b2.xml").write_bytes(
            t.document(month.format("202613") + "</QualificationConfirmSearchInfo></MessageBody>", header=HEADER))
        (req / "OQSmutic01req_b3.xml").write_bytes(t.document("<MessageBody/>", header=HEADER))
        for name, reason in (
            ("OQSsiquc01req_b1.xml", "受給者番号 (医療扶助) must be 7 digits"),
            ("OQSmutic01req_b2.xml", "MedicalTreatmentMonth '202613' is not a month (YYYYMM)"),
            ("OQSmutic01req_b3.xml", "MedicalTreatmentMonth is missing"),
        ):
            assert watcher.handle(name, complete=True) == "error"
            assert reason in (req / f"{name}.err").read_text(encoding="utf-8")
            assert not (root / "res" / name.replace("req_", "res_")).exists()

        # a reception number this terminal never gave, or one of an insurance 一括照会
        doc = ask(watcher, root, "OQSmutic02req_b4", "<MessageBody><ReceptionNumber>20260101000000000001"
                  "</ReceptionNumber></MessageBody>")
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "reception_unknown")
        assert doc.find(".//BulkConfirmUnit") is None

    # a token the server does not know: SegmentOfResult 9 with the server's code, no result
    with folder_terminal(client, "not-a-token", tmp_path / "other", server_client=ServerClient) as (watcher, _):
        doc = ask(watcher, tmp_path / "other", "OQSsiquc01req_c1", search(payer, recipient, "19500101"))
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "unauthorized")
        assert doc.find(".//QualificationValidity") is None and doc.findtext(".//ProcessingResultStatus") == "2"
