from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Iterator
from typing import Any

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
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=32)

    def consume() -> Iterator[bytes]:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    settings = state.settings
    loop = asyncio.get_running_loop()
    worker = loop.run_in_executor(
        None,
        lambda: process_upload(
            state.session_factory,
            state.cache,
            principal,
            kind=kind,
            fmt=fmt,
            chunks=consume(),
            error_limit=settings.upload_error_limit,
            max_bytes=settings.max_upload_bytes,
            declared_sha256=request.headers.get("x-content-sha256"),
        ),
    )

    async def put(item: bytes | BaseException | None) -> bool:
        while not worker.done():
            try:
                chunks.put_nowait(item)
                return True
            except queue.Full:
                await asyncio.sleep(0.002)
        return False

    try:
        async for chunk in request.stream():
            if chunk and not await put(chunk):
                break  # the worker stopped early (file refused): its error is the answer
        await put(None)
    except ClientDisconnect:
        await put(_Disconnected("the client went away mid-upload"))
    except BaseException as exc:
        await put(_Disconnected(str(exc)))
        raise
    try:
        outcome = await worker
    except _Disconnected:
        # nothing was committed; the client is gone, so nobody reads this answer
        log.info("upload aborted: the client went away; rolled back")
        raise ClientGoneError() from None
    for name, n in (("upload_rows_accepted", outcome.accepted), ("upload_rows_rejected", outcome.rejected)):
        state.metrics.add(name, n)
    return outcome.answer()
