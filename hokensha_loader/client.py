"""HTTP client for ``POST /v1/uploads`` (contract v1).

httpx-style: the client takes ``transport=`` and builds the real one only when none is given;
httpx errors and problem+json answers are translated here into ``LoaderError``s, so nothing
above this module imports httpx.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from hokensha_loader.errors import AuthError, FileRefusedError, LoaderError, NetworkError, ServerError
from schemas.insurer_files import FileKind

CONTENT_TYPES: dict[str, str] = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


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
    ) -> UploadAnswer:
        """Stream ``body`` (the file's raw bytes) to the server; memory stays flat. With
        ``sha256`` (the file's digest) the server recognises a re-sent file without applying it."""
        headers = {**self._headers, "Content-Type": CONTENT_TYPES[fmt]}
        if sha256 is not None:
            headers["X-Content-SHA256"] = sha256
        if size is not None:
            headers["Content-Length"] = str(size)  # lets the server refuse an oversize file early
        try:
            response = self._client.post("/v1/uploads", params={"kind": kind}, content=body, headers=headers)
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


def _answer(response: httpx.Response) -> UploadAnswer:
    status = response.status_code
    if status == 200:
        try:
            return UploadAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]["msg"]
            raise ServerError(
                f"the server's answer is not an upload result: {first}", key="bad_answer", params={"reason": first}
            ) from exc
    problem = _problem(response)
    code = problem.get("code")
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
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
