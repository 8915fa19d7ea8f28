"""``/fhir/R4``: the FHIR R4 facade (contract: "FHIR R4 facade"; docs/fhir.md).

Every answer is ``application/fhir+json``, errors included: a domain error is an
OperationOutcome with the contract's code in ``details.coding`` (``urn:shikaku:error``) and the
HTTP status of the JSON API. The routes read their bodies themselves (FastAPI's own validation
would answer problem+json), and a catch-all route answers unknown paths and methods."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect

from shikaku_server.auth.service import Principal
from shikaku_server.cache import CacheError
from shikaku_server.deps import get_principal
from shikaku_server.errors import DomainError, UnavailableError, ValidationFailedError
from shikaku_server.fhir import codes, mapping, service
from shikaku_server.fhir.mapping import InvalidResourceError, Validated
from shikaku_server.me import views as me_views
from shikaku_server.state import AppState

BASE = "/fhir/R4"
router = APIRouter(prefix=BASE, tags=["fhir"])
log = logging.getLogger(__name__)
_KNOWN = {
    "metadata": "GET",
    "CoverageEligibilityRequest": "POST",
    "MedicationDispense": "GET",
    "Observation": "GET",
    "Procedure": "GET",
    "AuditEvent/_search": "POST",
}


def fhir_response(
    resource: dict[str, Any] | Validated, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A resource validated by its R4B model as it is rendered (``mapping.render``), or already
    validated (``answers``)."""
    body = resource.body if isinstance(resource, Validated) else mapping.render(resource)
    return Response(body, status_code=status, media_type=codes.FHIR_JSON, headers=headers)


def error_response(exc: DomainError) -> Response:
    outcome = exc.outcome if isinstance(exc, InvalidResourceError) and exc.outcome else mapping.outcome_of(exc)
    status = exc.status
    if isinstance(exc, InvalidResourceError) and exc.my_number:
        outcome["issue"][0]["details"]["coding"][0]["code"] = "my_number_detected"
    headers = dict(exc.headers)  # Retry-After of a rate limit or an outage
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return fhir_response(outcome, status, headers or None)


async def guarded(work: Callable[[], Awaitable[dict[str, Any] | Validated]], status: int = 200) -> Response:
    """The interaction's resource, or its error as an OperationOutcome (never problem+json)."""
    try:
        return fhir_response(await work(), status)
    except DomainError as exc:
        return error_response(exc)
    except ClientDisconnect:  # nobody to answer: not a server error
        log.info("the client went away before its request was read")
        return fhir_response(mapping.operation_outcome("validation_error", 400, "the request was not received"), 400)
    except (SQLAlchemyError, CacheError):
        log.warning("a backing service failed during a FHIR interaction", exc_info=True)
        return error_response(UnavailableError("a backing service is unavailable; try again"))
    except Exception:
        log.exception("unhandled error in a FHIR interaction")
        return fhir_response(
            mapping.operation_outcome("internal_error", 500, "an unexpected error occurred; it has been logged"), 500
        )


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.shikaku
    return state


async def _principal(request: Request) -> Principal:
    return await get_principal(request, _state(request))


async def _resource(request: Request) -> tuple[Any, bytes]:
    """The body as parsed JSON, and its bytes; malformed JSON is 400 (as on the JSON API)."""
    raw = await request.body()
    try:
        return orjson.loads(raw), raw
    except orjson.JSONDecodeError:
        raise _MalformedJSONError(
            "the request body is not valid JSON",
            mapping.operation_outcome("validation_error", 400, "the request body is not valid JSON"),
        ) from None


class _MalformedJSONError(InvalidResourceError):
    status = 400


def _link(request: Request) -> str:
    return str(request.url)


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """The CapabilityStatement (no token needed: clients read it to learn how to authenticate)."""
    return await guarded(lambda: _ready(mapping.capability_statement(str(request.base_url).rstrip("/") + BASE)))


async def _ready(value: dict[str, Any]) -> dict[str, Any]:
    return value


