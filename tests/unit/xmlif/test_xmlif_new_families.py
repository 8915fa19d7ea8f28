"""The 医療扶助, 診療・手術情報 and 公費負担医療 renderings without a server: which requests become
which family, the goldens in both encodings (validated by the XSDs), the 外字 marks in Shift_JIS,
and the abnormal ends (server down: answered at once, never journalled for a re-check)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from clinic_terminal.client import ServerError
from clinic_terminal.outage.journal import OutageJournal
from clinic_terminal.xmlif.documents import parse_request, render_xml, to_json
from clinic_terminal.xmlif.model import (
    AssistanceBulkRequest,
    AssistanceDownloadRequest,
    AssistanceRequest,
    ClinicalRequest,
    ClinicalResult,
    ResultHeader,
    SingleRequest,
)
from clinic_terminal.xmlif.parse import RequestError
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher
from schemas.assistance import (
    AssistanceMonth,
    AssistanceQuery,
    AssistanceRecipient,
    AssistanceResult,
    AssistanceTicket,
)
from schemas.eligibility import PublicExpense
from schemas.procedures import ProcedureItem
from testbed import xmlif_server as t

PAYER, RECIPIENT = "12130019", "1000014"
SEARCH = (
    "<MessageBody><QualificationConfirmSearchInfo>"
    f"<InsurerNumber>{PAYER}</InsurerNumber><InsuredIdentificationNumber>{RECIPIENT}</InsuredIdentificationNumber>"
    "<Birthdate>19500505</Birthdate>"
    "<LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg>"
    "<ArbitraryIdentifier>P-77</ArbitraryIdentifier>"
    "</QualificationConfirmSearchInfo></MessageBody>"
)
MONTH = "<MessageBody><QualificationConfirmSearchInfo><MedicalTreatmentMonth>202611</MedicalTreatmentMonth>" \
    "</QualificationConfirmSearchInfo></MessageBody>"


def recipient(name: str = "𠮷田\u3000髙子") -> AssistanceRecipient:
    return AssistanceRecipient(office_code="131016", payer_number=PAYER, recipient_number=RECIPIENT, name=name,
                               name_kana="ヨシダ\u3000タカコ", birth_date=dt.date(1950, 5, 5), sex="2")


def valid(name: str = "𠮷田\u3000髙子") -> AssistanceResult:
    tickets = [
        AssistanceTicket(ticket_kind="1", month="2026-11", facility_code=t.FACILITY_CODE,
                         valid_from=dt.date(2026, 11, 1), valid_to=dt.date(2026, 11, 30), self_pay=None),
        AssistanceTicket(ticket_kind="2", month="2026-11", facility_code=t.FACILITY_CODE,
                         valid_from=dt.date(2026, 11, 1), valid_to=None, self_pay=3000),
    ]
    return AssistanceResult(status="valid", validity=1, as_of=t.CLOCK.date(), recipient=recipient(name),
                            tickets=tickets)


class AssistanceFake:
    """The two 医療扶助 reads, answering from a table (or failing like a server that is away)."""

    def __init__(self, answers: dict[str, AssistanceResult], *, down: bool = False) -> None:
        self.answers, self.down, self.asked = answers, down, 0

    def assistance_by_number(self, query: AssistanceQuery) -> AssistanceResult:
        self.asked += 1
        if self.down:
            raise ServerError("unavailable", "the server cannot be reached")
        return self.answers.get(query.recipient_number) or AssistanceResult(
            status="not_found", validity=4, as_of=query.as_of or t.CLOCK.date())

    def assistance_by_month(self, month: str) -> AssistanceMonth:
        if self.down:
            raise ServerError("unavailable", "the server cannot be reached")
        return AssistanceMonth(month=month, as_of=t.CLOCK.date(), results=list(self.answers.values()))


def test_requests_go_to_their_family() -> None:
    assert isinstance(parse_request("OQSsiquc01req_1.xml", t.document(SEARCH)), AssistanceRequest)
    assert isinstance(parse_request("OQSsiquc01req_2.xml", t.single()), SingleRequest)  # an insurer number
    bulk = parse_request("OQSmutic01req_1.xml", t.document(MONTH, "Shift_JIS"))
    assert isinstance(bulk, AssistanceBulkRequest) and bulk.month == "202611"
    down = parse_request("OQSmutic02req_1.xml", t.bulk_download("20261128093015000001"))
    assert isinstance(down, AssistanceDownloadRequest) and down.reception_number == "20261128093015000001"
    clinical = parse_request("OQSsiprc01req_1.xml", t.document(
        "<MessageBody><InsurerNumber>  138057</InsurerNumber>"
        "<InsuredIdentificationNumber>5678</InsuredIdentificationNumber><StartDate>20250101</StartDate>"
        "</MessageBody>"))
    assert isinstance(clinical, ClinicalRequest) and clinical.family == "procedures"


@pytest.mark.parametrize(("name", "body", "reason"), [
    ("OQSsiquc01req_x.xml", SEARCH.replace(RECIPIENT, "１２３"), "a 受給者番号 (医療扶助) must be 7 digits"),
    ("OQSsiquc01req_x.xml", SEARCH.replace(PAYER, "12130018"), "check digit does not match"),
    ("OQSmutic01req_x.xml", MONTH.replace("202611", "2026-11"), "is not a month (YYYYMM)"),
    ("OQSmutic01req_x.xml", MONTH.replace("</MessageBody>", "<MedicalTreatmentMonth>202612</MedicalTreatmentMonth>"
                                          "</MessageBody>"), "MedicalTreatmentMonth occurs twice"),
    ("OQSmutic02req_x.xml", "<MessageBody/>", "ReceptionNumber is missing"),
])
def test_bad_requests_are_refused_with_a_reason(name: str, body: str, reason: str) -> None:
    with pytest.raises(RequestError) as refused:
        parse_request(name, t.document(body))
    assert reason in str(refused.value)


@pytest.mark.parametrize("encoding", ["utf-8", "shift_jis"])
def test_assistance_goldens(
    state: TerminalState, encoding: str, golden: Callable[[str, bytes], None]
) -> None:
    fake = AssistanceFake({RECIPIENT: valid()})
    terminal = XmlTerminal(fake, state, clock=lambda: t.CLOCK)  # type: ignore[arg-type]
    state.set_reference_number(f"{PAYER}||{RECIPIENT}|", "K-0042", t.FACILITY_CODE)
    single = terminal.answer("OQSsiquc01res_a", parse_request("OQSsiquc01req_a.xml", t.document(SEARCH)))
    late = AssistanceResult(status="not_delegated", validity=6, as_of=t.CLOCK.date(),
                            recipient=recipient("保護\u3000花子"))
    unentrusted = XmlTerminal(AssistanceFake({RECIPIENT: late}), state, clock=lambda: t.CLOCK)  # type: ignore[arg-type]
    pending = unentrusted.answer("OQSsiquc01res_b", parse_request("OQSsiquc01req_b.xml", t.document(SEARCH)))
    registered = terminal.answer("OQSmutic01res_c", parse_request("OQSmutic01req_c.xml", t.document(MONTH)))
    reception = to_json(registered)["reception_number"]
    downloaded = terminal.answer("OQSmutic02res_c", parse_request("OQSmutic02req_c.xml", t.bulk_download(reception)))
    for name, result in (("assistance_valid", single), ("assistance_not_delegated", pending),
                         ("assistance_bulk_registration", registered), ("assistance_bulk_download", downloaded)):
        data = render_xml(result, encoding)  # type: ignore[arg-type]
        assert validation_errors(result.file_id.split("_", 1)[0], data) == []
        golden(f"{name}.{encoding}.xml", data)
    doc = etree.fromstring(render_xml(single, encoding))  # type: ignore[arg-type]
    name_el = doc.find(".//ResultOfQualificationConfirmation/Name")
    assert name_el is not None
    if encoding == "shift_jis":  # the substitutes, marked, the original as stored
        assert name_el.text == "吉田\u3000高子"
        assert name_el.get("{urn:shikaku:xmlif:gaiji}original") == "𠮷田\u3000髙子"
    else:
        assert name_el.text == "𠮷田\u3000髙子" and not name_el.attrib
    assert doc.findtext(".//ReferenceNumber") == "K-0042" and doc.findtext(".//ArbitraryIdentifier") == "P-77"
    assert [m.findtext("TicketType") for m in doc.iter("MedicalTicketInfo")] == ["1", "2"]
    assert doc.findtext(".//MedicalTicketInfo[2]/SelfPayAmount") == "3000"


def test_server_down_is_answered_at_once_and_not_journalled(state: TerminalState, tmp_path: Path) -> None:
    journal = OutageJournal(tmp_path / "journal")
    fake = AssistanceFake({}, down=True)
    terminal = XmlTerminal(fake, state, clock=lambda: t.CLOCK, journal=journal)  # type: ignore[arg-type]
    result = terminal.answer("OQSsiquc01res_d", parse_request("OQSsiquc01req_d.xml", t.document(SEARCH)))
    doc = etree.fromstring(render_xml(result))
    assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "unavailable")
    assert doc.findtext(".//ProcessingResultStatus") == "2" and doc.find(".//QualificationValidity") is None
    assert "_followup" not in (doc.findtext(".//ErrorMessage") or "")
    assert journal.pending(("kiosk", "staff", "xml")) == []
    journal.close()
    assert validation_errors("OQSsiquc01res", render_xml(result, "shift_jis")) == []


def test_procedures_and_public_expenses_render(state: TerminalState, golden: Callable[[str, bytes], None]) -> None:
    header = ResultHeader(t.CLOCK, t.CLOCK.date(), t.FACILITY_CODE, "F-1")
    items = (
        ProcedureItem(performed_on=dt.date(2026, 9, 1), facility_code=t.FACILITY_CODE, procedure_code="150060010",
                      procedure_name="虫垂切除術", kind="手術", inpatient=True),
        ProcedureItem(performed_on=dt.date(2024, 1, 9), facility_code=t.FACILITY_CODE, procedure_code="111000110",
                      procedure_name="初診料", kind="診療", inpatient=False),
    )
    result = ClinicalResult("OQSsiprc01res_1", header, "procedures", ("138057", "１２－３４", "５６７８", "01"),
                            dt.date(2021, 11, 28), dt.date(2026, 11, 28), 7, items)
    for encoding in ("utf-8", "shift_jis"):
        data = render_xml(result, encoding)
        assert validation_errors("OQSsiprc01res", data) == []
        golden(f"procedures.{encoding}.xml", data)
    assert to_json(result)["items"][0]["procedure_code"] == "150060010"

    eligibility = t.full_result().model_copy(update={"public_expenses": [
        PublicExpense(payer_number="54130017", recipient_number="1000014", monthly_cap=10000,
                      valid_from=dt.date(2026, 4, 1), valid_to=dt.date(2027, 3, 31)),
        PublicExpense(payer_number="88130011", recipient_number="2000012", monthly_cap=0,
                      valid_from=dt.date(2026, 4, 1), valid_to=None),
    ]})
    request = parse_request("OQSsiquc01req_1.xml", t.single())
    assert isinstance(request, SingleRequest)

    class One:
        def by_number(self, query: object) -> object:
            return eligibility

    single = XmlTerminal(One(), state, clock=lambda: t.CLOCK).answer("OQSsiquc01res_pe", request)  # type: ignore[arg-type]
    for encoding in ("utf-8", "shift_jis"):
        data = render_xml(single, encoding)  # type: ignore[arg-type]
        assert validation_errors("OQSsiquc01res", data) == []
        golden(f"single_public_expenses.{encoding}.xml", data)
    infos = etree.fromstring(render_xml(single)).findall(".//MedicalSubsidyCertificateInfo")
    assert [(i.findtext("MedicalSubsidyInsurerNumber"), i.findtext("MaxCopaymentAmount"),
             i.findtext("MedicalSubsidyValidEndDate")) for i in infos] == [
        ("54130017", "10000", "20270331"), ("88130011", "0", None)]



@pytest.mark.parametrize("encoding", ["utf-8", "shift_jis"])
def test_new_families_are_answered_once_across_a_restart(tmp_path: Path, encoding: str) -> None:
    """The watcher's journal holds for the new families as for every one: a restarted terminal
    never answers a journalled request again, even after clinic software took the result."""
    root = tmp_path / "oqs"
    (root / "req").mkdir(parents=True)
    names = ("OQSsiquc01req_k.xml", "OQSmutic01req_k.xml")
    (root / "req" / names[0]).write_bytes(t.document(SEARCH, "Shift_JIS"))
    (root / "req" / names[1]).write_bytes(t.document(MONTH))
    fake = AssistanceFake({RECIPIENT: valid()})
    with TerminalState.for_root(root) as state:
        terminal = XmlTerminal(fake, state, clock=lambda: t.CLOCK)  # type: ignore[arg-type]
        assert FolderWatcher(root, terminal, encoding=encoding, durable=False).scan() == 2  # type: ignore[arg-type]
    for name in names:
        (root / "res" / name.replace("req_", "res_")).unlink()  # clinic software took it
        os.utime(root / "req" / name)  # and touched the request
    with TerminalState.for_root(root) as state:  # a restarted terminal
        terminal = XmlTerminal(fake, state, clock=lambda: t.CLOCK)  # type: ignore[arg-type]
        assert FolderWatcher(root, terminal, durable=False, mode="poll").scan() == 0
    assert fake.asked == 1 and not list((root / "res").iterdir())
