"""Wire models of 居宅同意取得型 (home visits and online care): the 目視確認 first visit, the
facility's ongoing courses of care, and 再照会 (a re-check without the card while the course's
consent lasts). docs/homecare.md."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.base import RequestModel, ResponseModel
from schemas.card import BasicFacts
from schemas.identifiers import Branch, FreeText, InsurerNumber

Care = Literal["visit", "online"]  # 訪問診療 (a home visit) / オンライン診療 (online care)
Confirmation = Literal["pin", "face", "visual"]  # how the first visit confirmed the person


class RecheckRequest(RequestModel):
    as_of: dt.date | None = None  # the day asked about (the visit's day of care); default today (JST)
    care: Care = "visit"  # the kind of today's care: the course's consent must cover it


class InsuranceNumber(RequestModel):
    """The insurance number as printed on the card (or the 資格確認書), with the birth date."""

    insurer_number: InsurerNumber
    symbol: Annotated[FreeText, Field(max_length=40)] = ""
    number: Annotated[FreeText, Field(min_length=1, max_length=40)]
    branch: Branch | None = None
    birth_date: dt.date


class VisualCheckRequest(RequestModel):
    """目視確認: the visiting staff looked at the card and the person, and say who they are by the
    four facts printed on the card or by the insurance number (exactly one of the two)."""

    confirmed_by: Annotated[FreeText, Field(min_length=1, max_length=64)]  # the staff member's name
    four_facts: BasicFacts | None = None
    insurance: InsuranceNumber | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> VisualCheckRequest:
        if (self.four_facts is None) == (self.insurance is None):
            raise ValueError("give either four_facts or insurance, not both and not neither")
        return self


class CourseFilter(RequestModel):
    """Narrows the list of courses to one person's insurance number (the XML family's door)."""

    insurer_number: InsurerNumber
    symbol: Annotated[FreeText, Field(max_length=40)] = ""
    number: Annotated[FreeText, Field(min_length=1, max_length=40)]
    branch: Branch | None = None


class CoursePerson(ResponseModel):
    insurer_number: str
    symbol: str
    number: str
    branch: str
    name: str | None
    name_kana: str | None
    birth_date: dt.date | None


class HomeCourse(ResponseModel):
    """One ongoing course of care: a live home-care consent of this facility and its first visit."""

    consent_id: int
    visit_id: str  # the first visit's: the handle of 再照会
    first_visit_at: dt.datetime
    confirmation: str  # pin / face / visual
    confirmed_by: str | None  # the staff member named at a 目視確認
    given_at: dt.datetime
    expires_at: dt.datetime | None  # the end of the course (None: until withdrawn or replaced)
    home_visit: bool
    online_care: bool
    drug: bool
    checkup: bool
    clinical: bool
    limit_certificate: bool
    person: CoursePerson


class HomeCourses(ResponseModel):
    courses: list[HomeCourse]
