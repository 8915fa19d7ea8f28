"""The terminal's result model: one model, rendered as JSON (new software) and as XML (clinic software).

Everything the folder interface answers is one of the result types of ``AnyResult``, each carrying a
``ResultHeader``. ``documents.to_json`` and ``documents.render_xml`` read the same objects; nothing
about a result exists in only one of the two renderings.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Literal

from schemas.assistance import AssistanceResult
from schemas.card import CheckupItem, MedicationItem
from schemas.eligibility import ByNumberQuery, EligibilityResult, Insured
from schemas.procedures import ProcedureItem

RequestKind = Literal[
    "single", "bulk_registration", "bulk_download", "reference_registration", "medications", "checkups",
    "procedures", "assistance_bulk_registration", "assistance_bulk_download",
    "home_visit", "online_care",
]
# 薬剤情報 / 特定健診情報 / 診療・手術情報 (xmlif/clinical.py)
ClinicalFamily = Literal["medications", "checkups", "procedures"]
HomeCareFamily = Literal["home_visit", "online_care"]  # 訪問診療 / オンライン診療 再照会 (xmlif/homecare.py)
ConsentSetting = Literal["outpatient", "inpatient", "home"]
XmlEncoding = Literal["utf-8", "shift_jis"]

OUTPATIENT_CONSENT_LIFETIME = dt.timedelta(hours=24)

# SegmentOfResult
SEGMENT_NORMAL = 1
SEGMENT_IN_PROGRESS = 2
SEGMENT_ABNORMAL = 9


def person_key(insurer_number: str, symbol: str, number: str, branch: str | None) -> str:
    """The normalised 4-part insurance number (個人単位被保険者番号) as one string."""

    def norm(value: str | None) -> str:
        return "".join(unicodedata.normalize("NFKC", value or "").split())

    return "|".join((norm(insurer_number), norm(symbol), norm(number), norm(branch)))


@dataclass(frozen=True)
class SearchInfo:
    """``QualificationConfirmSearchInfo`` of a request, as sent (echoed back unchanged)."""

    insurer_number: str  # stripped of the space padding
    number: str
    birth_date: dt.date
    symbol: str = ""
    branch: str | None = None
    limit_consent: bool = False  # LimitApplicationCertificateRelatedConsFlg
    arbitrary_identifier: str | None = None

    def to_query(self, as_of: dt.date | None) -> ByNumberQuery:
        return ByNumberQuery(
            insurer_number=self.insurer_number,
            symbol=self.symbol,
            number=self.number,
            branch=self.branch,
            birth_date=self.birth_date,
            as_of=as_of,
            include_limit_certificate=self.limit_consent,
        )

    @property
    def key(self) -> str:
        return person_key(self.insurer_number, self.symbol, self.number, self.branch)


@dataclass(frozen=True)
class ConsentChoices:
    """The patient's choices at the kiosk after a card check (filled by the consent screen).

    Flags: drug → PharmacistsInfo, checkup → SpecificHealthCheckupsInfo, clinical → DiagnosisInfo
    and OperationInfo, limit_certificate → LimitApplicationCertificate (and SpecificDiseases unless
    ``specific_diseases`` says otherwise). ``AvailableTime`` is ``consent_time + 24 h`` for
    outpatients; inpatient and home-care consent lasts until revoked, so it has none.
    """

    consent_time: dt.datetime
    drug: bool = False
    checkup: bool = False
    clinical: bool = False
    limit_certificate: bool = False
    specific_diseases: bool | None = None
    setting: ConsentSetting = "outpatient"

    @property
    def available_time(self) -> dt.datetime | None:
        if self.setting == "outpatient":
            return self.consent_time + OUTPATIENT_CONSENT_LIFETIME
        return None

    @property
    def specific_diseases_consent(self) -> bool:
        return self.limit_certificate if self.specific_diseases is None else self.specific_diseases


@dataclass(frozen=True)
class ResultHeader:
    """``MessageHeader`` of every result."""

    execution_time: dt.datetime  # ProcessExecutionTime
    confirmation_date: dt.date  # QualificationConfirmationDate
    facility_code: str  # MedicalInstitutionCode
    arbitrary_file_identifier: str | None = None
    segment: int = SEGMENT_NORMAL  # SegmentOfResult: 1 normal, 2 in progress, 9 abnormal
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Processing:
    """ProcessingResultStatus (1 normal, 2 error) with its code and message."""

    status: int = 1
    code: str | None = None
    message: str | None = None


def processing_of(result: EligibilityResult | None, header: ResultHeader) -> Processing:
    """The processing block as rendered: an abnormal end carries the header's error."""
    if result is None:
        return Processing(2, header.error_code, header.error_message)
    if result.processing.status == "error":
        return Processing(2, result.processing.code, result.processing.message)
    notice = {
        "expires_soon": "マイナ保険証の電子証明書の有効期限が3か月以内に切れます",
        "grace_period": "マイナ保険証の電子証明書の有効期限が切れています(資格確認は可能です)",
    }
    if result.certificate_notice is not None:
        return Processing(1, result.certificate_notice, notice[result.certificate_notice])
    return Processing(1, result.processing.code, result.processing.message)


