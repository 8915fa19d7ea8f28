"""The FHIR facade's interactions, each through the very service function its JSON route calls.

Nothing here decides eligibility, consent or who may read what: the by-number lookup
(``eligibility.service.lookup``: rate limits, answer, access-log entry, metric), the drug, checkup and 診療・手術 reads
(``clinical.service``), the consent rules (``consent.service``) and the patient's access log
(``me.service.access_log_entries``) answer; this module only translates (``mapping``), and
applies the FHIR search parameters the JSON routes do not have (``date`` on Procedure). Each
function takes the ports it works with; the views take them from the app's parts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.orm import Session

from schemas.card import AccessLogRequest
from schemas.eligibility import ByNumberQuery
from shikaku_server.auth.service import Principal
from shikaku_server.clinical import service as clinical
from shikaku_server.consent.models import Consent
from shikaku_server.consent.service import live_consent
from shikaku_server.database import Transactions
from shikaku_server.eligibility.service import LookupPorts, lookup
from shikaku_server.errors import DomainError, NotFoundError, ValidationFailedError
from shikaku_server.fhir import answers, mapping
from shikaku_server.fhir.mapping import InvalidResourceError, Validated
from shikaku_server.me import service as me

MAX_BATCH_ENTRIES = 1000


def by_number_query(data: Any, raw: bytes | None = None) -> tuple[ByNumberQuery, dict[str, Any] | None]:
    """The contract's by-number query a CoverageEligibilityRequest asks (or the reason it is refused)."""
    parsed = mapping.read_request(data, raw)
    try:
        query = ByNumberQuery.model_validate(parsed["query"])
    except ValidationError as exc:
        code, outcome = mapping.query_outcome(exc.errors(include_input=False))
        raise InvalidResourceError("the query is not valid", outcome, my_number=code == "my_number_detected") from None
    return query, parsed["identifier"]


async def _ask(
    ports: LookupPorts, principal: Principal, data: Any, raw: bytes | None
) -> tuple[bytes, ByNumberQuery, dict[str, Any] | None]:
    query, identifier = by_number_query(data, raw)
    answer = await lookup(ports, principal, query)  # the JSON route's own lookup, access log and metric
    return answer, query, identifier


async def eligibility_body(ports: LookupPorts, principal: Principal, data: Any, raw: bytes | None) -> Validated:
    """``POST CoverageEligibilityRequest``: the response, validated once per distinct answer (``answers``)."""
    answer, query, identifier = await _ask(ports, principal, data, raw)
    return answers.eligibility_body(answer, query.insurer_number, identifier)


async def eligibility(ports: LookupPorts, principal: Principal, data: Any) -> dict[str, Any]:
    """A batch entry's response (validated with the whole batch-response Bundle)."""
    answer, query, identifier = await _ask(ports, principal, data, None)
    return mapping.eligibility_response(orjson.loads(answer), {"insurer_number": query.insurer_number}, identifier)


def _entry_error(status: int, outcome: dict[str, Any]) -> dict[str, Any]:
    return {"response": {"status": str(status), "outcome": outcome}}


