"""The ASGI app: built by ``create_app(settings)``; engine and cache live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.identifiers import my_number_in
from shikaku_server import api, openapi
from shikaku_server.access_log.service import AccessLogWriter, make_entry_inserter
from shikaku_server.auth.service import revocation_mark
from shikaku_server.batch.service import BatchRecovery
from shikaku_server.card import views as card_views
from shikaku_server.card.service import CardPorts, CertificateVerifier
from shikaku_server.card.store import make_card_store
from shikaku_server.config import Settings, get_settings
from shikaku_server.database import ThreadedTransactions, make_engine, make_session_factory
from shikaku_server.eligibility import views as eligibility_views
from shikaku_server.eligibility.reader import make_bundle_reader
from shikaku_server.errors import DomainError, MyNumberDetectedError, PayloadTooLargeError
from shikaku_server.fastpath import FastPaths
from shikaku_server.fhir.fastpath import EligibilityFastPath
from shikaku_server.metrics import Metrics
from shikaku_server.pgasync import make_async_pg
from shikaku_server.problems import domain_problem, error_response, problem
from shikaku_server.ratelimit import RateLimiter
from shikaku_server.state import AppState
from shikaku_server.stores import make_stores
from shikaku_server.upload.bulk import make_bulk_writers

log = logging.getLogger("shikaku_server.request")
def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_problem(exc)


_SAFE_LOC = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
UNNAMED_KEY = "<key>"  # stands for a JSON key or parameter name not echoed (it could carry a My Number)


def _safe_loc(part: object) -> str:
    """A location part as it may be echoed: list indexes and plain field names; any other key
    (an unknown key could be a My Number or personal data) is named ``<key>``."""
    if isinstance(part, int):
        return str(part)
    text = str(part)
    if _SAFE_LOC.fullmatch(text) and not my_number_in(text):
        return text
    return UNNAMED_KEY


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    my_number = False
    for err in exc.errors():
        message = str(err.get("msg", ""))
        my_number = my_number or "my_number_detected" in message or my_number_in(list(err.get("loc", ())))
        if my_number_in(message):
            message = "the value is not valid"
        # never echo the input (it may be personal data), nor a key that is not a plain name
        errors.append({"loc": [_safe_loc(p) for p in err.get("loc", ())], "msg": message, "type": err.get("type")})
    if my_number:
        return problem(
            MyNumberDetectedError.status, MyNumberDetectedError.code, MyNumberDetectedError.title, errors=errors
        )
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "validation_error", "Malformed JSON", "the request body is not valid JSON", errors=errors)
    detail = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors[:10])
    return problem(422, "validation_error", "The request is not valid", detail, errors=errors)


async def _path_without_nul(request: Request) -> None:  # async: no thread hop on every request
    """A NUL (``%00``) in the path is a 422 before any route code runs: PostgreSQL cannot hold
    it in a text parameter, so it must never reach a query."""
    if "\x00" in request.url.path or any("\x00" in str(v) for v in request.path_params.values()):
        raise RequestValidationError(
            [{"loc": ("path",), "msg": "the path must not contain a NUL character", "type": "value_error"}]
        )


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, str(exc.detail))


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """Last resort (outside ``RequestMiddleware``, which answers every error of a request)."""
    return error_response(exc)


class _BodyTooLarge(PayloadTooLargeError):
    """A body read past the limit (sent without a Content-Length). A domain error, so a route that
    reads its own body (the FHIR facade) or FastAPI's handler answers it as 413, never as a 500."""


