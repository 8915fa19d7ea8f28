"""The 診療・手術情報 family (``OQSsiprc01``) against the real server, on both backends: a request file
in ``req/`` → the result in ``res/`` (Shift_JIS, validated by its XSD), the date range applied,
under the patient's ``clinical`` consent only (no card check here, or a drug-only consent →
SegmentOfResult 9 with ErrorCode ``consent_required``, no items), a bad range → ``.err``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.watcher import FolderWatcher
from shikaku_server.eligibility.service import today_jst
from testbed import xmlif_server as t
from testbed.pki import IssuedCertificate
from tests.folder_terminal import folder_terminal
from tests.integration.test_clinical_procedures import APPENDECTOMY, with_procedures
from tests.integration.test_consent_api import card, consent
from tests.integration.test_xmlif_clinical import checked_at_the_reader, person

__all__ = ["card", "with_procedures"]  # fixtures: 山田 太郎 with a surgery, a 診療 and one too old

TODAY = today_jst()


def ask(watcher: FolderWatcher, root: Path, name: str, body: str) -> Any:
    (root / "req" / f"{name}.xml").write_bytes(t.document(body, "Shift_JIS"))
    assert watcher.scan() == 1
    data = (root / "res" / f"{name.replace('req_', 'res_')}.xml").read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="Shift_JIS" standalone="no"?>')
    assert validation_errors("OQSsiprc01res", data) == []
    return etree.fromstring(data)


def test_procedure_files_under_the_clinical_consent(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate, tmp_path: Path
) -> None:
    root = tmp_path / "oqs"
    with folder_terminal(client, tokens["physician"], root, encoding="shift_jis") as (watcher, state):
        doc = ask(watcher, root, "OQSsiprc01req_0", person())  # no card check here
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "consent_required")
        assert doc.find(".//ProcedureInfo") is None and "診療・手術情報" in (doc.findtext(".//ErrorMessage") or "")

        visit = checked_at_the_reader(client, tokens["physician"], with_procedures, root, state)
        assert consent(client, tokens["physician"], visit, drug=True).status_code == 200
        doc = ask(watcher, root, "OQSsiprc01req_1", person())  # drugs only: not procedures
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "consent_required")

        visit = checked_at_the_reader(client, tokens["physician"], with_procedures, root, state)
        assert consent(client, tokens["physician"], visit, clinical=True).status_code == 200
        doc = ask(watcher, root, "OQSsiprc01req_2", person())
        assert doc.findtext(".//SegmentOfResult") == "1"
        assert (doc.findtext(".//DiagnosisInfoConsFlg"), doc.findtext(".//OperationInfoConsFlg")) == ("1", "1")
        items = doc.findall(".//ProcedureInfoList/ProcedureInfo")
        assert [i.findtext("ProcedureName") for i in items] == [APPENDECTOMY, "初診料"]  # the 6-year-old is out
        surgery = items[0]
        assert (surgery.findtext("ProcedureCode"), surgery.findtext("ProcedureClassification")) == ("150060010", "2")
        assert items[1].findtext("ProcedureClassification") == "1" and items[1].findtext("InpatientFlg") == "0"
        assert doc.findtext(".//StartDate") == TODAY.replace(year=TODAY.year - 5).strftime("%Y%m%d")

        year_ago = (TODAY - dt.timedelta(days=365)).strftime("%Y%m%d")
        doc = ask(watcher, root, "OQSsiprc01req_3", person(start=year_ago))
        assert [i.findtext("ProcedureName") for i in doc.iter("ProcedureInfo")] == [APPENDECTOMY]
        stored = state.result("OQSsiprc01res_3")
        assert stored is not None and stored["kind"] == "procedures" and len(stored["items"]) == 1

        (root / "req" / "OQSsiprc01req_9.xml").write_bytes(t.document(person("20260301", "20260201")))
        assert watcher.handle("OQSsiprc01req_9.xml", complete=True) == "error"
        assert "EndDate is before StartDate" in (root / "req" / "OQSsiprc01req_9.xml.err").read_text("utf-8")
        assert not (root / "res" / "OQSsiprc01res_9.xml").exists()
