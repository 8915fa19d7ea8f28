"""The local screens' pages and their common ground: the static files (an allow-list), the
security headers on every answer (no-store, CSP). The kiosk app (``kiosk.app``) and the patient
portal app (``portal.web``) both serve them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

_STATIC = {
    "kiosk.js": "text/javascript; charset=utf-8",
    "kiosk.css": "text/css; charset=utf-8",
    "staff.js": "text/javascript; charset=utf-8",
    "staff.css": "text/css; charset=utf-8",
    "common.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
    "portal.css": "text/css; charset=utf-8",
    "visit.js": "text/javascript; charset=utf-8",
    "visit.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    "Cache-Control": "no-store, max-age=0",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def page(name: str) -> str:
    return resources.files("clinic_terminal.kiosk").joinpath("static", name).read_text(encoding="utf-8")


def serve_static(app: FastAPI) -> None:
    """The local screens' common ground: the security headers on every answer (no-store, CSP)
    and ``/static/*`` — the kiosk app and the patient portal app both."""
    static = {name: page(name) for name in _STATIC}

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers[key] = value
        return response

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return JSONResponse({"code": "not_found"}, status_code=404)
        return Response(static[name], media_type=_STATIC[name])


__all__ = ["page", "serve_static"]
