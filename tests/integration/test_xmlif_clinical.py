"""The 薬剤情報 / 特定健診情報 families of the folder interface against the real server, on both
backends: a request file in ``req/`` → the result file in ``res/`` (Shift_JIS), the date range
applied, and the consent rules (no card check here, or no consent for the category → SegmentOfResult
9 with ErrorCode ``consent_required``, no items)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.xmlif.face import write_face_result
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher
from schemas.eligibility import EligibilityResult
from shikaku_server.eligibility.service import today_jst
from testbed import xmlif_server as t
from testbed.pki import IssuedCertificate
from tests.conftest import FACILITY_CODE
from tests.factories import INSURER_A
from tests.folder_terminal import folder_terminal
from tests.integration.test_card_api import by_card
from tests.integration.test_consent_api import card, consent

__all__ = ["card"]  # the fixture: 山田 太郎 (INSURER_A 123 / 4567 / 00) with drugs and a checkup

TODAY = today_jst()


def person(start: str = "", end: str = "", number: str = "4567") -> str:
    dates = (f"<StartDate>{start}</StartDate>" if start else "") + (f"<EndDate>{end}</EndDate>" if end else "")
    return (
        "<MessageBody><SearchInfo>"
        f"<InsurerNumber>{INSURER_A}</InsurerNumber><InsuredCardSymbol>123</InsuredCardSymbol>"
        f"<InsuredIdentificationNumber>{number}</InsuredIdentificationNumber>"
        f"<InsuredBranchNumber>00</InsuredBranchNumber>{dates}"
        "</SearchInfo></MessageBody>"
    )


def ask(watcher: FolderWatcher, root: Path, name: str, body: str) -> Any:
    (root / "req" / f"{name}.xml").write_bytes(t.document(body, "Shift_JIS"))
    assert watcher.scan() == 1
    data = (root / "res" / f"{name.replace('req_', 'res_')}.xml").read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="Shift_JIS" standalone="no"?>')
    data.decode("cp932")  # the whole file is CP932 text
    assert validation_errors(name.split("_", 1)[0].replace("req", "res"), data) == []
    return etree.fromstring(data)


def checked_at_the_reader(
    client: TestClient, token: str, card: IssuedCertificate, root: Path, state: TerminalState
) -> str:
    r = by_card(client, token, card)
    assert r.status_code == 200, r.text
    write_face_result(root, EligibilityResult.model_validate(r.json()), None, FACILITY_CODE, state=state)
    return str(r.json()["visit_id"])


def test_drug_and_checkup_files_under_the_patients_consent(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, tmp_path: Path
) -> None:
    root = tmp_path / "oqs"
    with folder_terminal(client, tokens["physician"], root, encoding="shift_jis") as (watcher, state):
        # no card check of this person on this terminal: nothing to read under
        doc = ask(watcher, root, "OQSsimed01req_0", person())
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "consent_required")
        assert doc.find(".//MedicationInfo") is None and "同意" in (doc.findtext(".//ErrorMessage") or "")

        visit = checked_at_the_reader(client, tokens["physician"], card, root, state)
        assert consent(client, tokens["physician"], visit, drug=True).status_code == 200

        doc = ask(watcher, root, "OQSsimed01req_1", person())
        assert doc.findtext(".//SegmentOfResult") == "1" and doc.findtext(".//PharmacistsInfoConsFlg") == "1"
        names = [m.findtext("DrugName") for m in doc.iter("MedicationInfo")]
        assert names == ["ロキソプロフェンNa錠60mg", "アムロジピン錠5mg"]  # 5 years; the 6-year-old one is out
        first = doc.find(".//MedicationInfo")
        assert first is not None
        assert first.findtext("DispensingDate") == (TODAY - dt.timedelta(days=30)).strftime("%Y%m%d")
        assert (first.findtext("Quantity"), first.findtext("Unit"), first.findtext("Days")) == ("3", "錠", "7")
        assert doc.findtext(".//StartDate") == TODAY.replace(year=TODAY.year - 5).strftime("%Y%m%d")
        assert doc.findtext(".//InsurerNumber") == INSURER_A.rjust(8)

        # a date range: only the last year
        year_ago = (TODAY - dt.timedelta(days=365)).strftime("%Y%m%d")
        doc = ask(watcher, root, "OQSsimed01req_2", person(start=year_ago, end=TODAY.strftime("%Y%m%d")))
        assert [m.findtext("DrugName") for m in doc.iter("MedicationInfo")] == ["ロキソプロフェンNa錠60mg"]
        assert doc.findtext(".//StartDate") == year_ago

        # the consent was for drugs only: the checkup file is refused with the server's code
        doc = ask(watcher, root, "OQSsichk01req_1", person())
        assert (doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")) == ("9", "consent_required")
        assert doc.find(".//SpecificHealthCheckupInfo") is None

        # consent again, checkups included (a new card check): the checkup file
        visit = checked_at_the_reader(client, tokens["physician"], card, root, state)
        assert consent(client, tokens["physician"], visit, drug=True, checkup=True).status_code == 200
        doc = ask(watcher, root, "OQSsichk01req_2", person())
        assert doc.findtext(".//SegmentOfResult") == "1"
        assert doc.findtext(".//SpecificHealthCheckupsInfoConsFlg") == "1"
        checkups = list(doc.iter("SpecificHealthCheckupInfo"))
        assert len(checkups) == 1
        values = {i.findtext("ItemName"): i.findtext("ItemValue") for i in checkups[0].iter("CheckupItem")}
        assert values == {"hba1c": "5.6", "systolic": "128"}
        assert checkups[0].findtext("UrineProtein") == "-"

        # another person, never checked here: refused
        doc = ask(watcher, root, "OQSsichk01req_3", person(number="9999"))
        assert doc.findtext(".//ErrorCode") == "consent_required"
        # the JSON rendering of the same answer
        stored = state.result("OQSsichk01res_2")
        assert stored is not None and stored["kind"] == "checkups" and len(stored["items"]) == 1


def test_a_bad_range_is_refused_with_an_err_file(
    client: TestClient, tokens: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "oqs"
    with folder_terminal(client, tokens["physician"], root, encoding="shift_jis") as (watcher, _):
        (root / "req" / "OQSsimed01req_9.xml").write_bytes(t.document(person("20260301", "20260201")))
        assert watcher.handle("OQSsimed01req_9.xml", complete=True) == "error"
        err = (root / "req" / "OQSsimed01req_9.xml.err").read_text(encoding="utf-8")
        assert "EndDate is before StartDate" in err
        assert not (root / "res" / "OQSsimed01res_9.xml").exists()
