"""The two renderings of a result, their generic core: the XML (``build_base``) and JSON
(``base_json``) of the base families and the pieces every family's renderer builds on (field
formats, the result header). ``documents.render_xml`` (clinic software) and ``documents.to_json``
(new software) choose the family's renderer.

Both read the same model objects (``model.py``). XML element order is the one of the reference
layout (docs/xml-interface.md); the XSDs under ``xsd/`` pin it.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from typing import Any

from lxml import etree

from clinic_terminal.xmlif.codec import CHARACTER_CODE_IDENTIFIER
from clinic_terminal.xmlif.kana import to_halfwidth_kana
from clinic_terminal.xmlif.model import (
    BulkDownloadResult,
    BulkRegistrationResult,
    BulkUnit,
    ConsentChoices,
    Processing,
    ReferenceRegistrationResult,
    ResultHeader,
    SearchInfo,
    TerminalResult,
    XmlEncoding,
)
from schemas.charset import to_jis_x0208
from schemas.eligibility import EligibilityResult

JST = dt.timezone(dt.timedelta(hours=9), "JST")


# --- field formats


def fmt_date(value: dt.date) -> str:
    return value.strftime("%Y%m%d")


def fmt_time(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(JST)
    return value.strftime("%Y%m%d%H%M%S")


def fmt_insurer_number(value: str) -> str:
    """8 characters, left-padded with spaces (never zeros): ``138057`` → ``"  138057"``."""
    return value.strip().rjust(8)


def fmt_ratio(percent: int) -> str:
    return f"{percent:03d}"


def fmt_post_number(value: str) -> str:
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", value) if ch.isdigit())
    return f"{digits[:3]}-{digits[3:]}" if len(digits) == 7 else value


# --- XML


def _add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _opt(parent: etree._Element, tag: str, text: str | None) -> None:
    if text is not None and text != "":
        _add(parent, tag, text)


# Shift_JIS results: a name or address with characters outside JIS X 0208 is written with their
# substitutes (schemas/charset.py: 髙→高, 𠮷→吉, otherwise 〓) and marked with two attributes of
# this namespace: ``gaiji:substituted="1"`` and ``gaiji:original`` (the text as stored; its
# characters outside JIS X 0208 written as numeric character references) — docs/xml-interface.md
GAIJI_NS = "urn:shikaku:xmlif:gaiji"
_SUBSTITUTED = f"{{{GAIJI_NS}}}substituted"
_ORIGINAL = f"{{{GAIJI_NS}}}original"


def _person_text(parent: etree._Element, tag: str, value: str | None, encoding: XmlEncoding) -> None:
    """A name/address element (none when ``value`` is empty), substituted and marked as above."""
    if value is None or value == "":
        return
    shown, changed = to_jis_x0208(value) if encoding == "shift_jis" else (value, False)
    if not changed:
        _add(parent, tag, value)
        return
    el = etree.SubElement(parent, tag, nsmap={"gaiji": GAIJI_NS})
    el.text = shown
    el.set(_SUBSTITUTED, "1")
    el.set(_ORIGINAL, value)


def _opt_date(parent: etree._Element, tag: str, value: dt.date | None) -> None:
    if value is not None:
        _add(parent, tag, fmt_date(value))


def _header(
    root: etree._Element,
    header: ResultHeader,
    encoding: XmlEncoding,
    *,
    reference_classification: int | None = None,
    reception_number: str | None = None,
    counts: tuple[int, int, int] | None = None,
) -> None:
    el = _add(root, "MessageHeader")
    _add(el, "ProcessExecutionTime", fmt_time(header.execution_time))
    _add(el, "QualificationConfirmationDate", fmt_date(header.confirmation_date))
    _add(el, "MedicalInstitutionCode", header.facility_code)
    _opt(el, "ArbitraryFileIdentifier", header.arbitrary_file_identifier)
    _opt(el, "ReceptionNumber", reception_number)
    if reference_classification is not None:
        _add(el, "ReferenceClassification", str(reference_classification))
    _add(el, "SegmentOfResult", str(header.segment))
    _opt(el, "ErrorCode", header.error_code)
    _opt(el, "ErrorMessage", header.error_message)
    if counts is not None:
        _add(el, "NumberOfProcessingResult", str(counts[0]))
        _add(el, "NumberOfNormalProcessing", str(counts[1]))
        _add(el, "NumberOfError", str(counts[2]))
    _add(el, "CharacterCodeIdentifier", CHARACTER_CODE_IDENTIFIER[encoding])


def _search_info(parent: etree._Element, info: SearchInfo) -> None:
    el = _add(parent, "QualificationConfirmSearchInfo")
    _add(el, "InsurerNumber", fmt_insurer_number(info.insurer_number))
    _opt(el, "InsuredCardSymbol", info.symbol)
    _add(el, "InsuredIdentificationNumber", info.number)
    _opt(el, "InsuredBranchNumber", info.branch)
    _add(el, "Birthdate", fmt_date(info.birth_date))
    _add(el, "LimitApplicationCertificateRelatedConsFlg", "1" if info.limit_consent else "0")
    _opt(el, "ArbitraryIdentifier", info.arbitrary_identifier)


def _processing(parent: etree._Element, processing: Processing) -> None:
    _add(parent, "ProcessingResultStatus", str(processing.status))
    _opt(parent, "ProcessingResultCode", processing.code)
    _opt(parent, "ProcessingResultMessage", processing.message)


def _consent(
    parent: etree._Element, prefix: str, flag: bool, time: dt.datetime | None, available: dt.datetime | None
) -> None:
    """``<prefix>ConsFlg`` / ``ConsTime`` / ``AvailableTime`` (times only when consented)."""
    _add(parent, f"{prefix}ConsFlg", "1" if flag else "0")
    if flag and time is not None:
        _add(parent, f"{prefix}ConsTime", fmt_time(time))
        if available is not None:
            _add(parent, f"{prefix}AvailableTime", fmt_time(available))


def _result(
    parent: etree._Element,
    eligibility: EligibilityResult,
    *,
    limit_consent: bool,
    specific_consent: bool,
    consent_time: dt.datetime,
    consents: ConsentChoices | None,
    reference_number: str | None,
    arbitrary_identifier: str | None,
    encoding: XmlEncoding,
) -> None:
    insured = eligibility.insured
    if insured is None:
        return
    el = _add(parent, "ResultOfQualificationConfirmation")
    _add(el, "InsuredCardClassification", insured.card_classification)
    _add(el, "InsurerNumber", fmt_insurer_number(insured.insurer_number))
    _opt(el, "InsuredCardSymbol", insured.symbol)
    _add(el, "InsuredIdentificationNumber", insured.number)
    _opt(el, "InsuredBranchNumber", insured.branch)
    _add(el, "PersonalFamilyClassification", insured.personal_family)
    if insured.personal_family == "1":
        _person_text(el, "InsuredName", insured.name, encoding)
    _person_text(el, "Name", insured.name, encoding)
    _add(el, "NameKana", to_halfwidth_kana(insured.name_kana))
    _add(el, "Sex1", insured.sex)
    _add(el, "Birthdate", fmt_date(insured.birth_date))
    _person_text(el, "Address", insured.address, encoding)
    _opt(el, "PostNumber", None if insured.post_number is None else fmt_post_number(insured.post_number))
    _add(el, "QualificationDate", fmt_date(insured.valid_from))
    if insured.reason_of_loss is not None:
        _opt_date(el, "DisqualificationDate", insured.valid_to)
    _add(el, "InsuredCardValidDate", fmt_date(insured.valid_from))
    _opt_date(el, "InsuredCardExpirationDate", insured.valid_to)
    _add(el, "InsuredPartialContributionRatio", fmt_ratio(insured.copay_ratio))
    _opt(el, "ReasonOfLoss", insured.reason_of_loss)
    _person_text(el, "InsurerName", insured.insurer_name, encoding)
    if eligibility.elderly is not None:
        eld = eligibility.elderly
        info = _add(el, "ElderlyRecipientCertificateInfo")
        _opt_date(info, "ElderlyRecipientCertificateDate", eld.certificate_date)
        _add(info, "ElderlyRecipientValidStartDate", fmt_date(eld.valid_from))
        _opt_date(info, "ElderlyRecipientValidEndDate", eld.valid_to)
        _add(info, "ElderlyRecipientContributionRatio", fmt_ratio(eld.copay_ratio))
    _consent(el, "LimitApplicationCertificateRelated", limit_consent, consent_time, None)
    if eligibility.limit_certificate is not None:
        lim = eligibility.limit_certificate
        info = _add(el, "LimitApplicationCertificateRelatedInfo")
        _add(info, "LimitApplicationCertificateClassification", lim.kind)
        _add(info, "LimitApplicationCertificateClassificationFlag", lim.classification)
        _add(info, "LimitApplicationCertificateValidStartDate", fmt_date(lim.valid_from))
        _opt_date(info, "LimitApplicationCertificateValidEndDate", lim.valid_to)
    _consent(el, "SpecificDiseasesCertificateRelated", specific_consent, consent_time, None)
    if eligibility.specific_diseases:
        lst = _add(el, "SpecificDiseasesCertificateList")
        for disease in eligibility.specific_diseases:
            info = _add(lst, "SpecificDiseasesCertificateInfo")
            _add(info, "SpecificDiseasesDiseaseCategory", disease.category)
            _add(info, "SpecificDiseasesValidStartDate", fmt_date(disease.valid_from))
            _opt_date(info, "SpecificDiseasesValidEndDate", disease.valid_to)
            if disease.self_pay is not None:
                _add(info, "SpecificDiseasesSelfPay", str(disease.self_pay))
    if eligibility.public_expenses:  # 公費負担医療 受給者証 (our element names: docs/xml-interface.md)
        lst = _add(el, "MedicalSubsidyCertificateList")
        for subsidy in eligibility.public_expenses:
            info = _add(lst, "MedicalSubsidyCertificateInfo")
            _add(info, "MedicalSubsidyInsurerNumber", subsidy.payer_number)
            _add(info, "MedicalSubsidyRecipientNumber", subsidy.recipient_number)
            _add(info, "MaxCopaymentAmount", str(subsidy.monthly_cap))
            _add(info, "MedicalSubsidyValidStartDate", fmt_date(subsidy.valid_from))
            _opt_date(info, "MedicalSubsidyValidEndDate", subsidy.valid_to)
    if consents is not None:
        at, until = consents.consent_time, consents.available_time
        _consent(el, "SpecificHealthCheckupsInfo", consents.checkup, at, until)
        _consent(el, "PharmacistsInfo", consents.drug, at, until)
        _consent(el, "DiagnosisInfo", consents.clinical, at, until)
        _consent(el, "OperationInfo", consents.clinical, at, until)
    _opt(el, "ReferenceNumber", reference_number)
    _opt(el, "ArbitraryIdentifier", arbitrary_identifier)


def _single(root: etree._Element, result: TerminalResult, encoding: XmlEncoding) -> None:
    _header(root, result.header, encoding, reference_classification=result.reference_classification)
    body = _add(root, "MessageBody")
    if result.search_info is not None and result.reference_classification == 2:
        _search_info(body, result.search_info)
    _processing(body, result.processing)
    eligibility = result.eligibility
    if eligibility is None:
        return
    _add(body, "QualificationValidity", str(eligibility.validity))
    if eligibility.insured is None:
        return
    consents = result.consents
    if consents is not None:
        limit, specific, at = (
            consents.limit_certificate,
            consents.specific_diseases_consent,
            consents.consent_time,
        )
    else:
        limit = specific = result.search_info is not None and result.search_info.limit_consent
        at = result.header.execution_time
    _result(
        _add(body, "ResultList"),
        eligibility,
        limit_consent=limit,
        specific_consent=specific,
        consent_time=at,
        consents=consents,
        reference_number=result.reference_number,
        arbitrary_identifier=None if result.search_info is None else result.search_info.arbitrary_identifier,
        encoding=encoding,
    )


def _bulk_unit(parent: etree._Element, unit: BulkUnit, header: ResultHeader, encoding: XmlEncoding) -> None:
    el = _add(parent, "BulkConfirmUnit")
    _search_info(el, unit.search_info)
    eligibility = unit.eligibility
    processing = Processing(
        1 if eligibility.processing.status == "ok" else 2,
        eligibility.processing.code,
        eligibility.processing.message,
    )
    _processing(el, processing)
    _add(el, "QualificationValidity", str(eligibility.validity))
    _result(
        el,
        eligibility,
        limit_consent=unit.search_info.limit_consent,
        specific_consent=unit.search_info.limit_consent,
        consent_time=header.execution_time,
        consents=None,
        reference_number=None,
        arbitrary_identifier=unit.search_info.arbitrary_identifier,
        encoding=encoding,
    )
    _opt(el, "ReferenceNumber", unit.reference_number)
    _add(el, "LimitApplicationCertificateChanged", "1" if unit.limit_certificate_changed else "0")


BaseResult = TerminalResult | BulkRegistrationResult | BulkDownloadResult | ReferenceRegistrationResult


def build_base(root: etree._Element, result: BaseResult, encoding: XmlEncoding) -> None:
    """The base families' documents under ``root`` (``<XmlMsg>``); the families that build on
    this module write theirs themselves (``documents.build_tree`` chooses)."""
    if isinstance(result, TerminalResult):
        _single(root, result, encoding)
    elif isinstance(result, BulkRegistrationResult):
        _header(root, result.header, encoding, reception_number=result.reception_number)
        _processing(_add(root, "MessageBody"), result.processing)
    elif isinstance(result, BulkDownloadResult):
        units = result.units
        counts = (len(units), len(units) - result.error_count, result.error_count) if units else None
        _header(root, result.header, encoding, reception_number=result.reception_number, counts=counts)
        body = _add(root, "MessageBody")
        for unit in units:
            _bulk_unit(body, unit, result.header, encoding)
    else:
        _header(root, result.header, encoding)
        body = _add(root, "MessageBody")
        _processing(body, result.processing)
        _opt(body, "ReferenceNumber", result.reference_number)


# --- JSON


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def header_json(header: ResultHeader) -> dict[str, Any]:
    return {
        "execution_time": _iso(header.execution_time),
        "confirmation_date": _iso(header.confirmation_date),
        "facility_code": header.facility_code,
        "arbitrary_file_identifier": header.arbitrary_file_identifier,
        "segment": header.segment,
        "error_code": header.error_code,
        "error_message": header.error_message,
    }


def _processing_json(processing: Processing) -> dict[str, Any]:
    return {"status": processing.status, "code": processing.code, "message": processing.message}


def search_info_json(info: SearchInfo) -> dict[str, Any]:
    return {
        "insurer_number": info.insurer_number,
        "symbol": info.symbol,
        "number": info.number,
        "branch": info.branch,
        "birth_date": _iso(info.birth_date),
        "limit_consent": info.limit_consent,
        "arbitrary_identifier": info.arbitrary_identifier,
    }


def consents_json(consents: ConsentChoices) -> dict[str, Any]:
    return {
        "consent_time": _iso(consents.consent_time),
        "available_time": _iso(consents.available_time),
        "setting": consents.setting,
        "drug": consents.drug,
        "checkup": consents.checkup,
        "clinical": consents.clinical,
        "limit_certificate": consents.limit_certificate,
        "specific_diseases": consents.specific_diseases_consent,
    }


def _eligibility_json(result: EligibilityResult | None) -> dict[str, Any] | None:
    return None if result is None else result.model_dump(mode="json")


def _single_json(result: TerminalResult) -> dict[str, Any]:
    return {
        "reference_classification": result.reference_classification,
        "search_info": None if result.search_info is None else search_info_json(result.search_info),
        "processing": _processing_json(result.processing),
        "validity": None if result.eligibility is None else result.eligibility.validity,
        "result": _eligibility_json(result.eligibility),
        "consents": None if result.consents is None else consents_json(result.consents),
        "reference_number": result.reference_number,
    }


def _unit_json(unit: BulkUnit) -> dict[str, Any]:
    return {
        "search_info": search_info_json(unit.search_info),
        "validity": unit.eligibility.validity,
        "result": _eligibility_json(unit.eligibility),
        "reference_number": unit.reference_number,
        "limit_certificate_changed": unit.limit_certificate_changed,
    }


_BODIES: dict[type, Callable[[Any], dict[str, Any]]] = {
    TerminalResult: _single_json,
    BulkRegistrationResult: lambda r: {
        "reception_number": r.reception_number,
        "count": r.count,
        "processing": _processing_json(r.processing),
    },
    BulkDownloadResult: lambda r: {
        "reception_number": r.reception_number,
        "processing": _processing_json(r.processing),
        "units": [_unit_json(u) for u in r.units],
    },
    ReferenceRegistrationResult: lambda r: {
        "reference_number": r.reference_number,
        "processing": _processing_json(r.processing),
    },
}


def base_json(result: BaseResult) -> dict[str, Any]:
    """A base family's result body (``documents.to_json`` adds the file id, kind and header)."""
    return _BODIES[type(result)](result)