class RequestMiddleware:
    """Request id, size limit for JSON bodies, metrics and one log line per request (pure ASGI).

    It is also the error boundary: an exception that escapes the app (a route, a dependency,
    the fast paths) is answered here by ``error_response``, so a 500 or a 503 gets its
    log line and its metric like any other answer."""

    def __init__(self, app: ASGIApp, state_getter: Any) -> None:
        self.app = app
        self.state_getter = state_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: AppState = self.state_getter()
        start = time.perf_counter()
        request_id = secrets.token_urlsafe(12)  # base64url: never a long run of digits in the logs
        limit = None if scope["path"].startswith("/v1/uploads") else state.settings.max_json_body_bytes
        status_holder = {"status": 500, "started": False}
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(f"JSON bodies are limited to {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        if limit is not None:
            for name, value in scope.get("headers", ()):
                if name == b"content-length" and value.isdigit() and int(value) > limit:
                    await self._too_large(scope, receive, tracking_send, limit)
                    self._finish(state, scope, status_holder["status"], start, request_id)
                    return
        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not status_holder["started"]:
                await self._too_large(scope, receive, tracking_send, limit or 0)
        except Exception as exc:
            if status_holder["started"]:  # too late for an error answer: log it, end the response
                logging.getLogger("shikaku_server").error("error after the response started", exc_info=exc)
                status_holder["status"] = 500
                self._finish(state, scope, 500, start, request_id)
                raise
            await error_response(exc)(scope, receive, tracking_send)
        self._finish(state, scope, status_holder["status"], start, request_id)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(
            413, "payload_too_large", "The request body is too large", f"JSON bodies are limited to {limit} bytes"
        )
        await response(scope, receive, send)

    @staticmethod
    def _finish(state: AppState, scope: Scope, status: int, start: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        elapsed = time.perf_counter() - start
        state.metrics.observe(scope["method"], template, status, elapsed)
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": scope["method"],
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


async def watch_revocations(state: AppState, interval: float) -> None:
    """Empty the principal cache whenever a token has been revoked (by ``shikaku-admin token
    revoke`` in any process): one small query every ``interval`` seconds per process, nothing on
    the request path. A failing database is retried at the next tick."""

    last: tuple[int, str | None] | None = None
    failing = False
    while True:
        try:
            current = await state.reads.read(revocation_mark)
        except Exception:
            if not failing:
                logging.getLogger("shikaku_server").warning("token revocation check failed", exc_info=True)
            failing = True
        else:
            failing = False
            if last is not None and current != last:
                state.principals.clear()
            last = current
        await asyncio.sleep(interval)


_FROZEN: list[bool] = []


def _freeze_startup_objects() -> None:
    """Once per process, after the first startup: move every object alive now (modules, models,
    validators, the app) out of the cyclic collector's sight. A full collection otherwise walks
    them all — a 50 ms pause of the event loop every few thousand requests, the lookups' p99."""
    if not _FROZEN:
        _FROZEN.append(True)
        gc.collect()
        gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    holder: dict[str, AppState] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeouts = settings.db_timeouts()
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, timeouts=timeouts)
        stores = make_stores(
            settings.redis_url, timeout=settings.redis_timeout_seconds, breaker=settings.redis_breaker_seconds
        )
        factory = make_session_factory(engine)
        read_factory = make_session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
        transactions = ThreadedTransactions(factory)
        reads = ThreadedTransactions(read_factory)  # autocommit reads (the hot path's)
        pg = make_async_pg(engine, settings.db_pool_size, timeouts)
        bundles = make_bundle_reader(reads, pg)
        metrics = Metrics()
        writer = AccessLogWriter(make_entry_inserter(factory))
        state = AppState(
            settings=settings,
            engine=engine,
            session_factory=factory,
            read_factory=read_factory,
            transactions=transactions,
            reads=reads,
            stores=stores,
            bundles=bundles,
            bulk_writers=make_bulk_writers(engine),
            card=CardPorts(
                factory=factory,
                transactions=transactions,
                challenges=stores.challenges,
                verifier=CertificateVerifier(settings.trust_anchor_paths(), settings.certificate_cache_size, reads),
                cards=make_card_store(transactions, pg),
                cache=stores.cache,
                bundles=bundles,
                challenge_ttl=settings.challenge_ttl_seconds,
                eligibility_ttl=settings.eligibility_cache_ttl_seconds,
            ),
            metrics=metrics,
            access_log=writer,
            limiter=RateLimiter(stores.counters, settings, metrics),
            pg=pg,
        )
        app.state.shikaku = state
        holder["state"] = state
        _freeze_startup_objects()
        recovery = BatchRecovery(
            transactions=state.transactions,
            cache=stores.cache,
            bundles=bundles,
            ttl=settings.eligibility_cache_ttl_seconds,
            lease=dt.timedelta(seconds=settings.batch_lease_seconds),
        )
        recovery.start()  # batches whose runner died (in this process before a restart, or in another)
        watcher = asyncio.create_task(watch_revocations(state, settings.token_revocation_check_seconds))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await recovery.close()
            state.access_log.close()
            if state.pg is not None:
                state.pg.close()
            stores.close()
            engine.dispose()

    app = FastAPI(
        title="shikaku central server",
        version="1",
        lifespan=lifespan,
        dependencies=[Depends(_path_without_nul)],
        openapi_url=None,  # served by openapi.install, with /docs
        docs_url=None,
        redoc_url=None,
    )
    openapi.install(app)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    api.mount(app)
    # inside RequestMiddleware (added last = outermost): request id, metrics and log line apply
    app.add_middleware(
        FastPaths,
        state_getter=lambda: holder["state"],
        on_domain_error=domain_problem,
        routes=[eligibility_views.FAST, card_views.FAST_CHALLENGE, card_views.FAST_BY_CARD],
    )
    app.add_middleware(EligibilityFastPath)  # POST /fhir/R4/CoverageEligibilityRequest, the same way
    app.add_middleware(RequestMiddleware, state_getter=lambda: holder["state"])
    return app
