"""An upload's progress, streamed to the client that asks for it (docs/uploads.md, "Progress").

``UploadProgress`` is filled in by ``process_upload`` from its two threads (the reading thread:
rows read and validated; the applying thread: records applied) and read by the response. A
client that sends ``Accept: application/x-ndjson`` gets the answer as NDJSON: one progress line
per phase change and about every ``INTERVAL_S`` while the counts move, then one final line with
the usual answer (``{"phase": "done", "result": {…}}``) or the problem (``{"phase": "failed",
"problem": {…}}``). Every other client gets the plain JSON answer as before.

The progress travels on the upload's own connection, so it needs no state shared between server
processes (any worker of any host that takes the upload reports it), nothing to clean up, and
no second request. Phases, in order: ``parsing`` (the body's encoding and header, until the
first batch of rows is read), ``validating`` (rows read and checked; the earlier batches are
applied meanwhile), ``applying`` (every row read: the last batches are written), ``committing``
(the file's one transaction), then ``done``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Phase = Literal["parsing", "validating", "applying", "committing"]
NDJSON = "application/x-ndjson"
INTERVAL_S = 0.5


class UploadProgress:
    """Counts and phase of one upload; safe to update from any thread. Without a reader it is
    just a few integers, so ``process_upload`` always keeps one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._phase: Phase = "parsing"
        self._read = 0
        self._total: int | None = None
        self._applied = 0
        self._unchanged = 0
        self._rejected = 0
        self._changes: list[dict[str, Any]] = []  # each phase's last and first state, not yet sent
        self.version = 0  # moves on every update: the response sends only what changed

    def _update(self, phase: Phase | None = None, **counts: int) -> None:
        with self._lock:
            if phase is not None and phase != self._phase:
                # the phase left, as it ended, then the one entered: neither is lost between reads
                self._changes.append(self._snapshot())
                self._phase = phase
                for name, value in counts.items():
                    setattr(self, f"_{name}", value)
                self._changes.append(self._snapshot())
            else:
                for name, value in counts.items():
                    setattr(self, f"_{name}", value)
            self.version += 1

    def validated(self, rows_read: int) -> None:
        """The reading thread has read and checked ``rows_read`` records."""
        self._update("validating", read=rows_read)

    def applied(self, accepted: int, unchanged: int, rejected: int) -> None:
        """The applying thread's running counts (the answer's counts so far)."""
        self._update(applied=accepted, unchanged=unchanged, rejected=rejected)

    def all_read(self, rows_read: int) -> None:
        """Every record of the body is read; what is left is writing the last batches."""
        self._update("applying", read=rows_read, total=rows_read)

    def committing(self) -> None:
        self._update("committing")

    def _snapshot(self) -> dict[str, Any]:
        line: dict[str, Any] = {"phase": self._phase, "read": self._read, "applied": self._applied,
                                "unchanged": self._unchanged, "rejected": self._rejected,
                                "elapsed_s": round(time.monotonic() - self._started, 1)}
        if self._total is not None:
            line["total"] = self._total
        return line

    def take(self) -> list[dict[str, Any]]:
        """The phase changes since the last call (the end of the phase left, the start of the
        phase entered), then the current state (if not just listed)."""
        with self._lock:
            lines, self._changes = self._changes, []
            current = self._snapshot()
            if not lines or lines[-1] != current:
                lines.append(current)
            return lines


def wants_progress(request: Request) -> bool:
    """Whether the client asked for the streamed answer (``Accept: application/x-ndjson``)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == NDJSON for part in accept.split(","))


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class ProgressResponse(Response):
    """200 ``application/x-ndjson``: progress lines while ``work`` runs, then its answer or its
    problem. Sent with plain ASGI messages: Starlette's ``StreamingResponse`` would also read
    ``receive`` for a disconnect, taking the request body away from ``work``."""

    media_type = NDJSON

    def __init__(
        self,
        work: Callable[[UploadProgress], Awaitable[dict[str, Any]]],
        render_error: Callable[[Exception], Response],
    ) -> None:
        super().__init__(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        # no Content-Length (Response puts that of its empty body): the length is not known yet
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.work = work
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        progress = UploadProgress()
        task = asyncio.ensure_future(self.work(progress))
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        sent = -1
        try:
            while not task.done():
                if progress.version != sent:
                    sent = progress.version
                    body = b"".join(_line(line) for line in progress.take())
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                await asyncio.wait({task}, timeout=INTERVAL_S)
        finally:
            if not task.done():  # the response was cancelled (server shutdown): stop the upload
                task.cancel()
        try:
            final = {"phase": "done", "result": task.result()}
        except Exception as exc:
            problem = self.render_error(exc)
            final = {"phase": "failed", "problem": json.loads(bytes(problem.body))}
        body = b"".join(_line(line) for line in progress.take()) if progress.version != sent else b""
        await send({"type": "http.response.body", "body": body + _line(final), "more_body": False})
