"""The hot routes without FastAPI's routing, dependency solving and generic body handling.

The by-number lookup and the two requests of a card check (``POST /v1/card/challenges``,
``POST /v1/eligibility/by-card``) are the server's hot paths, and for them FastAPI's
per-request machinery (route matching over every route, dependencies, body parsing and
validation through the generic field code) cost as much CPU as the work itself. This pure ASGI
layer, placed just inside ``RequestMiddleware`` (request id, body limit, metrics and the request
log line still apply), answers only the ordinary case of each ``FastRoute``:

- a ``Bearer`` token that this process has already resolved (``state.principals``) to a
  facility token,
- a body the route's ``parse`` accepts: for a JSON route a ``Content-Type: application/json``
  body that parses and validates as the route's model; for the challenge, an empty body.

Everything else — no or unknown token, another token kind, another content type, a body that
does not parse or validate — is handed to the FastAPI route untouched (the body replayed), so
every such error is produced by the very code that produced it before. The answer itself comes
from the function the route calls too (``FastRoute.answer``): same JSON, same access-log entry,
same metrics; a ``DomainError`` it raises is rendered by the app's own handler
(``on_domain_error``), anything else goes up to ``RequestMiddleware`` as from the route. Parsing
with ``orjson`` then validating the object in Python mode is what FastAPI does with
``json.loads``; any input that ``orjson`` refuses goes the FastAPI way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shikaku_server.auth.service import Principal, hash_token
from shikaku_server.errors import DomainError
from shikaku_server.state import AppState

_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8")
_CONTENT_TYPE = b"application/json"  # what Response(media_type="application/json") sends

Answer = Callable[[AppState, Principal, Any], Awaitable[bytes]]


@dataclass(frozen=True)
class FastRoute:
    """One route answered here in its ordinary case: ``parse`` the raw body (None: the FastAPI
    route answers instead), then ``answer`` it with the route's own function."""

    path: str
    router: APIRouter  # holds the route: its template labels the metrics (``scope["route"]``)
    parse: Callable[[bytes], Any | None]
    answer: Answer
    json_body: bool = True  # the request must say ``Content-Type: application/json``

    def route(self) -> BaseRoute:
        return next(r for r in self.router.routes if getattr(r, "path", None) == self.path)


def json_model(model: type[BaseModel]) -> Callable[[bytes], BaseModel | None]:
    """``parse`` for a JSON body validated as ``model`` (None for anything FastAPI must word)."""

    def parse(raw: bytes) -> BaseModel | None:
        if not raw:
            return None
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        try:
            return model.model_validate(data)
        except ValidationError:
            return None

    return parse


def empty_body(raw: bytes) -> tuple[()] | None:
    """``parse`` for a route that takes no body: only an empty one is answered here."""
    return () if not raw else None


class FastPaths:
    def __init__(
        self,
        app: ASGIApp,
        state_getter: Callable[[], AppState],
        on_domain_error: Callable[[DomainError], Response],
        routes: Sequence[FastRoute],
    ) -> None:
        self.app = app
        self.state_getter = state_getter
        self.on_domain_error = on_domain_error
        self.routes = {r.path: (r, r.route()) for r in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if entry is None:
            await self.app(scope, receive, send)
            return
        fast, route = entry
        principal = self._principal(scope, fast.json_body)
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
        parsed = fast.parse(b"".join(chunks)) if messages[-1]["type"] == "http.request" else None
        if parsed is None:  # a disconnect, or a body the route must answer
            await self.app(scope, _replay(messages, receive), send)
            return
        scope["route"] = route
        try:
            body = await fast.answer(self.state_getter(), principal, parsed)
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

    def _principal(self, scope: Scope, json_body: bool) -> Principal | None:
        authorization = content_type = None
        for name, value in scope["headers"]:  # the first of each, as ``request.headers.get`` reads
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-type" and content_type is None:
                content_type = value
        if authorization is None:
            return None
        if json_body and (content_type is None or content_type.lower() not in _JSON_TYPES):
            return None
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        principal = self.state_getter().principals.get(hash_token(token))
        if principal is None or principal.kind != "facility" or principal.facility_code is None:
            return None
        return principal


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
