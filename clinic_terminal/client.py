"""The terminal's client for the central server: one place that speaks HTTP to it.

``ServerClient`` takes an ``httpx`` transport (tests pass ``httpx.ASGITransport`` over the app or
a ``MockTransport``); it builds the real one only when none is given. Problem+json answers
become ``ServerError`` with the contract's ``code``; connection failures become
``ServerError("unavailable")`` so the kiosk can say "ask staff".
"""

from __future__ import annotations

from typing import Any

import httpx

from schemas.eligibility import (
    BatchCreate,
    BatchCreated,
    BatchResult,
    ByNumberQuery,
    EligibilityResult,
)


class ServerError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body


class ServerClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 20.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise ServerError("unavailable", f"the server cannot be reached: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ServerError(
                str(body.get("code", "unavailable" if response.status_code >= 500 else "error")),
                str(body.get("detail") or body.get("title") or response.reason_phrase),
                response.status_code,
                body,
            )
        return response.json()

    # --- eligibility
    def by_number(self, query: ByNumberQuery) -> EligibilityResult:
        data = self.request("POST", "/v1/eligibility/by-number", query.model_dump(mode="json", exclude_none=True))
        return EligibilityResult.model_validate(data)

    def create_batch(self, queries: list[ByNumberQuery], label: str | None = None) -> BatchCreated:
        body = BatchCreate(queries=queries, label=label).model_dump(mode="json", exclude_none=True)
        return BatchCreated.model_validate(self.request("POST", "/v1/eligibility/batches", body))

    def get_batch(self, batch_id: str) -> BatchResult:
        return BatchResult.model_validate(self.request("GET", f"/v1/eligibility/batches/{batch_id}"))
