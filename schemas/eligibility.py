"""Eligibility queries and the eligibility result of the contract."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from schemas.base import RequestModel, ResponseModel
from schemas.identifiers import Branch, FreeText, InsurerNumber


class ByNumberQuery(RequestModel):
    insurer_number: InsurerNumber
    symbol: Annotated[FreeText, Field(max_length=40)] = ""
    number: Annotated[FreeText, Field(min_length=1, max_length=40)]
    branch: Branch | None = None
    birth_date: dt.date
    as_of: dt.date | None = None
    include_limit_certificate: bool = False


class Processing(ResponseModel):
    status: Literal["ok", "error"] = "ok"
    code: str | None = None
    message: str | None = None


class Insured(ResponseModel):
    insurer_number: str
    insurer_name: str | None
    symbol: str
    number: str
    branch: str
    card_classification: str
    personal_family: str
    name: str
    name_kana: str
    sex: str
    birth_date: dt.date
    address: str | None
    post_number: str | None
    valid_from: dt.date
    valid_to: dt.date | None
    reason_of_loss: str | None
    copay_ratio: int


class Elderly(ResponseModel):
    certificate_date: dt.date | None
    valid_from: dt.date
    valid_to: dt.date | None
    copay_ratio: int


class LimitCertificate(ResponseModel):
    kind: str
    classification: str
    valid_from: dt.date
    valid_to: dt.date | None


class SpecificDisease(ResponseModel):
    category: str
    valid_from: dt.date
    valid_to: dt.date | None
    self_pay: int | None


class PublicExpense(ResponseModel):
    """A 公費負担医療受給者証 in force on ``as_of`` (難病, 小児慢性, 自立支援, municipal programs):
    shared under the same consent as 限度額 (docs/assistance.md)."""

    payer_number: str  # 公費負担者番号 (its first two digits: the 法別番号, the program)
    recipient_number: str  # 受給者番号
    monthly_cap: int  # 自己負担上限額, yen a month
    valid_from: dt.date
    valid_to: dt.date | None


CertificateNotice = Literal["expires_soon", "grace_period"]


class EligibilityResult(ResponseModel):
    processing: Processing = Field(default_factory=Processing)
    validity: Annotated[int, Field(ge=1, le=5)]
    query_kind: Literal["card", "number"]
    as_of: dt.date
    visit_id: str | None = None
    insured: Insured | None = None
    elderly: Elderly | None = None
    limit_certificate: LimitCertificate | None = None
    specific_diseases: list[SpecificDisease] = Field(default_factory=list)
    certificate_notice: CertificateNotice | None = None
    public_expenses: list[PublicExpense] = Field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Usable only when processing ended normally AND the eligibility is valid."""
        return self.processing.status == "ok" and self.validity == 1


class BatchCreate(RequestModel):
    queries: Annotated[list[ByNumberQuery], Field(min_length=1, max_length=10_000)]
    label: Annotated[str, Field(max_length=100)] | None = None


class BatchCreated(ResponseModel):
    batch_id: str
    status: Literal["pending", "done"]
    count: int


class BatchItem(ResponseModel):
    index: int
    query: ByNumberQuery
    result: EligibilityResult


class BatchResult(ResponseModel):
    batch_id: str
    status: Literal["pending", "done"]
    count: int
    created_at: dt.datetime
    completed_at: dt.datetime | None
    results: list[BatchItem] | None = None
