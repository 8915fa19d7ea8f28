"""Face files (written after every card check) and the read-only JSON routes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.xmlif.face import write_face_result
from clinic_terminal.xmlif.json_routes import make_router
from clinic_terminal.xmlif.model import ConsentChoices
from clinic_terminal.xmlif.schema import validation_errors
from clinic_terminal.xmlif.state import TerminalState
from testbed import xmlif_server as t

CONSENTS = ConsentChoices(consent_time=t.CLOCK, drug=True, checkup=False, clinical=True, limit_certificate=True)
NAME = re.compile(r"^OQSsiquc01res_face_(0110113719[0-9]{20})_(20261128093015)\.xml$")


def test_face_file_name_content_and_schema(tmp_path: Path) -> None:
    with TerminalState.for_root(tmp_path) as state:
        state.set_reference_number(t.key_of(t.full_insured()), "24434", t.FACILITY_CODE)
    path = write_face_result(
        tmp_path, t.full_result(query_kind="card"), CONSENTS, t.FACILITY_CODE, encoding="shift_jis", now=t.CLOCK
    )
    match = NAME.match(path.name)
    assert match, path.name
    assert path.parent == tmp_path / "face"
    data = path.read_bytes()
    assert validation_errors("OQSsiquc01res", data) == []
    doc = etree.fromstring(data)
    assert doc.findtext(".//ArbitraryFileIdentifier") == match.group(1)
    assert doc.findtext(".//ReferenceClassification") == "1"
    assert doc.findtext(".//CharacterCodeIdentifier") == "1"
    assert doc.find(".//QualificationConfirmSearchInfo") is None
    assert doc.findtext(".//PharmacistsInfoConsFlg") == "1"
    assert doc.findtext(".//SpecificHealthCheckupsInfoConsFlg") == "0"
    assert doc.findtext(".//DiagnosisInfoAvailableTime") == "20261129093015"
    assert doc.findtext(".//ReferenceNumber") == "24434"
    name = doc.find(".//Name")
    assert name is not None  # Shift_JIS: 𠮷 has its substitute, the original rides along
    assert (name.text, name.get("{urn:shikaku:xmlif:gaiji}original")) == ("吉田\u3000花子", "𠮷田\u3000花子")


def test_face_files_in_the_same_second_never_collide(tmp_path: Path) -> None:
    paths = {write_face_result(tmp_path, t.simple_result(), None, t.FACILITY_CODE, now=t.CLOCK) for _ in range(5)}
    assert len(paths) == 5
    assert all(NAME.match(p.name) for p in paths)


def test_face_files_from_several_threads_never_collide(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with TerminalState.for_root(tmp_path) as state, ThreadPoolExecutor(8) as pool:
        paths = list(
            pool.map(
                lambda _: write_face_result(
                    tmp_path, t.simple_result(), None, t.FACILITY_CODE, now=t.CLOCK, state=state
                ),
                range(40),
            )
        )
    assert len(set(paths)) == 40
    assert len(list((tmp_path / "face").glob("*.xml"))) == 40


def test_face_result_refuses_a_bad_facility_code(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="check digit"):
        write_face_result(tmp_path, t.simple_result(), None, "0110113718")


def test_json_routes_serve_what_was_written(tmp_path: Path) -> None:
    path = write_face_result(
        tmp_path, t.full_result(query_kind="card"), CONSENTS, t.FACILITY_CODE, now=t.CLOCK + dt.timedelta(seconds=1)
    )
    app = FastAPI()
    app.include_router(make_router(tmp_path))
    with TestClient(app) as client:
        listing = client.get("/api/results").json()
        assert [r["file_id"] for r in listing] == [path.stem]
        assert listing[0]["kind"] == "face"
        body = client.get(f"/api/results/{path.stem}").json()
        assert body["result"]["insured"]["name"] == "𠮷田\u3000花子"
        assert body["consents"]["drug"] is True
        assert body["header"]["facility_code"] == t.FACILITY_CODE
        missing = client.get("/api/results/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert client.get("/api/results", params={"kind": "single"}).json() == []


def test_watch_command_needs_a_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from clinic_terminal.commands.watch import watch
    from clinic_terminal.config import get_settings

    monkeypatch.delenv("SHIKAKU_XML_ROOT", raising=False)
    get_settings.cache_clear()
    result = CliRunner().invoke(watch, [])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "--root" in result.output
