"""Card challenges, first-use registration, by-card queries, consent and the patient's log."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Base64Bytes, Field

from schemas.base import RequestModel, ResponseModel
from schemas.identifiers import FreeText


class Challenge(ResponseModel):
    challenge_id: str
    nonce: str  # base64 of 32 random bytes
    expires_at: dt.datetime


class BasicFacts(RequestModel):
    """The four basic facts read from the card's 券面事項入力補助AP (EF 0002)."""

    name: Annotated[FreeText, Field(min_length=1, max_length=200)]
    birth_date: dt.date
    sex: Literal["1", "2", "3"]
    address: Annotated[FreeText, Field(min_length=1, max_length=300)]


class Registration(RequestModel):
    challenge_id: Annotated[str, Field(max_length=100)]
    certificate: Base64Bytes
    signature: Base64Bytes
    basic_facts: BasicFacts


class Registered(ResponseModel):
    status: Literal["linked", "already_linked"]
    insurer_number: str
    branch: str


class ByCardQuery(RequestModel):
    challenge_id: Annotated[str, Field(max_length=100)]
    certificate: Base64Bytes
    auth_method: Literal["pin", "face"]
    signature: Base64Bytes | None = None
    attestation: Annotated[str, Field(max_length=8192)] | None = None
    as_of: dt.date | None = None


Setting = Literal["outpatient", "inpatient", "home"]


class ConsentRequest(RequestModel):
    visit_id: Annotated[str, Field(max_length=100)]
    drug: bool = False
    checkup: bool = False
    clinical: bool = False
    limit_certificate: bool = False
    setting: Setting = "outpatient"
    # home care only (docs/homecare.md): the course's extent — home visits (訪問診療) and/or online
    # care (オンライン診療), both when not said — and its last day (JST; none: until withdrawn or
    # replaced, at most a year ahead)
    home_visit: bool | None = None
    online_care: bool | None = None
    course_until: dt.date | None = None


class ConsentRecord(ResponseModel):
    consent_id: int
    visit_id: str
    drug: bool
    checkup: bool
    clinical: bool
    limit_certificate: bool
    setting: Setting
    given_at: dt.datetime
    expires_at: dt.datetime | None
    home_visit: bool = False  # home care: re-checks for home visits (訪問診療) are covered
    online_care: bool = False  # home care: re-checks for online care (オンライン診療) are covered


class MedicationItem(ResponseModel):
    dispensed_on: dt.date
    facility_code: str
    drug_code: str
    drug_name: str
    quantity: float
    unit: str
    days: int


class Medications(ResponseModel):
    visit_id: str
    since: dt.date
    consent_id: int
    items: list[MedicationItem]


class CheckupItem(ResponseModel):
    checked_on: dt.date
    results: dict[str, float]
    urine_protein: str | None


class Checkups(ResponseModel):
    visit_id: str
    since: dt.date
    consent_id: int
    items: list[CheckupItem]


class AccessLogRequest(RequestModel):
    challenge_id: Annotated[str, Field(max_length=100)]
    certificate: Base64Bytes
    signature: Base64Bytes


class AccessLogItem(ResponseModel):
    at: dt.datetime
    facility_code: str | None
    facility_name: str | None
    role: str
    what: str
    query_kind: str | None
    consent_id: int | None
    emergency: bool = False  # 救急時医療情報閲覧: read without consent at an emergency hospital
    # how the visit the read went through confirmed the person: pin / face / visual (目視確認)
    confirmation: str | None = None


class AccessLog(ResponseModel):
    entries: list[AccessLogItem]


class CardLinkEvent(ResponseModel):
    """One link of a card to an insurer's insured person, or a refused one (the insurer's report)."""

    id: int  # the audit id: pass the last one back as ``after``
    at: dt.datetime
    outcome: Literal["linked", "relinked", "refused_relink", "refused_second_card"]
    facility_code: str
    facility_name: str | None
    insurer_number: str
    symbol: str
    number: str
    branch: str


class CardLinkReport(ResponseModel):
    links: list[CardLinkEvent]
    next_after: int


class CardLinkDriftItem(ResponseModel):
    """A linked card whose record's four facts changed since the link (docs/card.md, Drift)."""

    link_id: int  # pass the report's ``next_after`` back as ``after``
    linked_at: dt.datetime
    changed_at: dt.datetime | None  # when the upload that wrote the record now shown finished
    drifted: list[Literal["name", "birth_date", "sex", "address"]]  # which facts differ
    insurer_number: str
    symbol: str
    number: str
    branch: str


class CardLinkDriftReport(ResponseModel):
    links: list[CardLinkDriftItem]
    next_after: int
