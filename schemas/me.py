"""The patient's own side (``/v1/me/*``): every request carries the card's proof."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Base64Bytes, Field

from schemas.base import RequestModel, ResponseModel
from schemas.card import AccessLogRequest, CheckupItem, MedicationItem

CardProof = AccessLogRequest  # challenge_id, certificate, signature: the body of every /v1/me call


class MyEligibilityRequest(CardProof):
    as_of: dt.date | None = None


class WithdrawRequest(CardProof):
    consent_id: int


class MyPeriod(ResponseModel):
    valid_from: dt.date
    valid_to: dt.date | None
    current: bool  # covers as_of
    reason_of_loss: str | None
    card_classification: str
    personal_family: str
    copay_ratio: int
    name: str
    name_kana: str
    sex: str
    birth_date: dt.date
    address: str | None
    post_number: str | None
    elderly_ratio: int | None
    elderly_valid_from: dt.date | None
    elderly_valid_to: dt.date | None
    limit_kind: str | None
    limit_class: str | None
    limit_valid_from: dt.date | None
    limit_valid_to: dt.date | None


class FamilyMember(ResponseModel):
    """A person on the same card (記号・番号) as the 本人: who they are and their current period;
    never their address, drugs, checkups or log."""

    branch: str
    name: str
    name_kana: str
    sex: str
    birth_date: dt.date
    valid_from: dt.date
    valid_to: dt.date | None
    copay_ratio: int


class MyEligibility(ResponseModel):
    as_of: dt.date
    insurer_number: str
    insurer_name: str | None
    symbol: str
    number: str
    branch: str
    periods: list[MyPeriod]  # oldest first
    family: list[FamilyMember]  # empty unless this person is 本人 on as_of


class MyMedications(ResponseModel):
    since: dt.date
    items: list[MedicationItem]


class MyCheckups(ResponseModel):
    since: dt.date
    items: list[CheckupItem]


ConsentState = Literal["live", "expired", "withdrawn", "replaced"]


class MyConsent(ResponseModel):
    consent_id: int
    facility_code: str
    facility_name: str | None
    drug: bool
    checkup: bool
    clinical: bool
    limit_certificate: bool
    setting: Literal["outpatient", "inpatient", "home"]
    given_at: dt.datetime
    expires_at: dt.datetime | None
    ended_at: dt.datetime | None
    state: ConsentState


class MyConsents(ResponseModel):
    consents: list[MyConsent]


class Suspended(ResponseModel):
    status: Literal["suspended"]
    suspended_at: dt.datetime


class EmergencyRequest(RequestModel):
    """救急時医療情報閲覧: the card's certificate read at the terminal (no PIN) for a challenge of
    this facility, and the physician's stated reason."""

    challenge_id: Annotated[str, Field(max_length=100)]
    certificate: Base64Bytes
    reason: Annotated[str, Field(min_length=4, max_length=500)]
