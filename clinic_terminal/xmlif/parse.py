"""Reading request files (``req/``). Element order is never relied on; namespaces are ignored.

Every problem becomes a ``RequestError`` whose message is written to ``<request>.err``.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import pydantic
from lxml import etree

from clinic_terminal.xmlif.codec import EncodingProblemError, decode_request
from clinic_terminal.xmlif.model import (
    BulkDownloadRequest,
    BulkRegistrationRequest,
    ReferenceRegistrationRequest,
    RequestHeader,
    RequestKind,
    SearchInfo,
)
from schemas.identifiers import MY_NUMBER_MESSAGE, facility_code_problem, insurer_number_problem, my_number_in

MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_BULK_QUERIES = 10_000

REQUEST_NAME = re.compile(r"^(OQS[A-Za-z]+[0-9]{2})req_(.+)\.xml$")
FAMILIES: dict[str, RequestKind] = {
    "OQSsiquc01": "single",
    "OQSmuquc01": "bulk_registration",
    "OQSmuquc02": "bulk_download",
    "OQSsiimm01": "reference_registration",
    "OQSsimed01": "medications",  # 薬剤情報 (xmlif/clinical.py)
    "OQSsichk01": "checkups",  # 特定健診情報
    "OQSsihome01": "home_visit", "OQSsionln01": "online_care",  # 訪問診療 / オンライン診療 (xmlif/homecare.py)
    "OQSsiprc01": "procedures",  # 診療・手術情報 (xmlif/clinical.py)
    "OQSmutic01": "assistance_bulk_registration",  # 医療扶助 一括照会 (xmlif/assistance.py)
    "OQSmutic02": "assistance_bulk_download",
}

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


class RequestError(ValueError):
    """A request the terminal cannot read; the message says why (it goes into the .err file)."""


SHOWN_LIMIT = 40


def _shown(value: str) -> str:
    """A refused value as a message may quote it: never a My Number, at most 40 characters."""
    if my_number_in(value):
        return "(a 12-digit individual number: not shown, never accepted)"
    return repr(value[:SHOWN_LIMIT] + ("…" if len(value) > SHOWN_LIMIT else ""))


def result_name(request_name: str) -> str:
    """``OQSsiquc01req_x.xml`` → ``OQSsiquc01res_x.xml``."""
    match = REQUEST_NAME.match(request_name)
    if not match:
        raise RequestError(f"{request_name!r} is not a request file name (OQS<family>req_<id>.xml)")
    return f"{match.group(1)}res_{match.group(2)}.xml"


def request_kind(request_name: str) -> RequestKind:
    match = REQUEST_NAME.match(request_name)
    if not match:
        raise RequestError(f"{request_name!r} is not a request file name (OQS<family>req_<id>.xml)")
    family = match.group(1)
    if family not in FAMILIES:
        raise RequestError(f"request family {family} is not supported (supported: {', '.join(FAMILIES)})")
    return FAMILIES[family]


def _local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _children(parent: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in parent if _local(c) == name]


def _descendants(parent: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in parent.iter() if _local(c) == name]


def _text(parent: etree._Element, name: str, *, deep: bool = False) -> str | None:
    found = _descendants(parent, name) if deep else _children(parent, name)
    if not found:
        return None
    if len(found) > 1 and not deep:
        raise RequestError(f"{_local(parent)}/{name} occurs {len(found)} times")
    return found[0].text or ""


def _required(parent: etree._Element, name: str, *, deep: bool = False) -> str:
    value = _text(parent, name, deep=deep)
    if value is None or not value.strip():
        raise RequestError(f"{name} is missing")
    return value


def parse_date(value: str, what: str) -> dt.date:
    text = unicodedata.normalize("NFKC", value).strip()
    if not re.fullmatch(r"[0-9]{8}", text):
        raise RequestError(f"{what} {_shown(value)} is not a date (YYYYMMDD)")
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise RequestError(f"{what} {_shown(value)} is not a date (YYYYMMDD): {exc}") from exc


def parse_insurer_number(value: str) -> str:
    """``"  138057"`` → ``"138057"`` (space padding allowed, check digit verified).

    A zero-padded 国保 number (``"00138057"``; no 法別番号 is ``00``) is read as its 6 digits."""
    text = unicodedata.normalize("NFKC", value).strip()
    if len(text) == 8 and text.startswith("00"):
        text = text[2:]
    problem = insurer_number_problem(text)
    if problem:
        raise RequestError(f"InsurerNumber {_shown(value)}: {problem}")
    return text


def _root(data: bytes) -> etree._Element:
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"request is larger than {MAX_REQUEST_BYTES} bytes")
    if not data.strip():
        raise RequestError("request file is empty")
    try:
        text = decode_request(data)
    except EncodingProblemError as exc:
        raise RequestError(str(exc)) from exc
    try:
        root = etree.fromstring(text, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise RequestError(f"not well-formed XML: {exc}") from exc
    if _local(root) != "XmlMsg":
        raise RequestError(f"root element is <{_local(root)}>, expected <XmlMsg>")
    for el in root.iter():  # free text too (ArbitraryIdentifier …): a result echoes it
        if isinstance(el.tag, str) and el.text and my_number_in(el.text):
            raise RequestError(f"<{_local(el)}>: {MY_NUMBER_MESSAGE}")
    return root


def _section(root: etree._Element, name: str) -> etree._Element:
    found = _children(root, name)
    if len(found) != 1:
        raise RequestError(f"XmlMsg/{name} is missing" if not found else f"XmlMsg/{name} occurs twice")
    return found[0]


def request_header(root: etree._Element, *, date_required: bool) -> RequestHeader:
    header = _section(root, "MessageHeader")
    facility = unicodedata.normalize("NFKC", _required(header, "MedicalInstitutionCode")).strip()
    problem = facility_code_problem(facility)
    if problem:
        raise RequestError(f"MedicalInstitutionCode {_shown(facility)}: {problem}")
    date_text = _text(header, "QualificationConfirmationDate")
    if date_text is None or not date_text.strip():
        if date_required:
            raise RequestError("QualificationConfirmationDate is missing")
        date = None
    else:
        date = parse_date(date_text, "QualificationConfirmationDate")
    arbitrary = _text(header, "ArbitraryFileIdentifier")
    return RequestHeader(facility, date, arbitrary.strip() if arbitrary and arbitrary.strip() else None)


def _optional(parent: etree._Element, name: str) -> str | None:
    value = _text(parent, name)
    if value is None or not value.strip():
        return None
    return value.strip()


def parse_search_info(el: etree._Element) -> SearchInfo:
    insurer = parse_insurer_number(_required(el, "InsurerNumber"))
    number = _required(el, "InsuredIdentificationNumber").strip()
    birth = parse_date(_required(el, "Birthdate"), "Birthdate")
    branch = _optional(el, "InsuredBranchNumber")
    flag = _optional(el, "LimitApplicationCertificateRelatedConsFlg") or "0"
    if flag not in ("0", "1"):
        raise RequestError(f"LimitApplicationCertificateRelatedConsFlg {_shown(flag)} must be 0 or 1")
    info = SearchInfo(
        insurer_number=insurer,
        number=number,
        birth_date=birth,
        symbol=_optional(el, "InsuredCardSymbol") or "",
        branch=None if branch is None else unicodedata.normalize("NFKC", branch),
        limit_consent=flag == "1",
        arbitrary_identifier=_optional(el, "ArbitraryIdentifier"),
    )
    try:
        info.to_query(None)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RequestError(f"QualificationConfirmSearchInfo: {problems}") from exc
    return info


def read_request(name: str, data: bytes) -> tuple[RequestKind, etree._Element, etree._Element]:
    """A request file's kind (from its name), its root and its ``MessageBody``; which family's
    parser reads them is ``documents.parse_request``'s choice (the families that build on this
    module are put together with it there)."""
    kind = request_kind(name)
    root = _root(data)
    return kind, root, _section(root, "MessageBody")


def parse_single(root: etree._Element, body: etree._Element) -> tuple[RequestHeader, SearchInfo]:
    """An ``OQSsiquc01req``'s header and its one search (a 公費負担者番号's is 医療扶助's)."""
    infos = _descendants(body, "QualificationConfirmSearchInfo")
    if len(infos) != 1:
        raise RequestError(
            "MessageBody/QualificationConfirmSearchInfo is missing"
            if not infos
            else f"{len(infos)} QualificationConfirmSearchInfo in a single query"
        )
    return request_header(root, date_required=True), parse_search_info(infos[0])


