"""The 訪問診療 / オンライン診療 資格確認 (居宅同意取得型) request/result families of the folder
interface: 再照会 without the card, through the person's course of care.

Clinic software asks, for today's home visit (``OQSsihome01req``) or online consultation
(``OQSsionln01req``), whether a patient under a course of care is still insured, by insurance
number; the day of care is the header's ``QualificationConfirmationDate`` (default today). The
terminal finds the person's course at this facility on the server (``GET /v1/home-courses`` with
the number: the first visit was a card check or a 目視確認, its consent a home-care one), and
re-checks through the course's first visit (``POST /v1/visits/{visit_id}/recheck`` with the kind
of care). No course, a course whose consent does not cover that kind of care, or one that has
ended (its last day, withdrawn, replaced by a later answer — a refusal included): an abnormal end
with the server's code (``consent_required`` / ``consent_expired``), no result.

**The family and element names are ours**: no public source found names the 居宅同意取得型 file
families or elements (docs/xml-interface.md, "訪問診療 and オンライン診療"). They follow the
pattern of the other families (``OQS<si><4 letters><2 digits><req|res>``) and of the 薬剤情報
family (``xmlif/clinical.py``), and the result's eligibility part is the single query's
``ResultOfQualificationConfirmation`` unchanged.

``parse.py``, ``render.py`` and ``service.py`` call in here for these two families (one line each).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from lxml import etree
from pydantic import ValidationError

from clinic_terminal.client import ServerError
from clinic_terminal.xmlif.model import (
    SEGMENT_ABNORMAL,
    ConsentChoices,
    HomeCareFamily,
    HomeCareRequest,
    HomeCareResult,
    RequestHeader,
    ResultHeader,
    XmlEncoding,
)
from clinic_terminal.xmlif.parse import RequestError, _optional, _required, parse_insurer_number
from clinic_terminal.xmlif.render import (
    JST,
    _add,
    _header,
    _opt,
    _processing,
    _result,
    consents_json,
    fmt_date,
    fmt_insurer_number,
    fmt_time,
)
from schemas.eligibility import EligibilityResult
from schemas.homecare import Care, CourseFilter, HomeCourse, HomeCourses

#: request family (file name stem) → what it asks for
HOME_CARE_FAMILIES: dict[str, HomeCareFamily] = {"OQSsihome01": "home_visit", "OQSsionln01": "online_care"}
CARE: dict[HomeCareFamily, Care] = {"home_visit": "visit", "online_care": "online"}
#: CareClassification: 1 訪問診療, 2 オンライン診療 (ours)
CARE_CLASSIFICATION: dict[HomeCareFamily, str] = {"home_visit": "1", "online_care": "2"}
#: ConfirmationMethod of the first visit: 1 暗証番号, 2 顔認証, 3 目視確認 (ours)
CONFIRMATION_METHOD = {"pin": "1", "face": "2", "visual": "3"}
NO_COURSE = "consent_required"
MULTIPLE = "multiple_courses"
WHAT = {"home_visit": "訪問診療", "online_care": "オンライン診療"}
MESSAGES = {
    "consent_required": "{what}の再照会に患者の同意がありません。マイナ保険証（または目視確認）で初回の資格確認を行い、"
                        "診療の期間中の同意を得てください",
    "consent_expired": "{what}の再照会の同意の期限が切れています（最終日の経過、取り消し、または後の受付での回答）。"
                       "初回の資格確認からやり直してください",
    MULTIPLE: "同じ番号で複数の方が該当します。枝番を指定して再照会してください",
    "unavailable": "資格確認サーバに接続できません。しばらくしてから再度照会してください",
    "validation_error": "照会の内容に誤りがあります",
}


class HomeCareServer(Protocol):
    """The two calls the families need (``CardClient`` has them)."""

    def home_courses(self, only: CourseFilter | None = None) -> HomeCourses: ...

    def recheck(self, visit_id: str, *, care: Care = "visit", as_of: str | None = None) -> EligibilityResult: ...


# --- reading the request


def parse_home_care(family: HomeCareFamily, header: RequestHeader, body: etree._Element) -> HomeCareRequest:
    """``MessageBody``: InsurerNumber, InsuredCardSymbol?, InsuredIdentificationNumber,
    InsuredBranchNumber?, directly or in one wrapper element."""
    infos = [el for el in body.iter() if isinstance(el.tag, str) and etree.QName(el).localname == "InsurerNumber"]
    if len(infos) != 1:
        raise RequestError("MessageBody/InsurerNumber is missing" if not infos else "InsurerNumber occurs twice")
    unit = infos[0].getparent()
    assert unit is not None
    return HomeCareRequest(
        header=header,
        family=family,
        insurer_number=parse_insurer_number(_required(unit, "InsurerNumber")),
        number=_required(unit, "InsuredIdentificationNumber").strip(),
        symbol=_optional(unit, "InsuredCardSymbol") or "",
        branch=_optional(unit, "InsuredBranchNumber"),
    )


# --- answering


def answer_home_care(
    server: HomeCareServer, file_id: str, request: HomeCareRequest, now: dt.datetime
) -> HomeCareResult:
    family = request.family
    key = (request.insurer_number, request.symbol, request.number, request.branch)
    day = request.header.confirmation_date or now.astimezone(JST).date()
    header = ResultHeader(
        execution_time=now,
        confirmation_date=day,
        facility_code=request.header.facility_code,
        arbitrary_file_identifier=request.header.arbitrary_file_identifier,
    )

    def abnormal(code: str, detail: str | None = None) -> HomeCareResult:
        text = MESSAGES.get(code, "資格確認サーバがエラーを返しました（{what}）").format(what=WHAT[family])
        failed = ResultHeader(
            header.execution_time, header.confirmation_date, header.facility_code,
            header.arbitrary_file_identifier, SEGMENT_ABNORMAL, code, f"{text}（{detail}）" if detail else text,
        )
        return HomeCareResult(file_id, failed, family, key)

    care = CARE[family]
    try:
        only = CourseFilter(insurer_number=request.insurer_number, symbol=request.symbol, number=request.number,
                            branch=request.branch)
    except ValidationError:
        return abnormal("validation_error", "記号・番号・枝番")
    try:
        courses = server.home_courses(only).courses
    except ServerError as exc:
        return abnormal(exc.code)
    except ValueError as exc:  # an answer that does not parse
        return abnormal("bad_server_answer", str(exc).splitlines()[0])
    covering = [c for c in courses if (c.home_visit if care == "visit" else c.online_care)]
    if not courses:
        return abnormal(NO_COURSE, "この医療機関で同意の期間中の診療がありません")
    if not covering:
        return abnormal(NO_COURSE, f"同意の範囲に{WHAT[family]}が含まれていません")
    if len(covering) > 1:
        return abnormal(MULTIPLE)
    course = covering[0]
    try:
        eligibility = server.recheck(course.visit_id, care=care, as_of=day.isoformat())
    except ServerError as exc:
        return abnormal(exc.code)
    except ValueError as exc:
        return abnormal("bad_server_answer", str(exc).splitlines()[0])
    return HomeCareResult(
        file_id, header, family, key, eligibility, _choices(course), course.consent_id, course.expires_at,
        course.first_visit_at, course.confirmation,
    )


def _choices(course: HomeCourse) -> ConsentChoices:
    return ConsentChoices(consent_time=course.given_at, drug=course.drug, checkup=course.checkup,
                          clinical=course.clinical, limit_certificate=course.limit_certificate, setting="home")


# --- writing the result


def build_home_care(root: etree._Element, result: HomeCareResult, encoding: XmlEncoding) -> None:
    _header(root, result.header, encoding, reference_classification=2)
    body = _add(root, "MessageBody")
    insurer, symbol, number, branch = result.key
    _add(body, "InsurerNumber", fmt_insurer_number(insurer))
    _opt(body, "InsuredCardSymbol", symbol)
    _add(body, "InsuredIdentificationNumber", number)
    _opt(body, "InsuredBranchNumber", branch)
    _processing(body, result.processing)
    eligibility, consents = result.eligibility, result.consents
    if eligibility is None or consents is None:
        return
    info = _add(body, "HomeCareInfo")
    _add(info, "CareClassification", CARE_CLASSIFICATION[result.family])
    if result.first_visit_at is not None:
        _add(info, "FirstVisitDate", fmt_date(result.first_visit_at.astimezone(JST).date()))
    _opt(info, "ConfirmationMethod", CONFIRMATION_METHOD.get(result.confirmation or ""))
    _add(info, "HomeCareConsFlg", "1")
    _add(info, "HomeCareConsTime", fmt_time(consents.consent_time))
    if result.consent_expires_at is not None:
        _add(info, "HomeCareAvailableTime", fmt_time(result.consent_expires_at))
    _add(body, "QualificationValidity", str(eligibility.validity))
    if eligibility.insured is None:
        return
    _result(
        _add(body, "ResultList"),
        eligibility,
        limit_consent=consents.limit_certificate,
        specific_consent=consents.specific_diseases_consent,
        consent_time=consents.consent_time,
        consents=consents,
        reference_number=None,
        arbitrary_identifier=None,
        encoding=encoding,
    )


def home_care_json(result: HomeCareResult) -> dict[str, Any]:
    insurer, symbol, number, branch = result.key
    return {
        "family": result.family,
        "insured": {"insurer_number": insurer, "symbol": symbol, "number": number, "branch": branch},
        "processing": {
            "status": result.processing.status, "code": result.processing.code, "message": result.processing.message,
        },
        "consent_id": result.consent_id,
        "consents": None if result.consents is None else consents_json(result.consents),
        "consent_expires_at": None if result.consent_expires_at is None else result.consent_expires_at.isoformat(),
        "first_visit_at": None if result.first_visit_at is None else result.first_visit_at.isoformat(),
        "confirmation": result.confirmation,
        "validity": None if result.eligibility is None else result.eligibility.validity,
        "result": None if result.eligibility is None else result.eligibility.model_dump(mode="json"),
    }
