"""Answering parsed requests: bulk reception numbers, 照会番号, limit-certificate changes."""

from __future__ import annotations

import httpx
from lxml import etree

from clinic_terminal.client import ServerClient, ServerError
from clinic_terminal.xmlif.documents import parse_request, render_xml
from clinic_terminal.xmlif.model import BulkDownloadResult, BulkRegistrationResult, TerminalResult
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from schemas.eligibility import LimitCertificate
from testbed import xmlif_server as t


def _register(terminal: XmlTerminal, *searches: str) -> str:
    result = terminal.answer("OQSmuquc01res_x", parse_request("OQSmuquc01req_x.xml", t.bulk_registration(*searches)))
    assert isinstance(result, BulkRegistrationResult)
    assert result.reception_number is not None
    return result.reception_number


def _download(terminal: XmlTerminal, reception: str) -> BulkDownloadResult:
    result = terminal.answer("OQSmuquc02res_x", parse_request("OQSmuquc02req_x.xml", t.bulk_download(reception)))
    assert isinstance(result, BulkDownloadResult)
    return result


def test_reception_numbers_are_unique_and_map_to_the_server_batch(
    terminal: XmlTerminal, server: t.InMemoryServer
) -> None:
    first = _register(terminal, t.FULL_SEARCH)
    second = _register(terminal, t.SIMPLE_SEARCH, t.FULL_SEARCH)
    assert first != second
    assert len(first) == 20
    server.finish_batches()
    assert len(_download(terminal, second).units) == 2
    assert [u.search_info.insurer_number for u in _download(terminal, second).units] == ["06139992", "138057"]


def test_unknown_reception_number_is_an_abnormal_end(terminal: XmlTerminal) -> None:
    result = _download(terminal, "nope")
    assert result.header.segment == 9
    assert result.header.error_code == "reception_unknown"
    assert result.processing.status == 2


def test_limit_certificate_change_between_batches_is_flagged(terminal: XmlTerminal, server: t.InMemoryServer) -> None:
    server.batches_ready = True
    first = _register(terminal, t.FULL_SEARCH)
    assert [u.limit_certificate_changed for u in _download(terminal, first).units] == [False]
    key = t.key_of(t.full_insured())
    server.people[key] = server.people[key].model_copy(
        update={
            "limit_certificate": LimitCertificate(
                kind="01", classification="A04", valid_from=t.CLOCK.date(), valid_to=None
            )
        }
    )
    second = _register(terminal, t.FULL_SEARCH)
    assert [u.limit_certificate_changed for u in _download(terminal, second).units] == [True]
    # downloading the same reception again gives the same answer
    assert [u.limit_certificate_changed for u in _download(terminal, second).units] == [True]


def test_batch_registration_with_server_down(terminal: XmlTerminal, server: t.InMemoryServer) -> None:
    server.failure = ServerError("unavailable", "down")
    result = terminal.answer(
        "OQSmuquc01res_x", parse_request("OQSmuquc01req_x.xml", t.bulk_registration(t.FULL_SEARCH))
    )
    assert isinstance(result, BulkRegistrationResult)
    assert result.reception_number is None
    doc = etree.fromstring(render_xml(result))
    assert doc.findtext(".//SegmentOfResult") == "9"
    assert doc.find(".//ReceptionNumber") is None


def test_reference_number_registered_without_branch_matches_the_person(
    terminal: XmlTerminal, state: TerminalState
) -> None:
    data = t.reference_registration("P-77").replace(b"<InsuredBranchNumber>01</InsuredBranchNumber>", b"")
    terminal.answer("OQSsiimm01res_1", parse_request("OQSsiimm01req_1.xml", data))
    result = terminal.answer("OQSsiquc01res_1", parse_request("OQSsiquc01req_1.xml", t.single()))
    assert isinstance(result, TerminalResult)
    assert result.reference_number == "P-77"


def test_limit_certificate_only_with_consent(terminal: XmlTerminal) -> None:
    search = t.FULL_SEARCH.replace(">1</LimitApplication", ">0</LimitApplication")
    result = terminal.answer("OQSsiquc01res_1", parse_request("OQSsiquc01req_1.xml", t.single(search)))
    doc = etree.fromstring(render_xml(result))
    assert doc.findtext(".//ResultOfQualificationConfirmation/LimitApplicationCertificateRelatedConsFlg") == "0"
    assert doc.find(".//LimitApplicationCertificateRelatedInfo") is None
    assert doc.find(".//LimitApplicationCertificateRelatedConsTime") is None


def test_certificate_notice_is_a_processing_message(state: TerminalState) -> None:
    server = t.InMemoryServer.with_samples()
    key = t.key_of(t.full_insured())
    server.people[key] = server.people[key].model_copy(update={"certificate_notice": "expires_soon"})
    terminal = XmlTerminal(server, state, clock=lambda: t.CLOCK)
    doc = etree.fromstring(render_xml(terminal.answer("r", parse_request("OQSsiquc01req_1.xml", t.single()))))
    assert doc.findtext(".//ProcessingResultStatus") == "1"
    assert doc.findtext(".//ProcessingResultCode") == "expires_soon"
    assert "3か月以内" in (doc.findtext(".//ProcessingResultMessage") or "")


def test_unreadable_server_answer_is_an_abnormal_end(state: TerminalState) -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>proxy login</html>")

    with ServerClient("http://s", "t", transport=httpx.MockTransport(garbage)) as client:
        terminal = XmlTerminal(client, state, clock=lambda: t.CLOCK)
        result = terminal.answer("r", parse_request("OQSsiquc01req_1.xml", t.single()))
    doc = etree.fromstring(render_xml(result))
    assert doc.findtext(".//SegmentOfResult") == "9"
    assert doc.findtext(".//ErrorCode") == "bad_server_answer"
