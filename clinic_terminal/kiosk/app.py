"""The kiosk's local web app: the patient screen (``/``), the staff screen (``/staff``), a thin JSON API.

Thin by design: every route calls :class:`~clinic_terminal.kiosk.flow.CheckFlow` or
:class:`~clinic_terminal.kiosk.staff.StaffService` and renders what they return. Every response
carries ``Cache-Control: no-store``; validation errors never echo the request body (it may hold
the PIN or a keyed 照合番号B); nothing logs a body.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from clinic_terminal.client import ServerError
from clinic_terminal.kiosk import messages as msg
from clinic_terminal.kiosk.flow import CheckFlow, ConsentChoice, FlowBusyError, Screen
from clinic_terminal.kiosk.history import checkups_json, medications_json
from clinic_terminal.kiosk.homecare import HomeCareService
from clinic_terminal.kiosk.pages import page, serve_static
from clinic_terminal.kiosk.preview import LivePreview
from clinic_terminal.kiosk.reception import ReceptionNotices, entry_json
from clinic_terminal.kiosk.staff import (
    SEX,
    BatchEntry,
    BatchInputError,
    CheckJournaled,
    ReceptionBoard,
    StaffService,
    parse_batch_csv,
    queries_from_rows,
    record_json,
    result_json,
)
from clinic_terminal.portal.session import MySession
from clinic_terminal.portal.web import add_portal
from schemas.card import Setting
from schemas.homecare import Care, VisualCheckRequest

STAFF_ERRORS = {
    "unavailable": "中央のサーバーに接続できません。",
    "forbidden_role": "この端末の権限では閲覧できません。",
    "consent_required": "患者さんの同意がありません。",
    "consent_expired": "患者さんの同意の有効期限が切れています。",
    "validation_error": "入力に誤りがあります。",
    "unauthorized": "端末のトークンが無効です。",
    "rate_limited": "混み合っています。しばらくしてからお試しください。",
}


STAFF_OUTAGE = ("資格確認できず — 申立書で受付してください。中央のサーバーに接続できないため、"
                "この照会を記録しました。復旧後に自動で再確認し、結果を「受付対応」に表示します。")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MethodIn(_In):
    method: Literal["pin", "face"]


class PinIn(_In):
    pin: Annotated[str, Field(max_length=16)]


class CollationBIn(_In):
    code: Annotated[str, Field(max_length=32)]


class ConsentIn(_In):
    drug: bool = False
    checkup: bool = False
    clinical: bool = False
    limit_certificate: bool = False
    # the visiting staff's page (``/visit``): a course of care, its extent and its last day
    setting: Setting | None = None
    home_visit: bool | None = None
    online_care: bool | None = None
    course_until: dt.date | None = None

    def choice(self) -> ConsentChoice:
        return ConsentChoice(drug=self.drug, checkup=self.checkup, clinical=self.clinical,
                             limit_certificate=self.limit_certificate, setting=self.setting,
                             home_visit=self.home_visit, online_care=self.online_care,
                             course_until=self.course_until)


class VisitConsentIn(ConsentIn):
    visit_id: Annotated[str, Field(max_length=100)]


class RecheckIn(_In):
    care: Care = "visit"


class BatchIn(_In):
    csv: Annotated[str, Field(max_length=1_000_000)] | None = None
    rows: list[dict[str, str]] | None = None
    label: Annotated[str, Field(max_length=100)] | None = None
    as_of: dt.date | None = None


@dataclass(frozen=True)
class KioskInfo:
    """Shown on the screens (no secrets)."""

    demo: bool = False
    facility_name: str | None = None
    facility_code: str | None = None  # with the name: the drug history names this terminal's own facility


def create_kiosk_app(
    flow: CheckFlow, staff: StaffService, board: ReceptionBoard, *, info: KioskInfo | None = None,
    notices: ReceptionNotices | None = None, preview: LivePreview | None = None,
    remove_card: Callable[[], None] | None = None, mine: MySession | None = None,
    homecare: HomeCareService | None = None,
) -> FastAPI:
    """``preview``: the face screen's camera preview (frames in memory only); ``remove_card``: the
    demo's 「カードを抜く」 (None outside demo mode: the route answers 404); ``mine``: the patient's
    own screens after the check (「自分の情報を見る」, ``/me``)."""
    info = info or KioskInfo()
    notices = notices or ReceptionNotices()
    facility_names = {info.facility_code: info.facility_name} if info.facility_code and info.facility_name else {}
    app = FastAPI(title="shikaku kiosk", docs_url=None, redoc_url=None, openapi_url=None)
    pages = {"kiosk": page("kiosk.html"), "staff": page("staff.html"), "visit": page("visit.html")}
    serve_static(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the input: it may hold the PIN or 照合番号B.
        fields = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()})
        formats = {"pin": msg.PIN_FORMAT, "code": msg.COLLATION_B_FORMAT}
        message = formats[fields[0]] if len(fields) == 1 and fields[0] in formats else "入力に誤りがあります。"
        return JSONResponse({"code": "validation_error", "message": message, "fields": fields}, status_code=422)

    @app.exception_handler(FlowBusyError)
    async def _busy(_: Request, exc: FlowBusyError) -> JSONResponse:
        return JSONResponse(_screen(flow.screen()) | {"code": "busy"}, status_code=409)

    @app.exception_handler(ServerError)
    async def _server(_: Request, exc: ServerError) -> JSONResponse:
        status = 502 if exc.code == "unavailable" else 400 if exc.status is None else min(exc.status, 499)
        return JSONResponse(
            {"code": exc.code, "message": STAFF_ERRORS.get(exc.code, "照会できませんでした。"), "detail": exc.message},
            status_code=status,
        )

    @app.exception_handler(CheckJournaled)
    async def _journaled(_: Request, exc: CheckJournaled) -> JSONResponse:
        # outage mode: not an error for the desk — the patient signs the 申立書, the terminal re-checks later
        return JSONResponse({"outage": True, "code": "unavailable", "message": STAFF_OUTAGE,
                             "notice": entry_json(exc.entry)}, status_code=202)

    @app.get("/", response_class=HTMLResponse)
    def kiosk_page() -> HTMLResponse:
        return HTMLResponse(pages["kiosk"])

    @app.get("/staff", response_class=HTMLResponse)
    def staff_page() -> HTMLResponse:
        return HTMLResponse(pages["staff"])

    def _screen(screen: Screen) -> dict[str, Any]:
        guidance = None
        if preview is not None:
            if screen.name == "face":
                guidance = preview.guidance_text()
            else:
                preview.clear()  # the frame lives only while the face screen shows it
        return screen.to_json() | {"face_enabled": flow.face_enabled, "demo": info.demo, "mine": mine is not None,
                                   "face_guidance": guidance, "demo_remove_card": remove_card is not None}

    kiosk = APIRouter(prefix="/api/kiosk")

    @kiosk.get("/state")
    def state() -> dict[str, Any]:
        return _screen(flow.screen())

    @kiosk.post("/read")
    def read() -> dict[str, Any]:
        return _screen(flow.read_card())

    @kiosk.post("/method")
    def method(body: MethodIn) -> dict[str, Any]:
        return _screen(flow.choose(body.method))

    @kiosk.post("/pin")
    def pin(body: PinIn) -> dict[str, Any]:
        return _screen(flow.submit_pin(body.pin))

    @kiosk.post("/register")
    def register(body: PinIn) -> dict[str, Any]:
        return _screen(flow.submit_registration(body.pin))

    @kiosk.post("/collation-b/entry")
    def collation_b_entry() -> dict[str, Any]:
        return _screen(flow.open_collation_b_entry())

    @kiosk.post("/collation-b")
    def collation_b(body: CollationBIn) -> dict[str, Any]:
        return _screen(flow.submit_collation_b(body.code))

    @kiosk.post("/consent")
    def consent(body: ConsentIn) -> dict[str, Any]:
        return _screen(flow.submit_consent(body.choice()))

    @kiosk.post("/skip-consent")
    def skip_consent() -> dict[str, Any]:
        return _screen(flow.skip_consent())

    @kiosk.post("/reset")
    def reset() -> dict[str, Any]:
        return _screen(flow.reset())

    @kiosk.get("/camera.jpg")
    def camera_frame() -> Response:
        """The latest camera frame while the face screen shows (JPEG bytes from memory, no-store)."""
        frame = preview.jpeg() if preview is not None and flow.screen().name == "face" else None
        if frame is None:
            return Response(status_code=204)
        return Response(frame, media_type="image/jpeg")

    @kiosk.post("/demo/remove-card")
    def demo_remove_card() -> Any:
        """Demo mode only: take the virtual card out of its reader (as a hand would, mid-check)."""
        if remove_card is None:
            return JSONResponse({"code": "not_found"}, status_code=404)
        remove_card()
        return _screen(flow.screen())

    staff_api = APIRouter(prefix="/api/staff")

    @staff_api.get("/config")
    def config() -> dict[str, Any]:
        return {"role": staff.role, "medications": staff.can_see_medications, "checkups": staff.can_see_checkups,
                "demo": info.demo, "facility_name": info.facility_name}

    @staff_api.get("/checks")
    def checks() -> list[dict[str, Any]]:
        return [record_json(r, board) for r in board.records()]

    @staff_api.get("/notices")
    def reception_notices() -> list[dict[str, Any]]:
        """Referrals from the patient screen and outage rows with their re-check outcome."""
        return notices.rows()

    @staff_api.post("/by-number")
    def by_number(body: dict[str, Any]) -> dict[str, Any]:
        try:
            (query,) = queries_from_rows([body])
        except BatchInputError as exc:
            # one record: no row numbers, each field's problem next to the field
            fields = {p.field or "": p.message for p in exc.fields}
            return JSONResponse({"code": "validation_error", "message": "入力内容を確認してください。",  # type: ignore[return-value]
                                 "fields": fields}, status_code=422)
        return record_json(staff.by_number(query), board)

    def _bad(exc: BatchInputError) -> JSONResponse:
        return JSONResponse({"code": "validation_error", "message": str(exc),
                             "problems": [{"row": p.row, "field": p.field, "message": p.text} for p in exc.fields]},
                            status_code=422)

    def _entry(entry: BatchEntry) -> dict[str, Any]:
        return {"batch_id": entry.batch_id, "label": entry.label, "count": entry.count,
                "created_at": entry.created_at.isoformat()}

    @staff_api.post("/batches")
    def create_batch(body: BatchIn) -> Any:
        try:
            if body.csv:
                queries = parse_batch_csv(body.csv, default_as_of=body.as_of)
            else:
                queries = queries_from_rows(body.rows or [], default_as_of=body.as_of)
        except BatchInputError as exc:
            return _bad(exc)
        return _entry(staff.create_batch(queries, body.label))

    @staff_api.get("/batches")
    def batches() -> list[dict[str, Any]]:
        return [_entry(e) for e in board.batches()]

    @staff_api.get("/batches/{batch_id}")
    def batch(batch_id: str) -> Any:
        if batch_id not in {e.batch_id for e in board.batches()}:
            return JSONResponse({"code": "not_found", "message": "本日の一括照会ではありません。"}, status_code=404)
        result = staff.batch(batch_id)
        return {
            "batch_id": result.batch_id, "status": result.status, "count": result.count,
            "results": None if result.results is None else [
                {"index": item.index, "query": item.query.model_dump(mode="json"), "result": result_json(item.result)}
                for item in result.results
            ],
        }

    def _visit_or_404(visit_id: str) -> JSONResponse | None:
        if board.visit(visit_id) is None:
            return JSONResponse({"code": "not_found", "message": "本日の受付にない来院です。"}, status_code=404)
        return None

    @staff_api.get("/visits/{visit_id}/medications")
    def medications(visit_id: str) -> Any:
        if not staff.can_see_medications:
            return JSONResponse({"code": "forbidden_role", "message": STAFF_ERRORS["forbidden_role"]}, status_code=403)
        return _visit_or_404(visit_id) or medications_json(staff.medications(visit_id), facility_names)

    @staff_api.get("/visits/{visit_id}/checkups")
    def checkups(visit_id: str) -> Any:
        if not staff.can_see_checkups:
            return JSONResponse({"code": "forbidden_role", "message": STAFF_ERRORS["forbidden_role"]}, status_code=403)
        visit = board.visit(visit_id)
        sex = None if visit is None or visit.result.insured is None else SEX.get(visit.result.insured.sex)
        return _visit_or_404(visit_id) or checkups_json(staff.checkups(visit_id), sex)

    app.include_router(kiosk)
    app.include_router(staff_api)
    if homecare is not None:
        app.include_router(_visit_router(homecare, info))

        @app.get("/visit", response_class=HTMLResponse)
        def visit_page() -> HTMLResponse:
            return HTMLResponse(pages["visit"])
    if mine is not None:
        add_portal(app, mine, path="/me", home="/", facility_names=facility_names, demo=info.demo)
    return app


def _visit_router(homecare: HomeCareService, info: KioskInfo) -> APIRouter:
    """The visiting staff's page's API (``/visit``); its card path is the kiosk's (``/api/kiosk``)."""
    visit = APIRouter(prefix="/api/visit")

    @visit.get("/config")
    def visit_config() -> dict[str, Any]:
        return {"facility_name": info.facility_name, "demo": info.demo}

    @visit.post("/visual")
    def visual(body: VisualCheckRequest) -> dict[str, Any]:
        return homecare.visual(body)

    @visit.post("/consent")
    def visual_consent(body: VisitConsentIn) -> dict[str, Any]:
        record = homecare.consent(body.visit_id, body.choice())
        return record.model_dump(mode="json")

    @visit.get("/courses")
    def courses() -> list[dict[str, Any]]:
        return homecare.courses()

    @visit.post("/courses/{visit_id}/recheck")
    def recheck(visit_id: str, body: RecheckIn) -> dict[str, Any]:
        return homecare.recheck(visit_id, body.care)

    return visit


__all__ = ["KioskInfo", "create_kiosk_app"]
