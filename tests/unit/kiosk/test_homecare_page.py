"""The visiting staff's page's service (``kiosk/homecare.py``): 再照会 outcomes in the staff's words,
the course as listed, and a 目視確認 visit's consent sent as a home-care consent with its extent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clinic_terminal.client import ServerError
from clinic_terminal.kiosk.flow import ConsentChoice
from clinic_terminal.kiosk.homecare import HomeCareService, course_json
from schemas.card import ConsentRecord, ConsentRequest
from schemas.eligibility import EligibilityResult
from schemas.homecare import CourseFilter, HomeCourse, HomeCourses, VisualCheckRequest
from tests.unit.kiosk.conftest import insured

NOW = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)


def course(**over: Any) -> HomeCourse:
    values: dict[str, Any] = {
        "consent_id": 7, "visit_id": "v1", "first_visit_at": NOW, "confirmation": "visual",
        "confirmed_by": "訪問 花子", "given_at": NOW, "expires_at": None, "home_visit": True, "online_care": False,
        "drug": True, "checkup": False, "clinical": False, "limit_certificate": False,
        "person": {"insurer_number": "01130012", "symbol": "123", "number": "4567", "branch": "00",
                   "name": "試験 花子", "name_kana": "シケン ハナコ", "birth_date": dt.date(1985, 6, 15)},
    }
    return HomeCourse.model_validate(values | over)


@dataclass
class FakeServer:
    refuse: str | None = None
    validity: int = 1
    consents: list[ConsentRequest] = field(default_factory=list)

    def visual_check(self, body: VisualCheckRequest) -> EligibilityResult:
        raise AssertionError("not used")

    def consent(self, request: ConsentRequest) -> ConsentRecord:
        self.consents.append(request)
        return ConsentRecord(consent_id=1, visit_id=request.visit_id, drug=request.drug, checkup=False,
                             clinical=False, limit_certificate=False, setting=request.setting, given_at=NOW,
                             expires_at=None, home_visit=True, online_care=False)

    def home_courses(self, only: CourseFilter | None = None) -> HomeCourses:
        return HomeCourses(courses=[course()])

    def recheck(self, visit_id: str, *, care: str = "visit", as_of: str | None = None) -> EligibilityResult:
        if self.refuse:
            raise ServerError(self.refuse, "refused", 403)
        return EligibilityResult(validity=self.validity, query_kind="card", as_of=NOW.date(), visit_id=visit_id,
                                 insured=insured())


def test_recheck_outcomes_are_plain_japanese() -> None:
    server = FakeServer()
    service = HomeCareService(server)
    ok = service.recheck("v1", "visit")
    assert ok["ok"] and ok["headline"] == "資格確認できました（有効・3割負担）" and ok["care"] == "訪問診療"
    server.validity = 2
    lost = service.recheck("v1", "online")
    assert not lost["ok"] and lost["headline"].startswith("資格が確認できません：資格喪失")
    server.refuse = "consent_expired"
    expired = service.recheck("v1", "visit")
    assert expired == {"ok": False, "refused": True, "code": "consent_expired",
                       "headline": expired["headline"]} and "同意の期限が切れている" in expired["headline"]
    server.refuse = "consent_required"
    assert "同意がありません" in service.recheck("v1", "visit")["headline"]
    server.refuse = "something_new"
    assert service.recheck("v1", "visit")["headline"] == "再照会できませんでした。"


def test_the_time_of_a_recheck_is_japans() -> None:
    from clinic_terminal.kiosk.homecare import recheck_json

    result = EligibilityResult(validity=1, query_kind="card", as_of=dt.date(2026, 11, 28), insured=insured())
    assert recheck_json(result, "visit", NOW)["when"] == "2026年11月28日時点・10時00分に照会"


def test_a_course_as_listed() -> None:
    shown = course_json(course())
    assert shown["confirmation"] == "目視確認（訪問 花子）"
    assert [c["label"] for c in shown["cares"]] == ["訪問診療"]
    assert (shown["shared"], shown["until"]) == ("薬剤情報", "取り消されるまで")
    ends = course_json(course(expires_at=dt.datetime(2027, 2, 28, 14, 59, tzinfo=dt.UTC), drug=False))
    assert (ends["shared"], ends["until"]) == ("なし（資格確認のみ）", "2027年2月28日まで")


def test_a_visual_visits_consent_is_a_home_care_one() -> None:
    server = FakeServer()
    HomeCareService(server).consent("v9", ConsentChoice(drug=True, setting="home", online_care=False,
                                                        course_until=dt.date(2027, 1, 31)))
    HomeCareService(server).consent("v9", ConsentChoice(setting="outpatient", online_care=True))
    home, refusal = server.consents
    assert (home.setting, home.home_visit, home.online_care, home.course_until) == (
        "home", None, False, dt.date(2027, 1, 31))
    # the course refused: today's answer only, no extent sent with it
    assert (refusal.setting, refusal.online_care, refusal.course_until) == ("outpatient", None, None)
