"""Read-only JSON view of the results the terminal wrote (for new software and the kiosk).

Mount with ``app.include_router(make_router(root))``:
``GET /api/results`` (newest first; ``?kind=single|face|followup|bulk_registration|bulk_download|
reference_registration|medications|checkups|procedures|assistance|assistance_bulk_download``,
``?limit=``) and ``GET /api/results/{file_id}`` (``documents.to_json`` of
the result whose XML is ``<file_id>.xml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from clinic_terminal.xmlif.state import TerminalState


def make_router(root: Path, *, state: TerminalState | None = None) -> APIRouter:
    router = APIRouter(prefix="/api/results", tags=["xml-interface"])
    holder: list[TerminalState] = [] if state is None else [state]

    def get_state() -> TerminalState:
        if not holder:
            holder.append(TerminalState.for_root(Path(root)))
        return holder[0]

    @router.get("")
    def list_results(
        kind: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        return get_state().list_results(limit=limit, kind=kind)

    @router.get("/{file_id}", response_model=None)
    def get_result(file_id: str) -> dict[str, Any] | JSONResponse:
        body = get_state().result(file_id)
        if body is None:
            return JSONResponse(
                {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "code": "not_found",
                    "detail": f"no result {file_id}",
                },
                status_code=404,
                media_type="application/problem+json",
            )
        return body

    return router