def parse_base(
    kind: RequestKind, root: etree._Element, body: etree._Element
) -> BulkRegistrationRequest | BulkDownloadRequest | ReferenceRegistrationRequest:
    """The base families but the single query: 一括照会 (registration, download), 参照番号登録."""
    if kind == "bulk_registration":
        infos = _descendants(body, "QualificationConfirmSearchInfo")
        if not infos:
            raise RequestError("no QualificationConfirmSearchInfo in the 一括照会 request")
        if len(infos) > MAX_BULK_QUERIES:
            raise RequestError(f"{len(infos)} queries: at most {MAX_BULK_QUERIES} per 一括照会")
        parsed = []
        for i, el in enumerate(infos, start=1):
            try:
                parsed.append(parse_search_info(el))
            except RequestError as exc:
                raise RequestError(f"QualificationConfirmSearchInfo #{i}: {exc}") from exc
        return BulkRegistrationRequest(request_header(root, date_required=True), tuple(parsed))
    if kind == "bulk_download":
        header = request_header(root, date_required=False)
        reception = _required(root, "ReceptionNumber", deep=True).strip()
        return BulkDownloadRequest(header, reception)
    header = request_header(root, date_required=False)
    units = _descendants(body, "ReferenceNumberRegistrationInfo") or [body]
    if len(units) != 1:
        raise RequestError(f"{len(units)} ReferenceNumberRegistrationInfo: one per OQSsiimm01req")
    unit = units[0]
    reference = _required(unit, "ReferenceNumber").strip()
    if len(reference) > 50:
        raise RequestError("ReferenceNumber is longer than 50 characters")
    branch = _optional(unit, "InsuredBranchNumber")
    return ReferenceRegistrationRequest(
        header=header,
        reference_number=reference,
        insurer_number=parse_insurer_number(_required(unit, "InsurerNumber")),
        number=_required(unit, "InsuredIdentificationNumber").strip(),
        symbol=_optional(unit, "InsuredCardSymbol") or "",
        branch=None if branch is None else unicodedata.normalize("NFKC", branch),
    )