async def batch(ports: LookupPorts, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """一括照会 as a FHIR batch: each entry a ``POST CoverageEligibilityRequest``, answered in order;
    an entry that fails answers its own OperationOutcome and the others are answered all the same."""
    principal.require_facility()
    if data.get("type") != "batch":
        raise ValidationFailedError("Bundle.type must be batch")
    entries = data.get("entry") or []
    if not isinstance(entries, list) or len(entries) > MAX_BATCH_ENTRIES:
        raise ValidationFailedError(f"Bundle.entry: a list of at most {MAX_BATCH_ENTRIES} entries")
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        method = request.get("method") if isinstance(request, dict) else None
        url = request.get("url") if isinstance(request, dict) else None
        if method != "POST" or not isinstance(url, str) or url.strip("/") != "CoverageEligibilityRequest":
            out.append(
                _entry_error(
                    405,
                    mapping.operation_outcome(
                        "method_not_allowed",
                        405,
                        f"Bundle.entry[{index}].request: only POST CoverageEligibilityRequest is supported in a batch",
                    ),
                )
            )
            continue
        try:
            resource = await eligibility(ports, principal, entry.get("resource"))
        except InvalidResourceError as exc:
            out.append(_entry_error(exc.status, exc.outcome or mapping.outcome_of(exc)))
            continue
        except DomainError as exc:
            out.append(_entry_error(exc.status, mapping.outcome_of(exc)))
            continue
        out.append({"resource": resource, "response": {"status": "200 OK"}})
    return mapping.bundle("batch-response", out)


def _searchset(resources: list[dict[str, Any]], link: str) -> dict[str, Any]:
    return mapping.bundle("searchset", [mapping.search_entry(r) for r in resources], total=len(resources), link=link)


async def medication_dispenses(
    transactions: Transactions, principal: Principal, visit_id: str, link: str
) -> dict[str, Any]:
    def read(session: Session) -> dict[str, Any]:
        found = clinical.medications(session, principal, visit_id)
        items = [mapping.medication_dispense(i.model_dump(mode="json")) for i in found.items]
        return _searchset(items, link)

    return await transactions.run(read)  # committed (access log included) before the answer


async def observations(transactions: Transactions, principal: Principal, visit_id: str, link: str) -> dict[str, Any]:
    def read(session: Session) -> dict[str, Any]:
        found = clinical.checkups(session, principal, visit_id)
        items = [o for i in found.items for o in mapping.checkup_observations(i.model_dump(mode="json"))]
        return _searchset(items, link)

    return await transactions.run(read)


async def procedures(
    transactions: Transactions,
    principal: Principal,
    visit_id: str,
    dates: list[mapping.DateCriterion],
    link: str,
) -> dict[str, Any]:
    """診療・手術 under the visit's clinical consent (``clinical.service.procedures``: role, consent,
    the 5 years and the access-log entry, committed before the answer), then the ``date`` search:
    the read is logged whatever the dates leave."""

    def read(session: Session) -> dict[str, Any]:
        found = clinical.procedures(session, principal, visit_id)
        items = [i for i in found.items if all(d.matches(i.performed_on) for d in dates)]
        return _searchset([mapping.procedure(i.model_dump(mode="json")) for i in items], link)

    return await transactions.run(read)


def consent(session: Session, principal: Principal, consent_id: str) -> dict[str, Any]:
    """A consent this facility recorded; ``active`` exactly when it is the one in force now."""
    facility = principal.require_facility()
    row = (
        session.get(Consent, int(consent_id))
        if consent_id.isascii() and consent_id.isdigit() and len(consent_id) < 18
        else None
    )
    if row is None or row.facility_code != facility:
        raise NotFoundError("no such consent at this facility")
    live = live_consent(session, insured_id=row.insured_id, facility_code=facility)
    values = {
        name: getattr(row, name)
        for name in (
            "id",
            "facility_code",
            "visit_id",
            "drug",
            "checkup",
            "clinical",
            "limit_certificate",
            "setting",
            "given_at",
            "expires_at",
            "revoked_at",
        )
    }
    for name in ("given_at", "expires_at", "revoked_at"):
        if values[name] is not None and values[name].tzinfo is None:  # SQLite gives naive UTC
            values[name] = values[name].replace(tzinfo=dt.UTC)
    return mapping.consent_resource(values, active=live is not None and live.id == row.id)


async def audit_events(ports: me.Ports, facility: str | None, form: dict[str, Any], link: str) -> dict[str, Any]:
    """The patient's access log (``/v1/me/access-log``'s service, the same entry recorded)."""
    try:
        proof = AccessLogRequest.model_validate(form)
    except ValidationError as exc:
        _, outcome = mapping.validation_outcome(exc.errors(include_input=False), "AuditEvent/_search")
        raise InvalidResourceError("the card's proof is not valid", outcome) from None

    entries = await me.access_log_entries(ports, proof, facility)
    return _searchset([mapping.audit_event(e) for e in entries], link)