@router.post("/CoverageEligibilityRequest")
async def coverage_eligibility(request: Request) -> Response:
    """Also called directly, without FastAPI's routing, by ``fastpath.EligibilityFastPath``."""

    async def work() -> Validated:
        principal = await _principal(request)
        data, raw = await _resource(request)
        return await service.eligibility_body(_state(request).lookup, principal, data, raw)

    return await guarded(work)


@router.post("")
async def system_batch(request: Request) -> Response:
    async def work() -> dict[str, Any]:
        principal = await _principal(request)
        data, _ = await _resource(request)
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise ValidationFailedError("a Bundle of type batch is expected")
        return await service.batch(_state(request).lookup, principal, data)

    return await guarded(work)


MAX_DATE_PARAMS = 2  # a range: date=geX&date=leY


def _visit(request: Request, also: frozenset[str] = frozenset()) -> str:
    params = request.query_params
    unknown = sorted(set(params) - {"visit", "_format", *also})
    if unknown:
        supported = ", ".join(sorted({"visit", *also}))
        raise ValidationFailedError(f"unsupported search parameter(s); supported here: {supported}")
    values = params.getlist("visit")
    if len(values) != 1 or not values[0] or len(values[0]) > 100:
        raise ValidationFailedError("the search parameter visit (one visit_id) is required")
    return values[0]


@router.get("/MedicationDispense")
async def medication_dispense(request: Request) -> Response:
    async def work() -> dict[str, Any]:
        principal = await _principal(request)
        transactions = _state(request).transactions
        return await service.medication_dispenses(transactions, principal, _visit(request), _link(request))

    return await guarded(work)


@router.get("/Observation")
async def observation(request: Request) -> Response:
    async def work() -> dict[str, Any]:
        principal = await _principal(request)
        return await service.observations(_state(request).transactions, principal, _visit(request), _link(request))

    return await guarded(work)


@router.get("/Procedure")
async def procedure(request: Request) -> Response:
    """診療・手術 by visit, optionally by ``date`` (when performed)."""

    async def work() -> dict[str, Any]:
        principal = await _principal(request)
        visit = _visit(request, frozenset({"date"}))
        values = request.query_params.getlist("date")
        if len(values) > MAX_DATE_PARAMS or any("," in v for v in values):
            raise ValidationFailedError(f"the search parameter date: at most {MAX_DATE_PARAMS}, one value each")
        dates = [mapping.date_criterion(v) for v in values]
        return await service.procedures(_state(request).transactions, principal, visit, dates, _link(request))

    return await guarded(work)


@router.get("/Consent/{consent_id}")
async def consent(consent_id: str, request: Request) -> Response:
    async def work() -> dict[str, Any]:
        principal = await _principal(request)
        return await _state(request).transactions.run(lambda session: service.consent(session, principal, consent_id))

    return await guarded(work)


@router.post("/AuditEvent/_search")
async def audit_event_search(request: Request) -> Response:
    """The patient's own access log; the card's proof as form parameters (FHIR search by POST).
    A facility token, when the kiosk sends one, binds the challenge to that facility."""

    async def work() -> dict[str, Any]:
        state = _state(request)
        facility = None
        if request.headers.get("authorization"):
            facility = (await _principal(request)).require_facility()
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise ValidationFailedError("search by POST takes application/x-www-form-urlencoded parameters")
        form = await request.form()
        fields = {k: form.getlist(k) for k in form}
        if any(len(v) != 1 or not isinstance(v[0], str) for v in fields.values()):
            raise ValidationFailedError("each search parameter once, as text")
        values = {k: v[0] for k, v in fields.items()}
        return await service.audit_events(me_views.ports(state), facility, values, _link(request))

    return await guarded(work)


@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], include_in_schema=False
)
async def unsupported(rest: str, request: Request) -> Response:
    """Anything else under the base: an OperationOutcome, 405 for a known path, else 404."""
    path = rest.strip("/")
    known = _KNOWN.get(path) or ("GET" if path.startswith("Consent/") and path.count("/") == 1 else None)
    if path == "" or known is not None:
        outcome = mapping.operation_outcome("method_not_allowed", 405, "this interaction is not supported here")
        return fhir_response(outcome, 405)
    outcome = mapping.operation_outcome("not_found", 404, "no such resource type or interaction (see metadata)")
    return fhir_response(outcome, 404)
