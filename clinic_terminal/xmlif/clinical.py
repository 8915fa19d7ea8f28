"""The 薬剤情報 / 特定健診情報 / 診療・手術情報 request/result families of the folder interface.

Clinic software asks for a patient's drug information (``OQSsimed01req``), 特定健診 results
(``OQSsichk01req``) or 診療・手術 information (``OQSsiprc01req``, under the ``clinical`` consent)
by insurance number and date range; the terminal answers with the items of that range that the
server serves under the patient's consent, given at a card check on this terminal (the kiosk's
face file remembers the visit: ``remember_visit``). No card check here, no consent, or a consent
that has ended: an abnormal end with the server's code (``consent_required``, ``consent_expired``),
no items. Names, layout and what is ours: docs/xml-interface.md ("薬剤情報, 特定健診情報 and
診療・手術情報").

``parse.py`` and ``render.py`` call in here for these families; this module uses their helpers
(so they import it inside the functions that need it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from lxml import etree

from clinic_terminal.client import ServerError
from clinic_terminal.xmlif.model import (
    SEGMENT_ABNORMAL,
    ClinicalFamily,
    ClinicalRequest,
    ClinicalResult,
    RequestHeader,
    ResultHeader,
    XmlEncoding,
    person_key,
)
from clinic_terminal.xmlif.parse import RequestError, _optional, _required, parse_date, parse_insurer_number
from clinic_terminal.xmlif.render import JST, _add, _header, _opt, _processing, fmt_date, fmt_insurer_number
from clinic_terminal.xmlif.state import TerminalState
from schemas.card import CheckupItem, Checkups, MedicationItem, Medications
from schemas.eligibility import EligibilityResult
from schemas.procedures import ProcedureItem, Procedures

#: request family (file name stem) → what it asks for
CLINICAL_FAMILIES: dict[str, ClinicalFamily] = {
    "OQSsimed01": "medications", "OQSsichk01": "checkups", "OQSsiprc01": "procedures",
}
#: the consent flags each result carries (the names of the eligibility result's consent items):
#: the ``clinical`` consent is 診療情報 and 手術情報 both
CONSENT_FLAGS = {
    "medications": ("PharmacistsInfoConsFlg",),
    "checkups": ("SpecificHealthCheckupsInfoConsFlg",),
    "procedures": ("DiagnosisInfoConsFlg", "OperationInfoConsFlg"),
}
#: ProcedureClassification: 1 診療, 2 手術 (our codes)
PROCEDURE_CLASSIFICATION = {"診療": "1", "手術": "2"}
NO_VISIT = "consent_required"  # no card check of this person on this terminal: no consent to read under
MESSAGES = {
    "consent_required": "{what}の閲覧に患者の同意がありません。マイナ保険証で受付し、同意を得てください",
    "consent_expired": "{what}の閲覧の同意の期限が切れています。マイナ保険証で再度受付してください",
    "forbidden_role": "この端末の権限では{what}を閲覧できません",
    "unavailable": "資格確認サーバに接続できません。しばらくしてから再度照会してください",
}
WHAT = {"medications": "薬剤情報", "checkups": "特定健診情報", "procedures": "診療・手術情報"}


class ClinicalServer(Protocol):
    """The two reads the families need (``ServerClient`` has them)."""

    def medications(self, visit_id: str) -> Medications: ...

    def checkups(self, visit_id: str) -> Checkups: ...

    def procedures(self, visit_id: str) -> Procedures: ...


def remember_visit(state: TerminalState, result: EligibilityResult, facility_code: str) -> None:
    """After a card check at the reader: the visit that later 薬剤情報 / 特定健診情報 requests of
    this person at this facility are read through (the newest one wins)."""
    insured = result.insured
    if result.visit_id is None or insured is None:
        return
    key = person_key(insured.insurer_number, insured.symbol, insured.number, insured.branch)
    state.set_visit(key, facility_code, result.visit_id)


# --- reading the request


def parse_clinical(family: ClinicalFamily, header: RequestHeader, body: etree._Element) -> ClinicalRequest:
    """``MessageBody``: InsurerNumber, InsuredCardSymbol?, InsuredIdentificationNumber,
    InsuredBranchNumber?, StartDate?, EndDate? (YYYYMMDD), directly or in one wrapper element."""
    infos = [el for el in body.iter() if isinstance(el.tag, str) and etree.QName(el).localname == "InsurerNumber"]
    if len(infos) != 1:
        raise RequestError("MessageBody/InsurerNumber is missing" if not infos else "InsurerNumber occurs twice")
    unit = infos[0].getparent()
    assert unit is not None
    start_text, end_text = _optional(unit, "StartDate"), _optional(unit, "EndDate")
    start = None if start_text is None else parse_date(start_text, "StartDate")
    end = None if end_text is None else parse_date(end_text, "EndDate")
    if start is not None and end is not None and end < start:
        raise RequestError("EndDate is before StartDate")
    branch = _optional(unit, "InsuredBranchNumber")
    return ClinicalRequest(
        header=header,
        family=family,
        insurer_number=parse_insurer_number(_required(unit, "InsurerNumber")),
        number=_required(unit, "InsuredIdentificationNumber").strip(),
        symbol=_optional(unit, "InsuredCardSymbol") or "",
        branch=branch,
        start=start,
        end=end,
    )


# --- answering


def answer_clinical(
    server: ClinicalServer, state: TerminalState, file_id: str, request: ClinicalRequest, now: dt.datetime
) -> ClinicalResult:
    family = request.family
    key = (request.insurer_number, request.symbol, request.number, request.branch)
    header = ResultHeader(
        execution_time=now,
        confirmation_date=request.header.confirmation_date or now.date(),
        facility_code=request.header.facility_code,
        arbitrary_file_identifier=request.header.arbitrary_file_identifier,
    )

    def abnormal(code: str, detail: str | None = None) -> ClinicalResult:
        text = MESSAGES.get(code, "資格確認サーバがエラーを返しました（{what}）").format(what=WHAT[family])
        message = f"{text}（{detail}）" if detail else text
        failed = ResultHeader(
            header.execution_time, header.confirmation_date, header.facility_code,
            header.arbitrary_file_identifier, SEGMENT_ABNORMAL, code, message,
        )
        return ClinicalResult(file_id, failed, family, key)

    visit_id = state.visit_for(request.key, request.header.facility_code)
    if visit_id is None:
        return abnormal(NO_VISIT, "この端末でのマイナ保険証の受付がありません")
    try:
        found: Medications | Checkups | Procedures = (
            server.medications(visit_id) if family == "medications"
            else server.checkups(visit_id) if family == "checkups"
            else server.procedures(visit_id)
        )
    except ServerError as exc:
        return abnormal(exc.code)
    except ValueError as exc:  # an answer that does not parse
        return abnormal("bad_server_answer", str(exc).splitlines()[0])
    start = max(request.start or found.since, found.since)
    end = request.end or now.astimezone(JST).date()
    items = tuple(i for i in found.items if start <= _day(i) <= end)
    return ClinicalResult(file_id, header, family, key, start, end, found.consent_id, items)


def _day(item: MedicationItem | CheckupItem | ProcedureItem) -> dt.date:
    if isinstance(item, ProcedureItem):
        return item.performed_on
    return item.dispensed_on if isinstance(item, MedicationItem) else item.checked_on


# --- writing the result


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def build_clinical(root: etree._Element, result: ClinicalResult, encoding: XmlEncoding) -> None:
    _header(root, result.header, encoding)
    body = _add(root, "MessageBody")
    _processing(body, result.processing)
    insurer, symbol, number, branch = result.key
    _add(body, "InsurerNumber", fmt_insurer_number(insurer))
    _opt(body, "InsuredCardSymbol", symbol)
    _add(body, "InsuredIdentificationNumber", number)
    _opt(body, "InsuredBranchNumber", branch)
    if result.start is None or result.end is None:
        return
    _add(body, "StartDate", fmt_date(result.start))
    _add(body, "EndDate", fmt_date(result.end))
    for flag in CONSENT_FLAGS[result.family]:
        _add(body, flag, "1")
    if result.family == "procedures":
        listing = _add(body, "ProcedureInfoList")
        for p in result.items:
            assert isinstance(p, ProcedureItem)
            el = _add(listing, "ProcedureInfo")
            _add(el, "PerformedDate", fmt_date(p.performed_on))
            _add(el, "MedicalInstitutionCode", p.facility_code)
            _add(el, "ProcedureCode", p.procedure_code)
            _add(el, "ProcedureName", p.procedure_name)
            _add(el, "ProcedureClassification", PROCEDURE_CLASSIFICATION[p.kind])
            _add(el, "InpatientFlg", "1" if p.inpatient else "0")
        return
    if result.family == "medications":
        listing = _add(body, "MedicationInfoList")
        for m in result.items:
            assert isinstance(m, MedicationItem)
            el = _add(listing, "MedicationInfo")
            _add(el, "DispensingDate", fmt_date(m.dispensed_on))
            _add(el, "MedicalInstitutionCode", m.facility_code)
            _add(el, "DrugCode", m.drug_code)
            _add(el, "DrugName", m.drug_name)
            _add(el, "Quantity", _number(m.quantity))
            _add(el, "Unit", m.unit)
            _add(el, "Days", str(m.days))
        return
    listing = _add(body, "SpecificHealthCheckupInfoList")
    for c in result.items:
        assert isinstance(c, CheckupItem)
        el = _add(listing, "SpecificHealthCheckupInfo")
        _add(el, "CheckupDate", fmt_date(c.checked_on))
        for name, value in sorted(c.results.items()):
            item = _add(el, "CheckupItem")
            _add(item, "ItemName", name)
            _add(item, "ItemValue", _number(value))
        _opt(el, "UrineProtein", c.urine_protein)


def clinical_json(result: ClinicalResult) -> dict[str, Any]:
    insurer, symbol, number, branch = result.key
    return {
        "family": result.family,
        "insured": {"insurer_number": insurer, "symbol": symbol, "number": number, "branch": branch},
        "start": None if result.start is None else result.start.isoformat(),
        "end": None if result.end is None else result.end.isoformat(),
        "consent_id": result.consent_id,
        "processing": {
            "status": result.processing.status, "code": result.processing.code, "message": result.processing.message,
        },
        "items": [i.model_dump(mode="json") for i in result.items],
    }
