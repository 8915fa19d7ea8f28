"""HTTP client for ``POST /v1/uploads`` (contract v1).

httpx-style: the client takes ``transport=`` and builds the real one only when none is given;
httpx errors and problem+json answers are translated here into ``LoaderError``s, so nothing
above this module imports httpx.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal, NoReturn

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from hokensha_loader.errors import AuthError, FileRefusedError, LoaderError, NetworkError, ServerError
from schemas.insurer_files import FileKind

CONTENT_TYPES: dict[str, str] = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
NDJSON = "application/x-ndjson"
# the streamed answer with the server's progress, or the plain JSON answer (a server without it)
ACCEPT = f"{NDJSON}, application/json;q=0.9"


class ServerRowError(BaseModel):
    model_config = ConfigDict(extra="ignore")

    line: int
    field: str | None = None
    code: str
    message: str


class UploadAnswer(BaseModel):
    """The 200 answer of ``POST /v1/uploads``."""

    model_config = ConfigDict(extra="ignore")

    upload_id: str
    accepted: int
    rejected: int
    unchanged: int = 0
    duplicate: bool = False
    errors: list[ServerRowError] = []
    errors_truncated: bool = False
    warnings: list[ServerRowError] = []  # accepted rows with characters outside JIS X 0208
    warning_count: int = 0


class ServerPhase(BaseModel):
    """One progress line of the streamed answer (docs/uploads.md, Progress): the server's phase
    (parsing, validating, applying, committing) and its counts so far."""

    model_config = ConfigDict(extra="ignore")

    phase: str
    read: int = 0
    applied: int = 0
    unchanged: int = 0
    rejected: int = 0
    total: int | None = None
    elapsed_s: float | None = None  # the server's seconds since it started on the upload

    @property
    def done(self) -> int:
        """Records the server has dealt with (applied, unchanged or rejected)."""
        return self.applied + self.unchanged + self.rejected


class UploadClient:
    """One insurer's connection to the server; use as a context manager.

    Builds its own ``httpx.Client`` (over ``transport`` when given: tests pass a mock), or uses
    the ``http`` client it is handed (e.g. a test client of the app), which it then does not close.
    """

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 3600.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._owned = http is None
        self._client = (
            http
            if http is not None
            else httpx.Client(
                base_url=server_url.rstrip("/"),
                # connect fast or fail; the answer comes after the server has committed the whole file
                timeout=httpx.Timeout(timeout_s, connect=10.0),
                transport=transport,
            )
        )
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": "hokensha-load/1"}
        self.server_url = server_url

    def __enter__(self) -> UploadClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def upload(
        self,
        kind: FileKind,
        fmt: Literal["csv", "ndjson"],
        body: Iterator[bytes],
        *,
        size: int | None = None,
        sha256: str | None = None,
        on_phase: Callable[[ServerPhase], None] | None = None,
    ) -> UploadAnswer:
        """Stream ``body`` (the file's raw bytes) to the server; memory stays flat. With
        ``sha256`` (the file's digest) the server recognises a re-sent file without applying it.
        The server's progress lines, once the body is sent, go to ``on_phase`` as they come."""
        headers = {**self._headers, "Content-Type": CONTENT_TYPES[fmt], "Accept": ACCEPT}
        if sha256 is not None:
            headers["X-Content-SHA256"] = sha256
        if size is not None:
            headers["Content-Length"] = str(size)  # lets the server refuse an oversize file early
        try:
            with self._client.stream(
                "POST", "/v1/uploads", params={"kind": kind}, content=body, headers=headers
            ) as response:
                if response.status_code == 200 and _media(response) == NDJSON:
                    return _streamed(response, on_phase or (lambda _: None))
                response.read()
        except httpx.TimeoutException as exc:
            raise NetworkError(
                f"the server at {self.server_url} did not answer in time ({exc})",
                key="timeout", params={"url": self.server_url, "reason": exc},
            ) from exc
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot reach the server at {self.server_url}: {exc}",
                key="unreachable", params={"url": self.server_url, "reason": exc},
            ) from exc
        return _answer(response)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _media(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def _bad_answer(reason: str) -> ServerError:
    return ServerError(
        f"the server's answer is not an upload result: {reason}", key="bad_answer", params={"reason": reason}
    )


def _result(validate: Callable[[Any], UploadAnswer], value: Any) -> UploadAnswer:
    try:
        return validate(value)
    except ValidationError as exc:
        raise _bad_answer(exc.errors()[0]["msg"]) from exc


def _streamed(response: httpx.Response, on_phase: Callable[[ServerPhase], None]) -> UploadAnswer:
    """Progress lines, then ``done`` with the answer or ``failed`` with the problem."""
    for raw in response.iter_lines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            raise _bad_answer("a progress line is not JSON") from None
        if not isinstance(line, dict):
            raise _bad_answer("a progress line is not an object")
        if line.get("phase") == "done":
            return _result(UploadAnswer.model_validate, line.get("result"))
        if line.get("phase") == "failed":
            problem = line.get("problem")
            problem = problem if isinstance(problem, dict) else {}
            status = problem.get("status")
            _raise_problem(status if isinstance(status, int) else 500, problem, "")
        try:
            on_phase(ServerPhase.model_validate(line))
        except ValidationError:
            continue  # a line of a later server version: the answer still comes
    raise _bad_answer("the answer ended before its result")


def _answer(response: httpx.Response) -> UploadAnswer:
    status = response.status_code
    if status != 200:
        _raise_problem(status, _problem(response), response.reason_phrase)
    return _result(UploadAnswer.model_validate_json, response.content)


def _raise_problem(status: int, problem: dict[str, Any], reason_phrase: str) -> NoReturn:
    code = problem.get("code")
    detail = problem.get("detail") or problem.get("title") or reason_phrase
    line = problem.get("line") if isinstance(problem.get("line"), int) else None
    where = f" (line {line})" if line else ""
    if status == 401:
        raise AuthError(
            f"the server refused the token: {detail}", code=code or "unauthorized",
            key="token_refused", params={"reason": detail},
        )
    if status == 403:
        raise AuthError(
            f"this token may not upload that: {detail}", code=code, key="token_forbidden", params={"reason": detail}
        )
    if status in (400, 413, 415, 422):
        raise FileRefusedError(
            f"the server refused the file{where}: {detail}", code=code, line=line,
            key="server_refused", params={"reason": detail},
        )
    error: type[LoaderError] = ServerError
    raise error(
        f"the server answered {status}: {detail}", code=code, key="server_status",
        params={"status": status, "reason": detail},
    )
