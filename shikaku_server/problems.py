"""The problem+json answers (docs/contract.md, "Errors"): one renderer for a domain error, a
backing service that failed (503) and anything else (500). The app's exception handlers and
middleware answer with these, and so does a streamed answer that fails midway (``upload.progress``)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2  # type: ignore[import-untyped]  # no stubs installed (psycopg2-binary)
import redis
import sqlalchemy.exc
from fastapi.responses import JSONResponse

from shikaku_server.cache import CacheError
from shikaku_server.database import sqlstate
from shikaku_server.errors import RETRY_AFTER_SECONDS, DomainError, UnavailableError

PROBLEM = "application/problem+json"

# A backing service that is down, frozen or out of connections (the database, its pool, Redis):
# translated to ``UnavailableError`` (503 with Retry-After) in one place, ``RequestMiddleware``.
# SQLite's "database is locked" is an OperationalError too: busy, so 503 as well.
BACKING_SERVICE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection became free within pool_timeout
    psycopg2.OperationalError,  # the event-loop reads (pgasync)
    psycopg2.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    CacheError,
)
# Database errors of other classes that mean "the database cannot serve now", by SQLSTATE:
# 08 connection, 40 transaction rollback (deadlock, serialization: retry), 53 insufficient
# resources (disk full, too many connections), 57 operator intervention (shutdown, starting up),
# 58 system error (I/O), and 25006 (read-only transaction: the node behind the primary's address
# is a replica for the moment of a failover).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
_UNAVAILABLE_SQLSTATES = ("25006",)


def backing_service_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says a backing service is down, frozen, full or switching over (503)."""
    if isinstance(exc, BACKING_SERVICE_ERRORS):
        return True
    code = sqlstate(exc)
    return code is not None and (code[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or code in _UNAVAILABLE_SQLSTATES)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:shikaku:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def domain_problem(exc: DomainError) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return problem(exc.status, exc.code, exc.title, exc.detail, headers or None, **exc.extra)


def error_response(exc: Exception) -> JSONResponse:
    """The answer to an exception that reached the boundary: a domain error as itself, a backing
    service failure as 503 ``unavailable``, anything else as 500 (logged with its type only)."""
    if isinstance(exc, DomainError):
        return domain_problem(exc)
    if backing_service_failed(exc):
        logging.getLogger("shikaku_server").warning("a backing service is unavailable", exc_info=exc)
        return domain_problem(UnavailableError("a backing service (database or cache) is unavailable; retry later"))
    logging.getLogger("shikaku_server").error("unhandled error", exc_info=exc)
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred; it has been logged")
