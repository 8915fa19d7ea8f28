"""The OpenAPI document and its docs page: what FastAPI does not derive from the routes.

* the bearer security scheme (every ``/v1`` operation needs a token; ``/metrics`` when
  ``SHIKAKU_METRICS_TOKEN`` is set),
* the error answers every operation can give (400, 401, 403, 404, 413, 415, 422, 429, 503), as
  ``application/problem+json`` with one ``Problem`` schema (the contract's stable ``code``),
* the upload body (``text/csv``, ``application/x-ndjson``), which the route streams itself,
* the identifier formats (patterns), which the models check in validators a schema cannot show,
* the FHIR facade (``/fhir/R4``), whose routes read their bodies themselves: its bodies, search
  parameters and answers (``application/fhir+json``, errors as an OperationOutcome).

``/docs`` is Swagger UI from the ``swagger-ui-bundle`` package, served by this server under
``/docs/static``: the page works without internet access (no CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle  # type: ignore[import-untyped]  # no stubs: only a path is used
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from shikaku_server.errors import NotFoundError

STATIC = "/docs/static"
OPENAPI_URL = "/openapi.json"
PROBLEM = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is the contract's stable error code.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "example": "urn:shikaku:problem:unauthorized"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "never quotes an input value"},
        "code": {"type": "string", "example": "unauthorized"},
        "errors": {
            "type": "array",
            "description": "validation errors: location, message, type (no input values)",
            "items": {"type": "object"},
        },
    },
}

_ERRORS = {
    "400": "malformed JSON, or an interrupted upload (`validation_error`)",
    "401": "missing, unknown or revoked token (`unauthorized`); card checks: `challenge_*`, `certificate_*`, "
    "`signature_invalid`, `attestation_invalid`",
    "403": "the token's kind or role may not do this (`forbidden_role`), or no consent (`consent_*`)",
    "404": "no such resource, or another facility's (`not_found`, `card_not_registered`)",
    "413": "the body is too large (`payload_too_large`)",
    "422": "the request is not valid (`validation_error`, `my_number_detected`)",
    "429": "too many requests (`rate_limited`); see Retry-After",
    "503": "a backing service (database, cache) is unavailable (`unavailable`); retry after Retry-After seconds",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}

# identifier formats, as the validators in schemas/identifiers.py check them (a check digit
# cannot be written as a pattern: it is described)
_FORMATS: dict[str, dict[str, Any]] = {
    "insurer_number": {
        "pattern": "^([0-9]{6}|[0-9]{8})$",
        "description": "保険者番号: 8 digits (6 for 国民健康保険); the last is the Luhn check digit",
        "examples": ["01130012", "138057"],
    },
    "facility_code": {
        "pattern": "^[0-9]{2}[134][0-9]{7}$",
        "description": "医療機関コード: 10 digits, the 3rd is 1 医科 / 3 歯科 / 4 調剤, the last a Luhn check digit",
        "examples": ["0110113719"],
    },
    "branch": {
        "pattern": "^[0-9０-９]{2}$",
        "description": "枝番: 2 digits (full-width digits are accepted)",
        "examples": ["00"],
    },
    "symbol": {"description": "記号 as printed (full-width accepted, normalised); never a 12-digit number"},
    "number": {"description": "番号 as printed (full-width accepted, normalised); never a 12-digit number"},
}


def _problem_responses(codes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        out[code] = {
            "description": _ERRORS[code],
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if code in ("429", "503"):
            out[code]["headers"] = _RETRY_AFTER
    return out


def _apply_formats(schema: dict[str, Any]) -> None:
    for name, prop in schema.get("properties", {}).items():
        extra = _FORMATS.get(name)
        if extra is None:
            continue
        for variant in prop.get("anyOf", [prop]):  # an optional field: its string variant
            if variant.get("type") == "string":
                variant.update({k: v for k, v in extra.items() if k != "examples"})
        prop.setdefault("examples", extra.get("examples", []))
        if not prop["examples"]:
            del prop["examples"]


FHIR_JSON = "application/fhir+json"
FHIR_RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "FhirResource",
    "description": "a FHIR R4 resource (docs/fhir.md); errors are an OperationOutcome whose "
    "`issue[0].details.coding` (system `urn:shikaku:error`) carries the contract's code",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "example": "CoverageEligibilityResponse"}},
}
_FHIR_ERRORS = {
    "400": "malformed JSON or a resource that is not valid FHIR",
    "401": "missing, unknown or revoked token; card checks: the proof is not valid",
    "403": "the token's kind or role may not do this, or no consent",
    "404": "no such resource, or another facility's",
    "405": "the interaction is not supported on this path",
    "422": "a search parameter or a field is not valid (incl. `my_number_detected`)",
    "429": "too many requests; see Retry-After",
    "503": "a backing service is unavailable; see Retry-After",
}
_FHIR_BODY = {
    "required": True,
    "content": {FHIR_JSON: {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}},
}
_FHIR_VISIT = [
    {
        "name": "visit",
        "in": "query",
        "required": True,
        "description": "the visit_id of an eligibility answer",
        "schema": {"type": "string", "maxLength": 100},
    }
]
_FHIR_DATE = {
    "name": "date",
    "in": "query",
    "required": False,
    "description": "when performed: [eq|ne|gt|lt|ge|le]YYYY, YYYY-MM or YYYY-MM-DD (FHIR date search); at most twice",
    "schema": {"type": "string", "maxLength": 12},
}
_FHIR_PROOF = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["challenge_id", "certificate", "signature"],
                "properties": {
                    "challenge_id": {"type": "string"},
                    "certificate": {"type": "string", "description": "base64 DER"},
                    "signature": {"type": "string", "description": "base64"},
                },
            }
        }
    },
}


def _fhir_operation(path: str, method: str, op: dict[str, Any]) -> None:
    """What the FHIR routes read themselves (their bodies, the visit parameter) and what they answer."""
    resource = {"$ref": "#/components/schemas/FhirResource"}
    op["responses"] = {
        "200": {"description": "the resource (a Bundle for a search)", "content": {FHIR_JSON: {"schema": resource}}}
    }
    if path.endswith("/metadata"):
        return  # no token: clients read it to learn how to authenticate
    for status, description in _FHIR_ERRORS.items():
        op["responses"][status] = {"description": description, "content": {FHIR_JSON: {"schema": resource}}}
        if status in ("429", "503"):
            op["responses"][status]["headers"] = _RETRY_AFTER
    if path.endswith("/AuditEvent/_search"):
        op["security"] = [{}, {"bearerAuth": []}]  # the card's proof; a kiosk's facility token binds the challenge
        op["requestBody"] = _FHIR_PROOF
        return
    op["security"] = [{"bearerAuth": []}]
    if method == "post":
        op["requestBody"] = _FHIR_BODY
        op["responses"]["413"] = _problem_responses(["413"])["413"]
    elif path.endswith(("/MedicationDispense", "/Observation")):
        op["parameters"] = _FHIR_VISIT
    elif path.endswith("/Procedure"):
        op["parameters"] = [*_FHIR_VISIT, _FHIR_DATE]


def build(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["FhirResource"] = FHIR_RESOURCE_SCHEMA
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 body: ours is a Problem
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "a facility or insurer token from `shikaku-admin facility add` / `insurer add`",
        }
    }
    for schema in schemas.values():
        _apply_formats(schema)
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                extra = _FORMATS.get(param["name"])
                if extra:
                    param["schema"].update({k: v for k, v in extra.items() if k != "examples"})
            responses = op.setdefault("responses", {})
            if path.startswith("/fhir/"):
                _fhir_operation(path, method, op)
            elif path.startswith("/v1/"):
                op["security"] = [{"bearerAuth": []}]
                codes = ["401", "403", "404", "422", "429", "503"]
                if "requestBody" in op or path == "/v1/uploads":
                    codes += ["400", "413"]
                responses.update(_problem_responses(codes))
            elif path == "/metrics":
                op["security"] = [{}, {"bearerAuth": []}]  # open unless SHIKAKU_METRICS_TOKEN is set
                responses.update(_problem_responses(["401"]))
            elif path == "/readyz":
                responses["503"] = {"description": "the database or the cache is unavailable"}
            if path == "/v1/uploads" and method == "post":
                op["requestBody"] = _UPLOAD_BODY
                responses.update(_problem_responses(["400", "413"]))
                responses["415"] = {
                    "description": "another content type (`validation_error`)",
                    "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
    return spec


_UPLOAD_BODY = {
    "required": True,
    "description": "One insurer file (docs/uploads.md): CSV with a header line (UTF-8, or Shift_JIS/CP932), or "
    "NDJSON (one JSON object per line, UTF-8). Optional header `X-Content-SHA256` (hex) is checked.",
    "content": {
        "text/csv": {"schema": {"type": "string", "format": "binary"}},
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
    },
}


def install(app: FastAPI) -> None:
    """The OpenAPI builder, ``/openapi.json`` and ``/docs`` with local Swagger UI assets (create
    the app with ``openapi_url=None, docs_url=None, redoc_url=None``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise
    # the document and the assets as routes of the app (not a Starlette route or mount), so that
    # the request log and /metrics name them by their template, as every other route
    assets = {p.name: p for p in Path(swagger_ui_bundle.swagger_ui_path).iterdir() if p.is_file()}

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(STATIC + "/{asset}", include_in_schema=False)
    async def swagger_asset(asset: str) -> FileResponse:
        path = assets.get(asset)
        if path is None:
            raise NotFoundError("no such Swagger UI asset")
        return FileResponse(path)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} — API",
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon-32x32.png",
        )
