from __future__ import annotations

from fastapi import APIRouter, Response

from schemas.codes import Validity
from schemas.eligibility import ByNumberQuery, EligibilityResult
from shikaku_server.auth.service import Principal
from shikaku_server.deps import PrincipalDep, StateDep
from shikaku_server.eligibility import service
from shikaku_server.fastpath import FastRoute, json_model
from shikaku_server.state import AppState

router = APIRouter(prefix="/v1/eligibility", tags=["eligibility"])


async def lookup(state: AppState, principal: Principal, query: ByNumberQuery) -> bytes:
    """One by-number lookup: the answer's JSON, its access-log entries and its metrics.

    Shared by the route below and by its fast path (``FAST``, ``shikaku_server.fastpath``).
    Rate-limited per token and per facility (``ratelimit``: the counters are sent before the
    cache read and read after it, one Redis round trip for all), in volume and in failures: a
    token or facility that has used up its failed lookups (validity 4) of the hour is refused
    every lookup until the hour ends, so a birth date cannot be guessed. A refused lookup
    discloses nothing and logs nothing. A lookup that matches nobody is logged for each person of that
    insurance number whose birth date it did not carry (``eligibility_no_match``), so that a
    guessed birth date shows in the victim's access log, and counted in /metrics."""
    facility = principal.require_facility()
    hit = await state.limiter.begin("lookup", principal)
    failures = await state.limiter.begin_failures(principal)
    try:
        answer = await service.answer_by_number(
            query, cache=state.cache, bundles=state.bundles, ttl=state.settings.eligibility_cache_ttl_seconds
        )
    except BaseException:
        hit.discard()
        failures.discard()
        raise
    await hit.check()
    await failures.check()
    if answer.validity == Validity.NONE:
        await state.limiter.count_failure(principal)
    entry = {"facility_code": facility, "role": principal.role or "", "query_kind": "number"}
    if answer.insured_id is not None:
        state.access_log.submit({**entry, "insured_id": answer.insured_id, "what": "eligibility"})
    for insured_id in answer.mismatched:
        state.access_log.submit({**entry, "insured_id": insured_id, "what": "eligibility_no_match"})
    if answer.mismatched:
        state.metrics.event("eligibility_birth_date_mismatch")
    state.metrics.event(f"eligibility_validity_{answer.validity}")
    return answer.body


@router.post("/by-number", response_model=EligibilityResult)
async def by_number(query: ByNumberQuery, principal: PrincipalDep, state: StateDep) -> Response:
    # the body is rendered from checked data (response_model stays for the OpenAPI schema)
    return Response(await lookup(state, principal, query), media_type="application/json")


# the ordinary lookup without FastAPI's routing and body handling (``shikaku_server.fastpath``)
FAST = FastRoute("/v1/eligibility/by-number", router, json_model(ByNumberQuery), lookup)
