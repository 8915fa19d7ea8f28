"""Outage mode in the XML folder interface: the unanswered query is journalled and followed up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree

from clinic_terminal.client import ServerError
from clinic_terminal.outage import OutageJournal, Rechecker
from clinic_terminal.xmlif.documents import parse_request, render_xml
from clinic_terminal.xmlif.followup import write_followup
from clinic_terminal.xmlif.model import TerminalResult, XmlEncoding
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher
from schemas.eligibility import ByNumberQuery, EligibilityResult
from testbed import xmlif_server as t

ENCODINGS: list[XmlEncoding] = ["utf-8", "shift_jis"]
DOWN = ServerError("unavailable", "the server cannot be reached: connection refused")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[OutageJournal]:
    j = OutageJournal(tmp_path / "journal")
    yield j
    j.close()


def _down_then_followup(
    server: t.InMemoryServer, state: TerminalState, journal: OutageJournal, root: Path, encoding: XmlEncoding
) -> tuple[TerminalResult, Path]:
    terminal = XmlTerminal(server, state, clock=lambda: t.CLOCK, journal=journal)
    server.failure = DOWN
    answer = terminal.answer("OQSsiquc01res_down", parse_request("OQSsiquc01req_down.xml", t.single()))
    assert isinstance(answer, TerminalResult)
    (root / "res").mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def deliver(entry: object) -> None:
        path = write_followup(root, state, entry, encoding=encoding, now=t.CLOCK)  # type: ignore[arg-type]
        assert path is not None
        paths.append(path)

    rechecker = Rechecker(journal, server, sources=("xml",), on_outcome=deliver)
    assert rechecker.run_once().unreachable and paths == []
    server.failure = None
    assert rechecker.run_once().resolved == 1
    return answer, paths[0]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_query_the_server_cannot_answer_is_journalled_then_followed_up(
    encoding: XmlEncoding, server: t.InMemoryServer, state: TerminalState, journal: OutageJournal, tmp_path: Path,
    golden: Callable[[str, bytes], None],
) -> None:
    answer, path = _down_then_followup(server, state, journal, tmp_path, encoding)
    down = render_xml(answer, encoding)
    golden(f"single_server_down_journaled.{encoding}.xml", down)
    assert validation_errors("OQSsiquc01res", down) == []
    doc = etree.fromstring(down)
    assert doc.findtext("MessageHeader/SegmentOfResult") == "9"
    assert doc.findtext("MessageHeader/ErrorCode") == "unavailable"
    assert "申立書で受付してください" in (doc.findtext("MessageHeader/ErrorMessage") or "")
    assert "OQSsiquc01res_down_followup.xml" in (doc.findtext("MessageHeader/ErrorMessage") or "")

    assert path == tmp_path / "res" / "OQSsiquc01res_down_followup.xml"
    data = path.read_bytes()
    golden(f"single_followup.{encoding}.xml", data)
    assert validation_errors("OQSsiquc01res", data) == []
    follow = etree.fromstring(data)
    assert follow.findtext("MessageHeader/SegmentOfResult") == "1"
    assert follow.findtext("MessageHeader/ArbitraryFileIdentifier") == "F-0001"  # matches the original
    assert follow.findtext("MessageHeader/QualificationConfirmationDate") == "20261128"  # the visit date
    assert follow.findtext("MessageBody/ProcessingResultCode") == "followup"
    assert follow.findtext("MessageBody/QualificationValidity") == "1"
    assert follow.findtext(".//ArbitraryIdentifier") == "患者-0001"
    assert state.result("OQSsiquc01res_down_followup") is not None  # also served as JSON


def test_the_re_check_is_as_of_the_requests_confirmation_date(
    server: t.InMemoryServer, state: TerminalState, journal: OutageJournal, tmp_path: Path
) -> None:
    seen: list[dt.date | None] = []
    by_number = server.by_number

    def spy(query: ByNumberQuery) -> EligibilityResult:
        seen.append(query.as_of)
        return by_number(query)

    server.by_number = spy  # type: ignore[method-assign]
    tag = b"</QualificationConfirmationDate>"
    request = t.single().replace(b"20261128" + tag, b"20261120" + tag)
    terminal = XmlTerminal(server, state, clock=lambda: t.CLOCK, journal=journal)
    server.failure = DOWN
    terminal.answer("OQSsiquc01res_past", parse_request("OQSsiquc01req_past.xml", request))
    server.failure = None
    Rechecker(journal, server, sources=("xml",)).run_once()
    assert seen == [dt.date(2026, 11, 20)] * 2  # the query that failed, then its re-check


def test_other_server_failures_are_not_journalled(
    server: t.InMemoryServer, state: TerminalState, journal: OutageJournal
) -> None:
    terminal = XmlTerminal(server, state, clock=lambda: t.CLOCK, journal=journal)
    server.failure = ServerError("unauthorized", "bad token", 401)
    answer = terminal.answer("OQSsiquc01res_u", parse_request("OQSsiquc01req_u.xml", t.single()))
    assert answer.header.error_code == "unauthorized"
    assert journal.count() == 0


def test_a_refused_re_check_is_followed_up_as_an_abnormal_end(
    server: t.InMemoryServer, state: TerminalState, journal: OutageJournal, tmp_path: Path
) -> None:
    terminal = XmlTerminal(server, state, clock=lambda: t.CLOCK, journal=journal)
    server.failure = DOWN
    terminal.answer("OQSsiquc01res_r", parse_request("OQSsiquc01req_r.xml", t.single()))
    server.failure = ServerError("validation_error", "symbol: too long", 422)
    paths: list[Path | None] = []
    Rechecker(journal, server, sources=("xml",),
              on_outcome=lambda e: paths.append(write_followup(tmp_path, state, e, now=t.CLOCK))).run_once()
    (path,) = paths
    assert path is not None
    doc = etree.fromstring(path.read_bytes())
    assert doc.findtext("MessageHeader/SegmentOfResult") == "9"
    assert doc.findtext("MessageHeader/ErrorCode") == "validation_error"
    assert validation_errors("OQSsiquc01res", path.read_bytes()) == []


def test_the_watcher_answers_at_once_while_the_server_is_away(
    server: t.InMemoryServer, state: TerminalState, journal: OutageJournal, tmp_path: Path
) -> None:
    root = tmp_path / "oqs"
    watcher = FolderWatcher(root, XmlTerminal(server, state, clock=lambda: t.CLOCK, journal=journal), mode="poll",
                            durable=False, workers=1)
    server.failure = DOWN
    (root / "req" / "OQSsiquc01req_w.xml").write_bytes(t.single())
    assert watcher.scan() == 1
    doc = etree.fromstring((root / "res" / "OQSsiquc01res_w.xml").read_bytes())
    assert doc.findtext("MessageHeader/ErrorCode") == "unavailable"
    (entry,) = journal.pending(("xml",))
    assert entry.xml is not None and entry.xml["file_id"] == "OQSsiquc01res_w"


def test_kiosk_face_files_for_an_outage_check_and_its_re_check(journal: OutageJournal, tmp_path: Path) -> None:
    from clinic_terminal.outage import CardIdentity
    from clinic_terminal.xmlif.followup import write_face_followup, write_face_outage

    down = write_face_outage(tmp_path, t.FACILITY_CODE, encoding="shift_jis", now=t.CLOCK)
    data = down.read_bytes()
    assert validation_errors("OQSsiquc01res", data) == []
    doc = etree.fromstring(data)
    assert (doc.findtext("MessageHeader/ReferenceClassification"), doc.findtext("MessageHeader/SegmentOfResult"),
            doc.findtext("MessageHeader/ErrorCode")) == ("1", "9", "unavailable")
    assert "申立書で受付してください" in (doc.findtext("MessageHeader/ErrorMessage") or "")

    visit = dt.date(2026, 11, 20)
    entry = journal.record_card(CardIdentity("ab" * 32, "10", "CN=x"), verified_by="pin", visit_date=visit)
    result = t.simple_result().model_copy(update={"as_of": visit})
    resolved = journal.resolve(entry, state="done", outcome="valid", result=result)
    assert resolved is not None
    path = write_face_followup(tmp_path, resolved, t.FACILITY_CODE, now=t.CLOCK)
    assert path is not None and path.parent == tmp_path / "face" and path != down
    follow = etree.fromstring(path.read_bytes())
    assert validation_errors("OQSsiquc01res", path.read_bytes()) == []
    assert follow.findtext("MessageHeader/QualificationConfirmationDate") == "20261120"
    assert follow.findtext("MessageBody/ProcessingResultCode") == "followup"
    needs_card = journal.record_card(CardIdentity("cd" * 32, "11", "CN=x"), verified_by="pin", visit_date=visit)
    assert write_face_followup(tmp_path, needs_card, t.FACILITY_CODE) is None
