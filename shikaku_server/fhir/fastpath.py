"""``POST /fhir/R4/CoverageEligibilityRequest`` without FastAPI's routing and exception layers.

FHIR eligibility is the facade's hot path. Its route takes nothing from FastAPI — no dependency,
no body model (it reads its own body and answers every error itself, as an OperationOutcome:
``views.guarded``) — yet FastAPI's route matching over every route and its per-request middleware
cost as much CPU as the rest of the answer. This pure ASGI layer, placed just inside
``RequestMiddleware`` (request id, body limit, metrics and the log line still apply), calls the
route's own function, ``views.coverage_eligibility``, with a ``Request`` over the same scope: the
same token check, body reading, answer, access-log entry and errors, for every request to this
exact path and method. Any other path or method goes on to FastAPI unchanged.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shikaku_server.fhir import views

PATH = views.BASE + "/CoverageEligibilityRequest"


class EligibilityFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # what the router would have put in the scope: RequestMiddleware labels metrics with it
        self.route = next(r for r in views.router.routes if getattr(r, "path", None) == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        response = await views.coverage_eligibility(Request(scope, receive))
        await response(scope, receive, send)
