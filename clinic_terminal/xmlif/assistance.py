"""The 医療扶助 (public assistance) families of the folder interface (docs/xml-interface.md, "医療扶助").

- **Single**: an ``OQSsiquc01req`` whose ``InsurerNumber`` is a 公費負担者番号 (法別番号 12) and whose
  ``InsuredIdentificationNumber`` is the 受給者番号 is a 医療扶助 query: the terminal asks
  ``POST /v1/assistance/by-number`` and answers ``OQSsiquc01res`` in the same layout, with
  ``InsuredCardClassification`` ``A1``, ``QualificationValidity`` 1 / 2 / 4 / 6 (6 = 有効（未登録）,
  the 未委託 state) and the tickets in ``PublicExpenseResultList/MedicalTicketInfo``.
- **Bulk**: ``OQSmutic01req`` (``MedicalTreatmentMonth`` YYYYMM) registers a 一括照会 of every
  recipient with a ticket of that 診療年月 for this facility and answers a ``ReceptionNumber``
  (``OQSmutic01res``); ``OQSmutic02req`` downloads it (``POST /v1/assistance/by-month``, one
  ``BulkConfirmUnit`` per recipient in ``OQSmutic02res``).

``parse.py``, ``service.py`` and ``render.py`` call in here for these requests and results; this
module uses their helpers (so they import it inside the functions that need it).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any, Protocol

import pydantic
from lxml import etree

from clinic_terminal.client import ServerError
from clinic_terminal.xmlif.kana import to_halfwidth_kana
from clinic_terminal.xmlif.model import (
    SEGMENT_ABNORMAL,
    AssistanceBulkRequest,
    AssistanceDownloadRequest,
    AssistanceDownloadResult,
    AssistanceRequest,
    AssistanceXmlResult,
    BulkRegistrationResult,
    RequestHeader,
    ResultHeader,
    SearchInfo,
    XmlEncoding,
    person_key,
)
from clinic_terminal.xmlif.parse import RequestError, _descendants, _required, _shown
from clinic_terminal.xmlif.render import (
    _add,
    _header,
    _opt,
    _person_text,
    _processing,
    _search_info,
    fmt_date,
    fmt_insurer_number,
    search_info_json,
)
from clinic_terminal.xmlif.state import TerminalState
from schemas.assistance import AssistanceMonth, AssistanceQuery, AssistanceResult

#: 法別番号 of 生活保護 (医療扶助): an InsurerNumber starting with it is a 公費負担者番号
ASSISTANCE_LAW = "12"
#: the terminal's reception numbers of a 医療扶助 一括照会 point at this instead of a server batch
BATCH_PREFIX = "assistance:"
CARD_CLASSIFICATION = "A1"  # 被保険者証区分 医療扶助 (OQSCD010)
UNKNOWN_RECEPTION = "reception_unknown"
MESSAGES = {
    "unavailable": "資格確認サーバに接続できません。しばらくしてから再度照会してください",
    "rate_limited": "照会が集中しています。しばらくしてから再度照会してください",
    "unauthorized": "端末の認証に失敗しました。端末の設定を確認してください",
    "forbidden_role": "この端末の権限では医療扶助の資格確認はできません",
    "validation_error": "照会内容に誤りがあります",
    UNKNOWN_RECEPTION: "受付番号が見つかりません",
    "bad_server_answer": "資格確認サーバの応答を読み取れません",
}
DEFAULT_MESSAGE = "資格確認サーバがエラーを返しました（医療扶助）"


class AssistanceServer(Protocol):
    """The two reads the families need (``ServerClient`` has them)."""

    def assistance_by_number(self, query: AssistanceQuery) -> AssistanceResult: ...

    def assistance_by_month(self, month: str) -> AssistanceMonth: ...


def is_assistance_number(insurer_number: str) -> bool:
    return len(insurer_number) == 8 and insurer_number.startswith(ASSISTANCE_LAW)


def _query(info: SearchInfo, as_of: dt.date | None) -> AssistanceQuery:
    return AssistanceQuery(
        payer_number=info.insurer_number,
        recipient_number=unicodedata.normalize("NFKC", info.number).strip(),
        birth_date=info.birth_date,
        as_of=as_of,
    )


# --- reading the request


def assistance_request(header: RequestHeader, info: SearchInfo) -> AssistanceRequest:
    """A single query with a 公費負担者番号: the 受給者番号 must be 7 digits."""
    try:
        _query(info, None)
    except pydantic.ValidationError as exc:
        raise RequestError(
            f"InsuredIdentificationNumber {_shown(info.number)}: a 受給者番号 (医療扶助) must be 7 digits"
        ) from exc
    return AssistanceRequest(header, info)


def parse_assistance_bulk(
    kind: str, header: RequestHeader, root: etree._Element, body: etree._Element
) -> AssistanceBulkRequest | AssistanceDownloadRequest:
    if kind == "assistance_bulk_download":
        return AssistanceDownloadRequest(header, _required(root, "ReceptionNumber", deep=True).strip())
    found = _descendants(body, "MedicalTreatmentMonth")
    if len(found) != 1:
        raise RequestError(
            "MessageBody/MedicalTreatmentMonth is missing" if not found else "MedicalTreatmentMonth occurs twice"
        )
    text = unicodedata.normalize("NFKC", found[0].text or "").strip()
    if not re.fullmatch(r"(19|20)[0-9]{2}(0[1-9]|1[0-2])", text):
        raise RequestError(f"MedicalTreatmentMonth {_shown(found[0].text or '')} is not a month (YYYYMM)")
    return AssistanceBulkRequest(header, text)


# --- answering


def _result_header(request: RequestHeader, now: dt.datetime) -> ResultHeader:
    return ResultHeader(
        execution_time=now,
        confirmation_date=request.confirmation_date or now.date(),
        facility_code=request.facility_code,
        arbitrary_file_identifier=request.arbitrary_file_identifier,
    )


def _failed(header: ResultHeader, exc: Exception) -> ResultHeader:
    detail: str | None
    if isinstance(exc, ServerError):
        code, detail = exc.code, exc.message
    else:  # an answer that does not parse
        code, detail = "bad_server_answer", str(exc).splitlines()[0]
    return _abnormal(header, code, detail)


def _abnormal(header: ResultHeader, code: str, detail: str | None) -> ResultHeader:
    text = MESSAGES.get(code, DEFAULT_MESSAGE)
    message = f"{text}（{detail}）" if detail else text
    return ResultHeader(
        header.execution_time, header.confirmation_date, header.facility_code,
        header.arbitrary_file_identifier, SEGMENT_ABNORMAL, code, message,
    )


def answer_assistance(
    server: AssistanceServer,
    state: TerminalState,
    file_id: str,
    request: AssistanceRequest | AssistanceBulkRequest | AssistanceDownloadRequest,
    now: dt.datetime,
) -> AssistanceXmlResult | BulkRegistrationResult | AssistanceDownloadResult:
    header = _result_header(request.header, now)
    if isinstance(request, AssistanceRequest):
        info = request.search_info
        try:
            answer = server.assistance_by_number(_query(info, request.header.confirmation_date))
        except (ServerError, ValueError) as exc:  # ValueError: an answer that does not parse
            return AssistanceXmlResult(file_id, _failed(header, exc), None, info)
        reference = state.reference_number(person_key(info.insurer_number, "", info.number, None))
        return AssistanceXmlResult(file_id, header, answer, info, reference)
    if isinstance(request, AssistanceBulkRequest):
        month = f"{request.month[:4]}-{request.month[4:]}"
        reception = state.add_reception(f"{now:%Y%m%d%H%M%S}", BATCH_PREFIX + month, request.header.facility_code, [])
        return BulkRegistrationResult(file_id, header, reception)
    known = state.reception(request.reception_number)
    if known is None or known[1] != request.header.facility_code or not known[0].startswith(BATCH_PREFIX):
        failed = _abnormal(header, UNKNOWN_RECEPTION, request.reception_number)
        return AssistanceDownloadResult(file_id, failed, request.reception_number)
    month = known[0].removeprefix(BATCH_PREFIX)
    try:
        answered = server.assistance_by_month(month)
    except (ServerError, ValueError) as exc:
        return AssistanceDownloadResult(file_id, _failed(header, exc), request.reception_number, month.replace("-", ""))
    return AssistanceDownloadResult(
        file_id, header, request.reception_number, month.replace("-", ""), tuple(answered.results)
    )


# --- writing the result


def _recipient(
    parent: etree._Element,
    answer: AssistanceResult,
    encoding: XmlEncoding,
    *,
    reference_number: str | None = None,
    arbitrary_identifier: str | None = None,
) -> None:
    """``ResultOfQualificationConfirmation`` of a recipient (none for ``not_found``)."""
    who = answer.recipient
    if who is None:
        return
    el = _add(parent, "ResultOfQualificationConfirmation")
    _add(el, "InsuredCardClassification", CARD_CLASSIFICATION)
    _add(el, "InsurerNumber", fmt_insurer_number(who.payer_number))  # 公費負担者番号
    _add(el, "InsuredIdentificationNumber", who.recipient_number)  # 受給者番号
    _person_text(el, "Name", who.name, encoding)
    _add(el, "NameKana", to_halfwidth_kana(who.name_kana))
    _add(el, "Sex1", who.sex)
    _add(el, "Birthdate", fmt_date(who.birth_date))
    if answer.tickets:
        listing = _add(el, "PublicExpenseResultList")
        for t in answer.tickets:
            info = _add(listing, "MedicalTicketInfo")
            _add(info, "TicketType", t.ticket_kind)  # 1 医療券, 2 調剤券
            _add(info, "MedicalTicketValidDate", fmt_date(t.valid_from))
            if t.valid_to is not None:
                _add(info, "MedicalTicketExpirationDate", fmt_date(t.valid_to))
            _add(info, "MedicalTreatmentMonth", t.month.replace("-", ""))
            _add(info, "DesignatedMedicalInstitutionCode", t.facility_code)
            if t.self_pay is not None:
                _add(info, "SelfPayAmount", str(t.self_pay))
    _opt(el, "ReferenceNumber", reference_number)
    _opt(el, "ArbitraryIdentifier", arbitrary_identifier)


def build_assistance(
    root: etree._Element, result: AssistanceXmlResult | AssistanceDownloadResult, encoding: XmlEncoding
) -> None:
    if isinstance(result, AssistanceXmlResult):
        _header(root, result.header, encoding, reference_classification=2)
        body = _add(root, "MessageBody")
        _search_info(body, result.search_info)
        _processing(body, result.processing)
        answer = result.answer
        if answer is None:
            return
        _add(body, "QualificationValidity", str(answer.validity))
        if answer.recipient is not None:
            _recipient(
                _add(body, "ResultList"), answer, encoding, reference_number=result.reference_number,
                arbitrary_identifier=result.search_info.arbitrary_identifier,
            )
        return
    normal = result.header.segment != SEGMENT_ABNORMAL
    counts = (len(result.answers), len(result.answers), 0) if normal else None
    _header(root, result.header, encoding, reception_number=result.reception_number, counts=counts)
    body = _add(root, "MessageBody")
    if result.month is not None:
        _add(body, "MedicalTreatmentMonth", result.month)
    for answer in result.answers:
        unit = _add(body, "BulkConfirmUnit")
        _add(unit, "ProcessingResultStatus", "1")
        _add(unit, "QualificationValidity", str(answer.validity))
        _recipient(unit, answer, encoding)


def assistance_json(result: AssistanceXmlResult | AssistanceDownloadResult) -> dict[str, Any]:
    processing = {
        "status": result.processing.status, "code": result.processing.code, "message": result.processing.message,
    }
    if isinstance(result, AssistanceXmlResult):
        answer = result.answer
        return {
            "search_info": search_info_json(result.search_info),
            "processing": processing,
            "validity": None if answer is None else answer.validity,
            "result": None if answer is None else answer.model_dump(mode="json"),
            "reference_number": result.reference_number,
        }
    return {
        "reception_number": result.reception_number,
        "month": result.month,
        "processing": processing,
        "units": [a.model_dump(mode="json") for a in result.answers],
    }
