from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from anyio import from_thread, to_thread
from fastapi import APIRouter, Query, Request
from starlette.requests import ClientDisconnect

from schemas.insurer_files import FileKind
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.errors import DomainError
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


@router.post("")
async def upload(
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
    kind: FileKind = Query(description="eligibility, medications or checkups"),
) -> dict[str, Any]:
    """Stream the body into the (synchronous) applier running in a worker thread; the whole file
    is one transaction, so a dropped connection rolls everything back."""
    principal.require_insurer()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = _FORMATS.get(media)
    if fmt is None:
        raise UnsupportedMediaTypeError(
            f"content type {media or '(none)'!r}: send text/csv (UTF-8 or Shift_JIS/CP932) or application/x-ndjson"
        )
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
                kind=kind,
                fmt=fmt,
                chunks=chunks(),
                error_limit=settings.upload_error_limit,
                max_bytes=settings.max_upload_bytes,
                declared_sha256=request.headers.get("x-content-sha256"),
            )
        )
    except _Disconnected:
        # nothing was committed; the client is gone, so nobody reads this answer
        log.info("upload aborted: the client went away; rolled back")
        raise ClientGoneError() from None
    for name, n in (("upload_rows_accepted", outcome.accepted), ("upload_rows_rejected", outcome.rejected)):
        state.metrics.add(name, n)
    return outcome.answer()