@dataclass(frozen=True)
class TerminalResult:
    """A single eligibility result: by number (``res/``) or after a card check (``face/``)."""

    file_id: str  # the result file's name without ``.xml``
    header: ResultHeader
    reference_classification: Literal[1, 2]  # 1 card, 2 by number
    eligibility: EligibilityResult | None  # None when the query could not be made (segment 9)
    search_info: SearchInfo | None = None  # echoed for by-number results only
    consents: ConsentChoices | None = None  # face results
    reference_number: str | None = None  # 照会番号
    kind: Literal["single", "face", "followup"] = "single"

    @property
    def processing(self) -> Processing:
        return processing_of(self.eligibility, self.header)

    @property
    def insured(self) -> Insured | None:
        return None if self.eligibility is None else self.eligibility.insured


@dataclass(frozen=True)
class BulkUnit:
    """One person of a 一括照会 download (``BulkConfirmUnit``)."""

    search_info: SearchInfo
    eligibility: EligibilityResult
    reference_number: str | None = None
    limit_certificate_changed: bool = False


@dataclass(frozen=True)
class BulkRegistrationResult:
    """Answer to ``OQSmuquc01req``: the ``ReceptionNumber`` to download the results with."""

    file_id: str
    header: ResultHeader
    reception_number: str | None
    count: int = 0
    kind: Literal["bulk_registration"] = "bulk_registration"

    @property
    def processing(self) -> Processing:
        if self.header.segment == SEGMENT_ABNORMAL:
            return Processing(2, self.header.error_code, self.header.error_message)
        return Processing()


@dataclass(frozen=True)
class BulkDownloadResult:
    """Answer to ``OQSmuquc02req``: one unit per person; no units while in progress."""

    file_id: str
    header: ResultHeader
    reception_number: str
    units: tuple[BulkUnit, ...] = ()
    kind: Literal["bulk_download"] = "bulk_download"

    @property
    def processing(self) -> Processing:
        if self.header.segment == SEGMENT_ABNORMAL:
            return Processing(2, self.header.error_code, self.header.error_message)
        return Processing()

    @property
    def error_count(self) -> int:
        return sum(1 for u in self.units if u.eligibility.processing.status == "error")


@dataclass(frozen=True)
class ReferenceRegistrationResult:
    """Answer to ``OQSsiimm01req``: the 照会番号 is kept on the terminal."""

    file_id: str
    header: ResultHeader
    reference_number: str | None
    kind: Literal["reference_registration"] = "reference_registration"

    @property
    def processing(self) -> Processing:
        if self.header.segment == SEGMENT_ABNORMAL:
            return Processing(2, self.header.error_code, self.header.error_message)
        return Processing()


@dataclass(frozen=True)
class ClinicalResult:
    """Answer to a 薬剤情報 / 特定健診情報 request (``xmlif/clinical.py``): the items of the range
    read under the patient's consent; none, with the header's error, when there is no consent."""

    file_id: str
    header: ResultHeader
    family: ClinicalFamily
    key: tuple[str, str, str, str | None]  # insurer number, symbol, number, branch: echoed
    start: dt.date | None = None  # the range answered (None on an abnormal end)
    end: dt.date | None = None
    consent_id: int | None = None
    items: tuple[MedicationItem | CheckupItem | ProcedureItem, ...] = ()

    @property
    def kind(self) -> ClinicalFamily:
        return self.family

    @property
    def processing(self) -> Processing:
        if self.header.segment != SEGMENT_NORMAL:
            return Processing(2, self.header.error_code, self.header.error_message)
        return Processing()


@dataclass(frozen=True)
class HomeCareResult:
    """Answer to a 訪問診療 / オンライン診療 再照会 request (``xmlif/homecare.py``): the person's
    eligibility on the day of care through their course of care; none, with the header's error,
    when there is no course or its consent does not cover the care (or has ended)."""

    file_id: str
    header: ResultHeader
    family: HomeCareFamily
    key: tuple[str, str, str, str | None]  # insurer number, symbol, number, branch: echoed
    eligibility: EligibilityResult | None = None
    consents: ConsentChoices | None = None  # the course's consent (setting home)
    consent_id: int | None = None
    consent_expires_at: dt.datetime | None = None  # the course's end (None: until withdrawn or replaced)
    first_visit_at: dt.datetime | None = None
    confirmation: str | None = None  # the first visit's: pin / face / visual

    @property
    def kind(self) -> HomeCareFamily:
        return self.family

    @property
    def processing(self) -> Processing:
        return processing_of(self.eligibility, self.header)
