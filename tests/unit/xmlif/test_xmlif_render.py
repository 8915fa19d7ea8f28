"""Golden renderings of every result family in both encodings; every golden validates (XSD)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest
from lxml import etree

from clinic_terminal.client import ServerError
from clinic_terminal.xmlif.documents import parse_request, render_xml, to_json
from clinic_terminal.xmlif.model import AnyResult, ConsentChoices, TerminalResult, XmlEncoding
from clinic_terminal.xmlif.render import GAIJI_NS, fmt_insurer_number, fmt_post_number, fmt_ratio, fmt_time
from clinic_terminal.xmlif.schema import family_of, validation_errors
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from testbed import xmlif_server as t

ENCODINGS: list[XmlEncoding] = ["utf-8", "shift_jis"]
CONSENTS = ConsentChoices(
    consent_time=dt.datetime(2026, 11, 28, 9, 29, 0, tzinfo=t.CLOCK.tzinfo),
    drug=True,
    checkup=True,
    clinical=True,
    limit_certificate=True,
)


def _results(terminal: XmlTerminal, server: t.InMemoryServer, state: TerminalState) -> dict[str, AnyResult]:
    """One result of each kind, made through the real request path."""
    state.set_reference_number(t.key_of(t.full_insured()), "24434", t.FACILITY_CODE)
    out: dict[str, AnyResult] = {}
    out["single_full"] = terminal.answer("OQSsiquc01res_full", parse_request("OQSsiquc01req_full.xml", t.single()))
    out["single_lost"] = terminal.answer(
        "OQSsiquc01res_lost", parse_request("OQSsiquc01req_lost.xml", t.single(t.SIMPLE_SEARCH))
    )
    out["single_none"] = terminal.answer(
        "OQSsiquc01res_none", parse_request("OQSsiquc01req_none.xml", t.single(t.UNKNOWN_SEARCH))
    )
    out["face_consents"] = terminal.card_result(
        "OQSsiquc01res_face_011011371920261128093015000000_20261128093015",
        t.full_result(query_kind="card"),
        CONSENTS,
        t.FACILITY_CODE,
        arbitrary_file_identifier="011011371920261128093015000000",
    )
    out["face_no_consent"] = terminal.card_result(
        "OQSsiquc01res_face_x",
        t.simple_result(),
        ConsentChoices(consent_time=t.CLOCK),
        t.FACILITY_CODE,
        arbitrary_file_identifier="x",
    )
    registration = parse_request("OQSmuquc01req_b.xml", t.bulk_registration(t.FULL_SEARCH, t.SIMPLE_SEARCH))
    reg = terminal.answer("OQSmuquc01res_b", registration)
    out["bulk_registration"] = reg
    assert reg.kind == "bulk_registration"
    assert reg.reception_number is not None
    download = parse_request("OQSmuquc02req_p.xml", t.bulk_download(reg.reception_number))
    out["bulk_in_progress"] = terminal.answer("OQSmuquc02res_p", download)
    server.finish_batches()
    out["bulk_done"] = terminal.answer("OQSmuquc02res_d", download)
    out["reference_registration"] = terminal.answer(
        "OQSsiimm01res_r", parse_request("OQSsiimm01req_r.xml", t.reference_registration("24434"))
    )
    server.failure = ServerError("unavailable", "the server cannot be reached: connection refused")
    out["single_server_down"] = terminal.answer(
        "OQSsiquc01res_down", parse_request("OQSsiquc01req_down.xml", t.single())
    )
    return out


@pytest.fixture
def results(terminal: XmlTerminal, server: t.InMemoryServer, state: TerminalState) -> dict[str, AnyResult]:
    return _results(terminal, server, state)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_result_matches_its_golden_and_validates(
    results: dict[str, AnyResult], encoding: XmlEncoding, golden: Callable[[str, bytes], None]
) -> None:
    for name, result in results.items():
        data = render_xml(result, encoding)
        golden(f"{name}.{encoding}.xml", data)
        family = family_of(result.file_id)
        assert validation_errors(family, data) == [], name


def test_declaration_and_character_code_follow_the_encoding(results: dict[str, AnyResult]) -> None:
    utf8 = render_xml(results["single_full"], "utf-8")
    sjis = render_xml(results["single_full"], "shift_jis")
    assert utf8.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>')
    assert sjis.startswith(b'<?xml version="1.0" encoding="Shift_JIS" standalone="no"?>')
    assert b"<CharacterCodeIdentifier>0</CharacterCodeIdentifier>" in utf8
    assert b"<CharacterCodeIdentifier>1</CharacterCodeIdentifier>" in sjis


def test_character_outside_shift_jis_is_substituted_marked_and_kept(results: dict[str, AnyResult]) -> None:
    sjis = render_xml(results["single_full"], "shift_jis")
    assert b"&#134071;" in sjis  # 𠮷, in the original kept beside the substitute
    assert "𠮷".encode() not in sjis
    # any XML reader (here libxml2 with its own Shift_JIS decoder) gets the substitute, the mark
    # and the original back
    doc = etree.fromstring(sjis)
    name = doc.find(".//ResultOfQualificationConfirmation/Name")
    assert name is not None
    assert name.text == "吉田\u3000花子"
    assert name.get(f"{{{GAIJI_NS}}}substituted") == "1"
    assert name.get(f"{{{GAIJI_NS}}}original") == "𠮷田\u3000花子"
    utf8 = render_xml(results["single_full"], "utf-8")
    assert "𠮷田".encode() in utf8
    assert etree.fromstring(utf8).findtext(".//Name") == "𠮷田\u3000花子"


def test_formats_of_the_layout(results: dict[str, AnyResult]) -> None:
    doc = etree.fromstring(render_xml(results["single_full"], "utf-8"))
    res = doc.find(".//ResultOfQualificationConfirmation")
    assert res is not None
    assert res.findtext("InsurerNumber") == "  138057"
    assert res.findtext("NameKana") == "ﾖｼﾀﾞ ﾊﾅｺ"
    assert res.findtext("PostNumber") == "100-8916"
    assert res.findtext("InsuredPartialContributionRatio") == "030"
    assert res.findtext("ElderlyRecipientCertificateInfo/ElderlyRecipientContributionRatio") == "020"
    assert res.findtext("ReferenceNumber") == "24434"
    assert len(res.findall("SpecificDiseasesCertificateList/SpecificDiseasesCertificateInfo")) == 2
    assert doc.findtext(".//ProcessExecutionTime") == "20261128093015"
    assert doc.findtext(".//QualificationConfirmationDate") == "20261128"


def test_face_result_has_no_search_echo_and_every_consent_item(results: dict[str, AnyResult]) -> None:
    doc = etree.fromstring(render_xml(results["face_consents"], "utf-8"))
    assert doc.findtext("MessageHeader/ReferenceClassification") == "1"
    assert doc.find(".//QualificationConfirmSearchInfo") is None
    res = doc.find(".//ResultOfQualificationConfirmation")
    assert res is not None
    for prefix in ("SpecificHealthCheckupsInfo", "PharmacistsInfo", "DiagnosisInfo", "OperationInfo"):
        assert res.findtext(f"{prefix}ConsFlg") == "1"
        assert res.findtext(f"{prefix}ConsTime") == "20261128092900"
        assert res.findtext(f"{prefix}AvailableTime") == "20261129092900"  # + 24 h (outpatient)
    assert res.findtext("LimitApplicationCertificateRelatedConsFlg") == "1"
    assert res.findtext("SpecificDiseasesCertificateRelatedConsFlg") == "1"
    refused = etree.fromstring(render_xml(results["face_no_consent"], "utf-8"))
    for prefix in ("SpecificHealthCheckupsInfo", "PharmacistsInfo", "DiagnosisInfo", "OperationInfo"):
        assert refused.findtext(f".//{prefix}ConsFlg") == "0"
        assert refused.find(f".//{prefix}ConsTime") is None


def test_inpatient_consent_has_no_available_time() -> None:
    consent = ConsentChoices(consent_time=t.CLOCK, drug=True, setting="inpatient")
    assert consent.available_time is None
    assert ConsentChoices(consent_time=t.CLOCK).available_time == t.CLOCK + dt.timedelta(hours=24)


def test_server_down_is_an_abnormal_end(results: dict[str, AnyResult]) -> None:
    doc = etree.fromstring(render_xml(results["single_server_down"], "utf-8"))
    assert doc.findtext("MessageHeader/SegmentOfResult") == "9"
    assert doc.findtext("MessageHeader/ErrorCode") == "unavailable"
    assert doc.findtext("MessageBody/ProcessingResultStatus") == "2"
    assert doc.find(".//QualificationValidity") is None


def test_bulk_download_has_one_unit_per_person_and_in_progress_none(results: dict[str, AnyResult]) -> None:
    pending = etree.fromstring(render_xml(results["bulk_in_progress"], "utf-8"))
    assert pending.findtext("MessageHeader/SegmentOfResult") == "2"
    assert pending.findall(".//BulkConfirmUnit") == []
    done = etree.fromstring(render_xml(results["bulk_done"], "utf-8"))
    units = done.findall("MessageBody/BulkConfirmUnit")
    assert [u.findtext("QualificationValidity") for u in units] == ["1", "2"]
    assert units[0].findtext("QualificationConfirmSearchInfo/InsurerNumber") == "  138057"
    assert units[0].findtext("ReferenceNumber") == "24434"
    assert [u.findtext("LimitApplicationCertificateChanged") for u in units] == ["0", "0"]
    assert done.findtext("MessageHeader/NumberOfProcessingResult") == "2"


def test_json_and_xml_are_renderings_of_the_same_result(results: dict[str, AnyResult]) -> None:
    result = results["single_full"]
    data = to_json(result)
    doc = etree.fromstring(render_xml(result, "utf-8"))
    assert data["file_id"] == "OQSsiquc01res_full"
    assert data["header"]["arbitrary_file_identifier"] == doc.findtext(".//ArbitraryFileIdentifier") == "F-0001"
    assert str(data["validity"]) == doc.findtext(".//QualificationValidity")
    assert data["result"]["insured"]["name"] == doc.findtext(".//Name")
    assert data["reference_number"] == doc.findtext(".//ReferenceNumber")
    assert data["search_info"]["arbitrary_identifier"] == doc.findtext(
        ".//ResultOfQualificationConfirmation/ArbitraryIdentifier"
    )
    assert len(data["result"]["specific_diseases"]) == 2
    face = to_json(results["face_consents"])
    assert face["consents"]["available_time"] == "2026-11-29T09:29:00+09:00"
    assert face["reference_classification"] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("138057", "  138057"), ("06139992", "06139992"), (" 138057 ", "  138057")],
)
def test_insurer_numbers_are_space_padded(value: str, expected: str) -> None:
    assert fmt_insurer_number(value) == expected


def test_small_formats() -> None:
    assert fmt_ratio(30) == "030"
    assert fmt_ratio(10) == "010"
    assert fmt_post_number("１００８９１６") == "100-8916"
    assert fmt_post_number("100-8916") == "100-8916"
    utc = dt.datetime(2026, 11, 28, 0, 30, 15, tzinfo=dt.UTC)
    assert fmt_time(utc) == "20261128093015"  # rendered in Japan time


def _with_names(result: AnyResult, name: str, address: str) -> TerminalResult:
    assert isinstance(result, TerminalResult) and result.eligibility and result.eligibility.insured
    insured = result.eligibility.insured.model_copy(update={"name": name, "address": address})
    return dataclasses.replace(result, eligibility=result.eligibility.model_copy(update={"insured": insured}))


def test_gaiji_in_names_get_documented_substitutes_never_a_bare_mark(results: dict[str, AnyResult]) -> None:
    # はしご高 (IBM extension), たつさき U+FA11, 德, a private-use 外字 and 𩸽 (no table entry)
    result = _with_names(results["single_full"], "髙橋　﨑德\ue000𩸽", "東京都葛\U000e0100飾区\ue000町")
    sjis = render_xml(result, "shift_jis")
    assert validation_errors(family_of(result.file_id), sjis) == []
    # every byte is strict Shift_JIS (JIS X 0201 + JIS X 0208): no CP932 extension, no "?"
    text = sjis.decode("shift_jis")
    assert "?" not in text.split("?>", 1)[1] and "●" not in text
    res = etree.fromstring(sjis).find(".//ResultOfQualificationConfirmation")
    assert res is not None
    marked = {el.tag: (el.text, el.get(f"{{{GAIJI_NS}}}substituted"), el.get(f"{{{GAIJI_NS}}}original"))
              for el in res if el.get(f"{{{GAIJI_NS}}}substituted")}
    assert marked == {
        "InsuredName": ("高橋　崎徳〓〓", "1", "髙橋　﨑德\ue000𩸽"),
        "Name": ("高橋　崎徳〓〓", "1", "髙橋　﨑德\ue000𩸽"),
        "Address": ("東京都葛飾区〓町", "1", "東京都葛\U000e0100飾区\ue000町"),  # the selector dropped
    }
    insurer = res.find("InsurerName")
    assert insurer is not None and insurer.get(f"{{{GAIJI_NS}}}substituted") is None  # all JIS X 0208
    # UTF-8 results carry every character as stored, unmarked
    utf8 = etree.fromstring(render_xml(result, "utf-8")).find(".//ResultOfQualificationConfirmation/Name")
    assert utf8 is not None and utf8.text == "髙橋　﨑德\ue000𩸽" and len(utf8.attrib) == 0
