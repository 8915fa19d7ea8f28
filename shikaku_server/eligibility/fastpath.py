"""``POST /v1/eligibility/by-number`` without FastAPI's routing and dependency solving.

The lookup is the server's hot path, and for it FastAPI's per-request machinery (route
matching over every route, four dependencies, body parsing and validation through the
generic field code) cost as much CPU as the lookup itself. This pure ASGI layer, placed just
inside ``RequestMiddleware`` (request id, metrics and the request log line still apply),
answers only the ordinary case:

- a ``Bearer`` token that this process has already resolved (``state.principals``) to a
  facility token,
- a ``Content-Type: application/json`` body that parses and validates as ``ByNumberQuery``.

Everything else — no or unknown token, another token kind, another content type, a body that
does not parse or validate — is handed to the FastAPI route untouched (the body replayed), so
every error is produced by the very code that produced it before. The answer itself comes from
``views.lookup``, the function the route uses too: same JSON, same access-log entry, same
metric. Parsing with ``orjson`` then validating the object in Python mode is what FastAPI does
with ``json.loads``; any input that ``orjson`` refuses goes the FastAPI way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.eligibility import ByNumberQuery
from shikaku_server.auth.service import Principal, hash_token
from shikaku_server.eligibility.views import lookup, router
from shikaku_server.errors import DomainError
from shikaku_server.state import AppState

PATH = "/v1/eligibility/by-number"
_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8")
_CONTENT_TYPE = b"application/json"  # what Response(media_type="application/json") sends


class ByNumberFastPath:
    def __init__(
        self,
        app: ASGIApp,
        state_getter: Callable[[], AppState],
        on_domain_error: Callable[[DomainError], Response],
    ) -> None:
        self.app = app
        self.state_getter = state_getter
        # the route the FastAPI router would have put in the scope: RequestMiddleware labels the
        # metrics with its template
        self.route = next(r for r in router.routes if getattr(r, "path", None) == PATH)
        self.on_domain_error = on_domain_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        principal = self._principal(scope)
        if principal is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        query = _parse(messages, chunks)
        if query is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        state = self.state_getter()
        scope["route"] = self.route
        try:
            body = await lookup(state, principal, query)
        except DomainError as exc:
            await self.on_domain_error(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", _CONTENT_TYPE)],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _principal(self, scope: Scope) -> Principal | None:
        authorization = content_type = None
        for name, value in scope["headers"]:  # the first of each, as ``request.headers.get`` reads
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-type" and content_type is None:
                content_type = value
        if authorization is None or content_type is None or content_type.lower() not in _JSON_TYPES:
            return None
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        principal = self.state_getter().principals.get(hash_token(token))
        if principal is None or principal.kind != "facility" or principal.facility_code is None:
            return None
        return principal


def _parse(messages: list[Message], chunks: list[bytes]) -> ByNumberQuery | None:
    if messages[-1]["type"] != "http.request":
        return None  # a disconnect: let the route see it
    raw = b"".join(chunks)
    if not raw:
        return None
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return ByNumberQuery.model_validate(data)
    except ValidationError:
        return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