# --- 医療扶助 (xmlif/assistance.py)


@dataclass(frozen=True)
class AssistanceXmlResult:
    """Answer to a 医療扶助 by-number query (``OQSsiquc01req`` whose InsurerNumber is a
    公費負担者番号, 法別番号 12): the server's answer, None when it could not be asked (segment 9)."""

    file_id: str
    header: ResultHeader
    answer: AssistanceResult | None
    search_info: SearchInfo
    reference_number: str | None = None
    kind: Literal["assistance"] = "assistance"

    @property
    def processing(self) -> Processing:
        if self.answer is None:
            return Processing(2, self.header.error_code, self.header.error_message)
        return Processing()


@dataclass(frozen=True)
class AssistanceDownloadResult:
    """Answer to ``OQSmutic02req``: every recipient with a ticket of the 診療年月 for this facility."""

    file_id: str
    header: ResultHeader
    reception_number: str
    month: str | None = None  # YYYYMM (None when the reception is unknown)
    answers: tuple[AssistanceResult, ...] = ()
    kind: Literal["assistance_bulk_download"] = "assistance_bulk_download"

    @property
    def processing(self) -> Processing:
        if self.header.segment == SEGMENT_ABNORMAL:
            return Processing(2, self.header.error_code, self.header.error_message)
        return Processing()


AnyResult = (
    TerminalResult | BulkRegistrationResult | BulkDownloadResult | ReferenceRegistrationResult | ClinicalResult
    | HomeCareResult
    | AssistanceXmlResult | AssistanceDownloadResult
)


# --- parsed requests


@dataclass(frozen=True)
class RequestHeader:
    facility_code: str
    confirmation_date: dt.date | None
    arbitrary_file_identifier: str | None


@dataclass(frozen=True)
class SingleRequest:
    header: RequestHeader
    search_info: SearchInfo
    kind: Literal["single"] = "single"


@dataclass(frozen=True)
class BulkRegistrationRequest:
    header: RequestHeader
    search_infos: tuple[SearchInfo, ...]
    kind: Literal["bulk_registration"] = "bulk_registration"


@dataclass(frozen=True)
class BulkDownloadRequest:
    header: RequestHeader
    reception_number: str
    kind: Literal["bulk_download"] = "bulk_download"


@dataclass(frozen=True)
class ReferenceRegistrationRequest:
    header: RequestHeader
    reference_number: str
    insurer_number: str
    number: str
    symbol: str = ""
    branch: str | None = None
    kind: Literal["reference_registration"] = "reference_registration"

    @property
    def key(self) -> str:
        return person_key(self.insurer_number, self.symbol, self.number, self.branch)


@dataclass(frozen=True)
class ClinicalRequest:
    """A 薬剤情報 / 特定健診情報 request: the person by insurance number, and a date range."""

    header: RequestHeader
    family: ClinicalFamily
    insurer_number: str
    number: str
    symbol: str = ""
    branch: str | None = None
    start: dt.date | None = None  # StartDate (default: the first day the server serves)
    end: dt.date | None = None  # EndDate (default: today)

    @property
    def key(self) -> str:
        return person_key(self.insurer_number, self.symbol, self.number, self.branch)


@dataclass(frozen=True)
class HomeCareRequest:
    """A 訪問診療 / オンライン診療 再照会 request: the person by insurance number; the day of care
    is the header's ``QualificationConfirmationDate`` (default today)."""

    header: RequestHeader
    family: HomeCareFamily
    insurer_number: str
    number: str
    symbol: str = ""
    branch: str | None = None


@dataclass(frozen=True)
class AssistanceRequest:
    """``OQSsiquc01req`` with a 公費負担者番号 (法別番号 12) as InsurerNumber and the 受給者番号 as
    InsuredIdentificationNumber: a 医療扶助 query (xmlif/assistance.py)."""

    header: RequestHeader
    search_info: SearchInfo
    kind: Literal["assistance"] = "assistance"


@dataclass(frozen=True)
class AssistanceBulkRequest:
    """``OQSmutic01req``: the 医療扶助 一括照会 of one 診療年月 (``MedicalTreatmentMonth``, YYYYMM)."""

    header: RequestHeader
    month: str  # YYYYMM
    kind: Literal["assistance_bulk_registration"] = "assistance_bulk_registration"


@dataclass(frozen=True)
class AssistanceDownloadRequest:
    """``OQSmutic02req``: download the 医療扶助 一括照会 by ``ReceptionNumber``."""

    header: RequestHeader
    reception_number: str
    kind: Literal["assistance_bulk_download"] = "assistance_bulk_download"


AnyRequest = (
    SingleRequest | BulkRegistrationRequest | BulkDownloadRequest | ReferenceRegistrationRequest | ClinicalRequest
    | HomeCareRequest
    | AssistanceRequest | AssistanceBulkRequest | AssistanceDownloadRequest
)
