"""The 訪問診療 / オンライン診療 再照会 families of the folder interface against the real server, on
both backends: a request file in ``req/`` → its result in ``res/`` (Shift_JIS, written once by the
watcher's exactly-once machinery), through the person's course of care (first visit by card or by
目視確認); no course, a kind of care outside the course, or an ended course → SegmentOfResult 9 with
the server's code, no result."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.xmlif.watcher import FolderWatcher
from shikaku_server.consent.models import Consent
from shikaku_server.eligibility.service import today_jst
from testbed import xmlif_server as t
from testbed.pki import IssuedCertificate
from tests.conftest import auth
from tests.factories import INSURER_A
from tests.folder_terminal import folder_terminal
from tests.integration.test_card_api import FACTS
from tests.integration.test_consent_api import card, consent, visit

__all__ = ["card"]  # the fixture: 山田 太郎 (INSURER_A 123 / 4567 / 00), 限度額 A03

BODY = (
    "<MessageBody><InsurerNumber>{insurer}</InsurerNumber><InsuredCardSymbol>１２３</InsuredCardSymbol>"
    "<InsuredIdentificationNumber>4567</InsuredIdentificationNumber>"
    "<InsuredBranchNumber>00</InsuredBranchNumber></MessageBody>"
)


def ask(watcher: FolderWatcher, root: Path, name: str) -> Any:
    (root / "req" / f"{name}.xml").write_bytes(t.document(BODY.format(insurer=INSURER_A), "Shift_JIS"))
    assert watcher.scan() == 1
    data = (root / "res" / f"{name.replace('req_', 'res_')}.xml").read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="Shift_JIS" standalone="no"?>')
    return etree.fromstring(data)


def outcome(doc: Any) -> tuple[str | None, str | None]:
    return doc.findtext(".//SegmentOfResult"), doc.findtext(".//ErrorCode")


def test_home_visit_and_online_care_files_through_the_course(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, tmp_path: Path, session_factory: Any
) -> None:
    root = tmp_path / "oqs"
    with folder_terminal(client, tokens["reception"], root, encoding="shift_jis") as (watcher, state):
        doc = ask(watcher, root, "OQSsihome01req_0")  # no course yet
        assert outcome(doc) == ("9", "consent_required")
        assert doc.find(".//ResultOfQualificationConfirmation") is None
        assert "同意" in (doc.findtext(".//ErrorMessage") or "")

        # the first visit by 目視確認, a course of home visits only, sharing 限度額
        r = client.post("/v1/visits/visual", headers=auth(tokens["physician"]),
                        json={"confirmed_by": "訪問 看護師", "four_facts": FACTS})
        v = r.json()["visit_id"]
        until = (today_jst() + dt.timedelta(days=30)).isoformat()
        assert consent(client, tokens["physician"], v, setting="home", limit_certificate=True, online_care=False,
                       course_until=until).status_code == 200
        doc = ask(watcher, root, "OQSsihome01req_1")
        assert outcome(doc) == ("1", None)
        assert doc.findtext(".//QualificationValidity") == "1"
        assert doc.findtext(".//CareClassification") == "1"
        assert doc.findtext(".//ConfirmationMethod") == "3"  # 目視確認
        assert doc.findtext(".//HomeCareAvailableTime", "").startswith(until.replace("-", ""))
        assert doc.findtext(".//Name") == "山田 太郎"
        assert doc.findtext(".//LimitApplicationCertificateClassificationFlag") == "A03"
        stored = state.result("OQSsihome01res_1")
        assert stored is not None and stored["kind"] == "home_visit" and stored["confirmation"] == "visual"
        # the same request again is never answered twice (the watcher's journal)
        (root / "req" / "OQSsihome01req_1.xml").touch()
        assert watcher.scan() == 0

        doc = ask(watcher, root, "OQSsionln01req_1")  # online care is outside this course
        assert outcome(doc) == ("9", "consent_required")

        # a new course by card covering both kinds; then its last day passes
        v2 = visit(client, tokens["physician"], card)
        assert consent(client, tokens["physician"], v2, setting="home").status_code == 200
        doc = ask(watcher, root, "OQSsionln01req_2")
        assert outcome(doc) == ("1", None) and doc.findtext(".//ConfirmationMethod") == "1"
        assert doc.findtext(".//CareClassification") == "2"
        with session_factory.begin() as s:
            s.execute(sa.update(Consent).where(Consent.revoked_at.is_(None))
                      .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        doc = ask(watcher, root, "OQSsionln01req_3")
        assert outcome(doc) == ("9", "consent_required")  # an ended course is no longer listed
        assert doc.find(".//QualificationValidity") is None
