"""The patient's own screens as a local web app: ``clinic-terminal portal`` at home, and ``/me`` in
the kiosk app after the check (「自分の情報を見る」). One router over :class:`MySession`; the
answers are formatted here for the page (Japanese labels, JST times), the checkups and drug
history with the staff screen's own formatting (``kiosk.history``).

Every answer carries ``Cache-Control: no-store``; validation errors never echo the body (it may
hold the PIN)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from clinic_terminal.kiosk import messages as msg
from clinic_terminal.kiosk.history import checkups_json, medications_json
from clinic_terminal.kiosk.pages import page, serve_static
from clinic_terminal.portal.session import MeError, MySession
from schemas.card import AccessLog
from schemas.me import MyCheckups, MyConsents, MyMedications

JST = ZoneInfo("Asia/Tokyo")

#: every ``what`` of the access log (docs/patient.md, docs/card.md), as the patient reads it
WHAT_LABELS: Mapping[str, str] = {
    "eligibility": "保険の資格情報",
    "eligibility_no_match": "保険の資格情報（該当なし）",
    "medications": "お薬の情報",
    "checkups": "健診の結果",
    "access_log": "閲覧の記録",
    "consents": "同意の一覧",
    "consent_withdraw": "同意の取り消し",
    "expenses": "医療費の情報",
    "expenses_export": "医療費のファイル出力",
    "card_suspended": "カードの一時停止",
    "card_resumed": "カードの利用再開",
    "card_link": "カードの利用登録",
    "card_link_refused": "カードの利用登録（不一致）",
    "home_courses": "訪問・オンライン診療の患者一覧",
}
#: how the visit a read went through confirmed the person (docs/homecare.md)
CONFIRMATION_LABELS: Mapping[str, str] = {"pin": "暗証番号", "face": "顔認証", "visual": "職員の目視確認"}
#: the access log's query kinds that say more than ``what`` does
QUERY_KIND_LABELS: Mapping[str, str] = {"recheck": "再照会（訪問診療）", "recheck_online": "再照会（オンライン診療）",
                                        "visual": "目視確認"}
ROLE_LABELS: Mapping[str, str] = {
    "physician": "医師",
    "dentist": "歯科医師",
    "pharmacist": "薬剤師",
    "reception": "受付",
    "patient": "ご本人",
    "operator": "コールセンター",
    "insurer": "保険者",
}
CONSENT_STATES: Mapping[str, str] = {
    "live": "同意しています",
    "expired": "期限切れ",
    "withdrawn": "取り消し済み",
    "replaced": "新しい回答に置き換え",
}
CONSENT_ITEMS = (("drug", "お薬の情報"), ("checkup", "健診の結果"), ("clinical", "診療の情報"),
                 ("limit_certificate", "限度額の情報"))


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PinIn(_In):
    pin: Annotated[str, Field(max_length=16)]


def jst_text(at: dt.datetime) -> str:
    local = (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).astimezone(JST)
    return f"{local.year}年{local.month}月{local.day}日 {local.hour}時{local.minute:02d}分"


def access_log_json(log: AccessLog) -> dict[str, Any]:
    rows = []
    for e in log.entries:
        who = e.facility_name or (e.facility_code and f"医療機関 {e.facility_code}")
        if not who:
            who = "ご本人（ご自宅など）" if e.role == "patient" else ROLE_LABELS.get(e.role, e.role)
        rows.append({
            "at": jst_text(e.at), "who": who, "role": ROLE_LABELS.get(e.role, e.role),
            "what": WHAT_LABELS.get(e.what, e.what), "emergency": e.emergency,
            "family": e.query_kind == "family", "consent_id": e.consent_id,
            "kind": QUERY_KIND_LABELS.get(e.query_kind or ""),
            "confirmation": CONFIRMATION_LABELS.get(e.confirmation or ""),
        })
    return {"entries": rows}


def consents_json(consents: MyConsents) -> dict[str, Any]:
    rows = []
    for c in consents.consents:
        shared = [label for key, label in CONSENT_ITEMS if getattr(c, key)]
        rows.append({
            "consent_id": c.consent_id, "facility": c.facility_name or f"医療機関 {c.facility_code}",
            "given_at": jst_text(c.given_at), "shared": "・".join(shared) or "提供しない",
            "state": c.state, "state_label": CONSENT_STATES[c.state], "can_withdraw": c.state == "live",
        })
    return {"consents": rows}


def add_portal(app: FastAPI, mine: MySession, *, path: str, home: str | None,
               facility_names: Mapping[str, str], demo: bool = False) -> None:
    """The page at ``path`` and its API under ``/api/me``. ``home``: where 「終了」 goes (the
    kiosk's start screen), or None at home (back to 「カードを置いてください」)."""
    html = page("portal.html")

    @app.get(path, response_class=HTMLResponse)
    def portal_page() -> HTMLResponse:
        return HTMLResponse(html)

    api = APIRouter(prefix="/api/me")

    def _fail(exc: MeError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message, "session": mine.state()}, status_code=400)

    @api.get("/state")
    def state() -> dict[str, Any]:
        return mine.state() | {"home": home, "demo": demo}

    @api.post("/read")
    def read() -> dict[str, Any]:
        return mine.read_card()

    @api.post("/pin")
    def pin(body: PinIn) -> dict[str, Any]:
        return mine.submit_pin(body.pin)

    @api.post("/end")
    def end() -> dict[str, Any]:
        return mine.end()

    def _guard(work: Any) -> Any:
        try:
            return work()
        except MeError as exc:
            return _fail(exc)

    @api.get("/medications")
    def medications() -> Any:
        return _guard(lambda: medications_json(MyMedications.model_validate(mine.read("medications")),
                                               facility_names))

    @api.get("/checkups")
    def checkups() -> Any:
        return _guard(lambda: checkups_json(MyCheckups.model_validate(mine.read("checkups")), mine.sex))

    @api.get("/expenses")
    def expenses(year: Annotated[int, Query(ge=2000, le=2100)]) -> Any:
        return _guard(lambda: mine.read("expenses", year=year))

    @api.get("/expenses/export")
    def export(year: Annotated[int, Query(ge=2000, le=2100)], format: Literal["xlsx", "csv"]) -> Any:
        def download() -> Response:
            content, media_type, name = mine.download("expenses/export", year=year, format=format)
            return Response(content, media_type=media_type,
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

        return _guard(download)

    @api.get("/access-log")
    def access_log() -> Any:
        return _guard(lambda: access_log_json(AccessLog.model_validate(mine.read("access-log"))))

    @api.get("/consents")
    def consents() -> Any:
        return _guard(lambda: consents_json(MyConsents.model_validate(mine.read("consents"))))

    @api.post("/consents/{consent_id}/withdraw")
    def withdraw(consent_id: int) -> Any:
        return _guard(lambda: mine.read("consents/withdraw", consent_id=consent_id))

    @api.post("/suspension")
    def suspension() -> Any:
        def suspend() -> dict[str, Any]:
            mine.suspend()
            return mine.state()

        return _guard(suspend)

    app.include_router(api)


def create_portal_app(mine: MySession, *, facility_names: Mapping[str, str] | None = None,
                      demo: bool = False) -> FastAPI:
    """``clinic-terminal portal``: the patient's own screens alone, at ``/``."""
    app = FastAPI(title="shikaku portal", docs_url=None, redoc_url=None, openapi_url=None)
    serve_static(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()})
        message = msg.PIN_FORMAT if fields == ["pin"] else "入力に誤りがあります。"
        return JSONResponse({"code": "validation_error", "message": message, "fields": fields}, status_code=422)

    add_portal(app, mine, path="/", home=None, facility_names=facility_names or {}, demo=demo)
    return app


__all__ = ["add_portal", "create_portal_app"]
