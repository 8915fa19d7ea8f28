"""The visiting staff's side of 居宅同意取得型 (home visits and online care), for the mobile page
(``/visit``): the first visit by 目視確認, the course's consent taken on it, the facility's ongoing
courses and 再照会 per course, each outcome in the staff's words. The first visit by card goes
through the kiosk's own card flow (``CheckFlow``: the card, the PIN, the consent), not through here.

Nothing is kept: every call goes to the server and its answer is rendered. docs/homecare.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Protocol

from clinic_terminal.client import ServerError
from clinic_terminal.kiosk.flow import ConsentChoice
from clinic_terminal.kiosk.messages import VALIDITY
from clinic_terminal.kiosk.staff import JST, copay_of, result_json, wari
from schemas.card import ConsentRecord, ConsentRequest
from schemas.eligibility import EligibilityResult
from schemas.homecare import Care, CourseFilter, HomeCourse, HomeCourses, VisualCheckRequest

CARE_LABELS: Final = {"visit": "訪問診療", "online": "オンライン診療"}
CONFIRMATION_LABELS: Final = {"pin": "マイナ保険証（暗証番号）", "face": "マイナ保険証（顔認証）", "visual": "目視確認"}
#: a refused 再照会, in the visiting staff's words: what happened and what to do now
RECHECK_REFUSALS: Final = {
    "consent_expired": "同意の期限が切れているか、患者さんが同意を取り消しました。マイナ保険証で確認し直し、"
                       "あらためて同意を得てください。",
    "consent_required": "この診療の資格確認に患者さんの同意がありません（同意されていない、または後の受付で"
                        "「同意しない」と回答されました）。マイナ保険証で確認し直してください。",
    "not_found": "この医療機関の初回訪問の記録が見つかりません。",
    "unavailable": "資格確認のサーバーに接続できません。電波の届く場所で、しばらくしてからもう一度お試しください。",
    "unauthorized": "端末のトークンが無効です。",
    "rate_limited": "混み合っています。しばらくしてからお試しください。",
}
RECHECK_DEFAULT: Final = "再照会できませんでした。"


class HomeCareServer(Protocol):
    """The central-server calls of the visiting staff's page (``clinic_terminal.client.CardClient``)."""

    def visual_check(self, body: VisualCheckRequest) -> EligibilityResult: ...

    def consent(self, request: ConsentRequest) -> ConsentRecord: ...

    def home_courses(self, only: CourseFilter | None = None) -> HomeCourses: ...

    def recheck(self, visit_id: str, *, care: Care = "visit", as_of: str | None = None) -> EligibilityResult: ...


def _jst(at: dt.datetime) -> str:
    local = (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).astimezone(JST)
    return f"{local.year}年{local.month}月{local.day}日"


def course_json(course: HomeCourse) -> dict[str, Any]:
    """One course of care as the visiting staff read it."""
    p = course.person
    cares = [c for c, on in (("visit", course.home_visit), ("online", course.online_care)) if on]
    shared = [label for on, label in ((course.drug, "薬剤情報"), (course.checkup, "特定健診情報"),
                                      (course.clinical, "診療情報"), (course.limit_certificate, "限度額情報")) if on]
    confirmation = CONFIRMATION_LABELS.get(course.confirmation, course.confirmation)
    if course.confirmation == "visual" and course.confirmed_by:
        confirmation += f"（{course.confirmed_by}）"
    return {
        "visit_id": course.visit_id,
        "consent_id": course.consent_id,
        "name": p.name or "（氏名なし）",
        "name_kana": p.name_kana,
        "birth_date": p.birth_date.isoformat() if p.birth_date else None,
        "insurance": f"{p.insurer_number.strip()}　{p.symbol}・{p.number}（{p.branch}）",
        "first_visit": _jst(course.first_visit_at),
        "confirmation": confirmation,
        "cares": [{"care": c, "label": CARE_LABELS[c]} for c in cares],
        "shared": "・".join(shared) or "なし（資格確認のみ）",
        "until": f"{_jst(course.expires_at)}まで" if course.expires_at else "取り消されるまで",
    }


def recheck_json(result: EligibilityResult, care: Care, at: dt.datetime | None = None) -> dict[str, Any]:
    """A 再照会's answer, plainly: the headline the staff act on, then the details."""
    out = result_json(result)
    insured = result.insured
    name = insured.name if insured is not None else None
    if result.usable:
        headline = f"資格確認できました（有効・{wari(copay_of(result))}負担）"
    else:
        headline = f"資格が確認できません：{VALIDITY.get(result.validity, str(result.validity))}"
        if result.validity in (2, 3):
            headline += "。保険証の変更がないか患者さんに確認してください。"
    now = (at or dt.datetime.now(dt.UTC)).astimezone(JST)
    day = result.as_of
    return out | {"ok": result.usable, "headline": headline, "care": CARE_LABELS[care], "name": name,
                  "when": f"{day.year}年{day.month}月{day.day}日時点・{now.hour}時{now.minute:02d}分に照会"}


def recheck_refusal(exc: ServerError) -> dict[str, Any]:
    return {"ok": False, "refused": True, "code": exc.code,
            "headline": RECHECK_REFUSALS.get(exc.code, RECHECK_DEFAULT)}


@dataclass
class HomeCareService:
    server: HomeCareServer

    def visual(self, body: VisualCheckRequest) -> dict[str, Any]:
        """目視確認: the person's eligibility and the new visit (None when nobody was found)."""
        return result_json(self.server.visual_check(body))

    def consent(self, visit_id: str, choice: ConsentChoice) -> ConsentRecord:
        """The consent of a 目視確認 visit (a card visit's goes through the kiosk's flow)."""
        return self.server.consent(choice.request(visit_id, "home"))

    def courses(self) -> list[dict[str, Any]]:
        return [course_json(c) for c in self.server.home_courses().courses]

    def recheck(self, visit_id: str, care: Care) -> dict[str, Any]:
        try:
            result = self.server.recheck(visit_id, care=care)
        except ServerError as exc:
            return recheck_refusal(exc)
        return recheck_json(result, care)
