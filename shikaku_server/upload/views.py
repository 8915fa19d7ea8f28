from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from anyio import from_thread, to_thread
from fastapi import APIRouter, Query, Request, Response
from starlette.requests import ClientDisconnect

from schemas.insurer_files import FileKind
from shikaku_server.auth.service import Principal
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.errors import DomainError
from shikaku_server.problems import error_response
from shikaku_server.state import AppState
from shikaku_server.upload.progress import NDJSON, ProgressResponse, UploadProgress, wants_progress
from shikaku_server.upload.service import process_upload

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
log = logging.getLogger(__name__)

_FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
}


class UnsupportedMediaTypeError(DomainError):
    code = "validation_error"
    title = "Unsupported content type"
    status = 415


class _Disconnected(Exception):
    pass


class ClientGoneError(DomainError):
    code = "validation_error"
    title = "The upload was interrupted; nothing was applied"
    status = 400


@router.post(
    "",
    response_model=dict[str, Any],
    responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}},
                     "description": "The answer; with `Accept: application/x-ndjson`, progress lines then"
                     " the answer as the last line (docs/uploads.md, Progress)"}},
)
async def upload(
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
    kind: FileKind = Query(
        description="eligibility, medications, checkups, expenses (insurer tokens); assistance (福祉事務所"
        " tokens); public_expense (公費負担者 tokens)"
    ),
) -> dict[str, Any] | Response:
    """The answer as JSON, or streamed with its progress when the client asks for NDJSON."""
    principal.writable(kind)
    if not wants_progress(request):
        return await _apply(request, principal, state, kind, UploadProgress())
    _media(request)  # a wrong content type is still a plain 415
    return ProgressResponse(lambda progress: _apply(request, principal, state, kind, progress), error_response)


def _media(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = _FORMATS.get(media)
    if fmt is None:
        raise UnsupportedMediaTypeError(
            f"content type {media or '(none)'!r}: send text/csv (UTF-8 or Shift_JIS/CP932) or application/x-ndjson"
        )
    return fmt


async def _apply(
    request: Request, principal: Principal, state: AppState, kind: FileKind, progress: UploadProgress
) -> dict[str, Any]:
    """Stream the body into the (synchronous) applier running in a worker thread; the whole file
    is one transaction, so a dropped connection rolls everything back."""
    fmt = _media(request)
    body = request.stream()

    def chunks() -> Iterator[bytes]:
        # the applier's thread asks the event loop for each next piece of the body (anyio's
        # portal into the loop that started the thread): it reads as fast as it applies, no faster
        while True:
            try:
                chunk = from_thread.run(anext, body)
            except StopAsyncIteration:
                return
            except ClientDisconnect:
                raise _Disconnected("the client went away mid-upload") from None
            if chunk:
                yield chunk

    settings = state.settings
    try:
        outcome = await to_thread.run_sync(
            lambda: process_upload(
                state.session_factory,
                state.cache,
                principal,
                writers=state.bulk_writers,
                kind=kind,
                fmt=fmt,
                chunks=chunks(),
                error_limit=settings.upload_error_limit,
                max_bytes=settings.max_upload_bytes,
                declared_sha256=request.headers.get("x-content-sha256"),
                progress=progress,
            )
        )
    except _Disconnected:
        # nothing was committed; the client is gone, so nobody reads this answer
        log.info("upload aborted: the client went away; rolled back")
        raise ClientGoneError() from None
    for name, n in (("upload_rows_accepted", outcome.accepted), ("upload_rows_rejected", outcome.rejected)):
        state.metrics.add(name, n)
    return outcome.answer()
