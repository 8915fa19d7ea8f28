"""Eligibility as of a date, from the full history (contract: "Eligibility result").

The hot path: all rows of one (insurer number, symbol, number) — every branch with its current
periods — form a *bundle*, cached as JSON under the insurer's cache version; the answer for a
given date, branch and birth date is computed from the bundle in memory. Uploads bump the
insurer's version after they commit, so a lookup never sees pre-upload data afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from schemas.codes import Validity
from schemas.eligibility import (
    ByNumberQuery,
    EligibilityResult,
)
from schemas.identifiers import normalize_key_text
from shikaku_server.access_log.service import AccessLogWriter
from shikaku_server.auth.models import Insurer
from shikaku_server.auth.service import Principal
from shikaku_server.cache import Cache, CacheError
from shikaku_server.eligibility.models import EligibilityPeriod
from shikaku_server.eligibility.models import Insured as InsuredRow
from shikaku_server.eligibility.rules import covers, insured_with_four_facts
from shikaku_server.metrics import Metrics
from shikaku_server.public_expense import service as public_expense
from shikaku_server.ratelimit import RateLimiter

log = logging.getLogger(__name__)
JST = ZoneInfo("Asia/Tokyo")

PERIOD_FIELDS = (
    "valid_from",
    "valid_to",
    "reason_of_loss",
    "name",
    "name_kana",
    "name_norm",
    "sex",
    "birth_date",
    "address",
    "address_norm",
    "post_number",
    "personal_family",
    "card_classification",
    "copay_ratio",
    "elderly_ratio",
    "elderly_valid_from",
    "elderly_valid_to",
    "limit_kind",
    "limit_class",
    "limit_valid_from",
    "limit_valid_to",
    "diseases",
)


def today_jst() -> dt.date:
    return dt.datetime.now(JST).date()


def cache_namespace(insurer_number: str) -> str:
    return f"elig:{insurer_number}"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


_BUNDLE_COLUMNS = (
    InsuredRow.id,
    InsuredRow.insurer_number,
    InsuredRow.symbol,
    InsuredRow.number,
    InsuredRow.branch,
    *(getattr(EligibilityPeriod, f) for f in PERIOD_FIELDS),
)
_BUNDLE_QUERY = (
    select(*_BUNDLE_COLUMNS)
    .join(EligibilityPeriod, EligibilityPeriod.insured_id == InsuredRow.id)
    .where(
        InsuredRow.insurer_number == bindparam("insurer_number"),
        InsuredRow.symbol_norm == bindparam("symbol_norm"),
        InsuredRow.number_norm == bindparam("number_norm"),
        EligibilityPeriod.superseded_by.is_(None),
    )
    .order_by(InsuredRow.branch, EligibilityPeriod.valid_from)
)


def bundle_from_rows(rows: Iterable[Sequence[Any]], insurer_name: str | None) -> dict[str, Any]:
    """The bundle from rows of ``_BUNDLE_COLUMNS`` (ordered by branch, then valid_from)."""
    insureds: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = insureds.get(row[0])
        if entry is None:
            entry = insureds[row[0]] = {
                "id": row[0],
                "insurer_number": row[1],
                "symbol": row[2],
                "number": row[3],
                "branch": row[4],
                "periods": [],
            }
        entry["periods"].append(dict(zip(PERIOD_FIELDS, map(_iso, row[5:]), strict=True)))
    return {"insurer_name": insurer_name, "insureds": list(insureds.values())}


def load_bundle(session: Session, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
    """Every branch of one card number with its current periods (dates as ISO strings).

    One Core statement over plain columns (no ORM entities: the miss path's cost)."""
    params = {"insurer_number": insurer_number, "symbol_norm": symbol_norm, "number_norm": number_norm}
    rows = session.connection().execute(_BUNDLE_QUERY, params)
    bundle = bundle_from_rows(rows, insurer_name(session, insurer_number))
    return public_expense.attach(bundle, session.connection().execute(public_expense.QUERY, params))


_INSURER_NAMES: dict[str, tuple[float, str | None]] = {}
_INSURER_NAME_QUERY = select(Insurer.name).where(Insurer.number == bindparam("number"))


def _known_insurer_name(number: str) -> tuple[bool, str | None]:
    hit = _INSURER_NAMES.get(number)
    if hit is not None and hit[0] > time.monotonic():
        return True, hit[1]
    return False, None


def insurer_name(session: Session, number: str) -> str | None:
    """Insurer names change rarely: kept a minute per process."""
    known, name = _known_insurer_name(number)
    if known:
        return name
    name = session.execute(_INSURER_NAME_QUERY, {"number": number}).scalar_one_or_none()
    _INSURER_NAMES[number] = (time.monotonic() + 60, name)
    return name


def _cache_key(symbol_norm: str, number_norm: str) -> str:
    return f"{symbol_norm}\x1f{number_norm}"


@dataclass(slots=True)
class Evaluation:
    validity: Validity
    insured_id: int | None
    insured: dict[str, Any] | None
    period: dict[str, Any] | None


def _relevant_period(periods: list[dict[str, Any]], day: str) -> tuple[Validity, dict[str, Any] | None]:
    """The period that answers for ``day``: the one covering it (valid), else the latest one
    that started before it (invalid), else none."""
    covering = None
    started = None
    for p in periods:  # ordered by valid_from
        if p["valid_from"] > day:
            break
        started = p
        if covers(p["valid_from"], p["valid_to"], day):
            covering = p
    if covering is not None:
        return Validity.VALID, covering
    if started is not None:
        return Validity.INVALID, started
    return Validity.NONE, None


def evaluate(bundle: dict[str, Any], *, branch: str | None, birth_date: dt.date, as_of: dt.date) -> Evaluation:
    day = as_of.isoformat()
    birth = birth_date.isoformat()
    matches: list[Evaluation] = []
    for insured in bundle["insureds"]:
        if branch is not None and insured["branch"] != branch:
            continue
        validity, period = _relevant_period(insured["periods"], day)
        if period is None or period["birth_date"] != birth:
            continue
        matches.append(Evaluation(validity, insured["id"], insured, period))
    if not matches:
        return Evaluation(Validity.NONE, None, None, None)
    if len(matches) > 1:
        return Evaluation(Validity.MULTIPLE, None, None, None)
    return matches[0]


def birth_date_mismatches(bundle: dict[str, Any], *, branch: str | None, birth_date: dt.date) -> list[int]:
    """For a lookup that matched nobody: the insured persons of the number (of that branch, when
    given) none of whose records carries this birth date. A wrong birth date was tried against
    each of them: they see it in their access log (``eligibility_no_match``)."""
    birth = birth_date.isoformat()
    return [
        insured["id"]
        for insured in bundle["insureds"]
        if (branch is None or insured["branch"] == branch) and all(p["birth_date"] != birth for p in insured["periods"])
    ]


def evaluate_insured(bundle: dict[str, Any], insured_id: int, as_of: dt.date) -> Evaluation:
    """The card path: the linked person, no birth-date check (the card authenticated them)."""
    for insured in bundle["insureds"]:
        if insured["id"] == insured_id:
            validity, period = _relevant_period(insured["periods"], as_of.isoformat())
            if period is not None:
                return Evaluation(validity, insured_id, insured, period)
    return Evaluation(Validity.NONE, None, None, None)


def newer_eligibility_exists(session: Session, evaluation: Evaluation, as_of: dt.date) -> bool:
    """For an invalid (lost) record: does exactly one *other* insured record, valid on ``as_of``,
    carry the same four facts (normalised name, birth date, sex, address)? Then the person has
    moved to newer eligibility (validity 3). Nothing of that record is disclosed."""
    p = evaluation.period
    if p is None or not p.get("address_norm"):
        return False
    birth = dt.date.fromisoformat(p["birth_date"])
    facts = insured_with_four_facts(name=p["name"], birth_date=birth, sex=p["sex"], address=p["address"], as_of=as_of)
    others = session.execute(facts.where(EligibilityPeriod.insured_id != evaluation.insured_id)).all()
    return len(others) == 1


def build_result(
    evaluation: Evaluation,
    *,
    insurer_name: str | None,
    as_of: dt.date,
    query_kind: str,
    share_limit_certificate: bool,
    visit_id: str | None = None,
    certificate_notice: str | None = None,
) -> EligibilityResult:
    """The contract's result as the model (for callers that need it); ``result_dict`` is the one
    place that maps an evaluation to the answer."""
    return EligibilityResult.model_validate(
        result_dict(
            evaluation,
            insurer_name=insurer_name,
            as_of=as_of,
            query_kind=query_kind,
            share_limit_certificate=share_limit_certificate,
            visit_id=visit_id,
            certificate_notice=certificate_notice,
        )
    )


_PROCESSING_OK: dict[str, Any] = {"status": "ok", "code": None, "message": None}


def result_dict(
    evaluation: Evaluation,
    *,
    insurer_name: str | None,
    as_of: dt.date,
    query_kind: str,
    share_limit_certificate: bool,
    visit_id: str | None = None,
    certificate_notice: str | None = None,
) -> dict[str, Any]:
    """The contract's eligibility result as JSON values, without building the models: the bundle
    is already made of checked JSON values (ISO dates, integer ratios), so the hot path renders it
    with ``orjson`` directly. Keys in the model's order; a test checks that the
    ``EligibilityResult`` model reads it and dumps it back unchanged."""
    insured, p = evaluation.insured, evaluation.period
    out: dict[str, Any] = {
        "processing": _PROCESSING_OK,
        "validity": int(evaluation.validity),
        "query_kind": query_kind,
        "as_of": as_of.isoformat(),
        "visit_id": visit_id,
        "insured": None,
        "elderly": None,
        "limit_certificate": None,
        "specific_diseases": [],
        "certificate_notice": certificate_notice,
        "public_expenses": [],
    }
    if insured is None or p is None:
        return out
    day = as_of.isoformat()
    out["insured"] = {
        "insurer_number": insured["insurer_number"],
        "insurer_name": insurer_name,
        "symbol": insured["symbol"],
        "number": insured["number"],
        "branch": insured["branch"],
        "card_classification": p["card_classification"],
        "personal_family": p["personal_family"],
        "name": p["name"],
        "name_kana": p["name_kana"],
        "sex": p["sex"],
        "birth_date": p["birth_date"],
        "address": p["address"],
        "post_number": p["post_number"],
        "valid_from": p["valid_from"],
        "valid_to": p["valid_to"],
        "reason_of_loss": p["reason_of_loss"],
        "copay_ratio": p["copay_ratio"],
    }
    if p["elderly_ratio"] is not None and covers(p["elderly_valid_from"], p["elderly_valid_to"], day):
        out["elderly"] = {
            "certificate_date": p["elderly_valid_from"],
            "valid_from": p["elderly_valid_from"],
            "valid_to": p["elderly_valid_to"],
            "copay_ratio": p["elderly_ratio"],
        }
    if share_limit_certificate:
        if p["limit_kind"] is not None and covers(p["limit_valid_from"], p["limit_valid_to"], day):
            out["limit_certificate"] = {
                "kind": p["limit_kind"],
                "classification": p["limit_class"],
                "valid_from": p["limit_valid_from"],
                "valid_to": p["limit_valid_to"],
            }
        out["specific_diseases"] = [
            {
                "category": d["category"],
                "valid_from": d["valid_from"],
                "valid_to": d["valid_to"],
                "self_pay": d["self_pay"],
            }
            for d in p["diseases"] or ()
            if covers(d["valid_from"], d["valid_to"], day)
        ]
        out["public_expenses"] = public_expense.public_expenses(insured, day)  # the same consent as 限度額
    return out


def _mismatched(bundle: dict[str, Any], query: ByNumberQuery, validity: int) -> list[int]:
    """For a query that matched nobody: the persons of its number whose birth date it missed."""
    if validity != Validity.NONE:
        return []
    return birth_date_mismatches(bundle, branch=query.branch, birth_date=query.birth_date)


class BundleReader(Protocol):
    """Where bundles come from on a cache miss, and the rare "newer eligibility" check: built
    once per process (``reader.make_bundle_reader``: PostgreSQL on the event loop, or any
    SQLAlchemy database in a worker thread)."""

    async def bundle(self, insurer_number: str, symbol_norm: str, number_norm: str) -> dict[str, Any]:
        """``load_bundle``."""
        ...

    async def newer_eligibility_exists(self, evaluation: Evaluation, as_of: dt.date) -> bool:
        """``newer_eligibility_exists``."""
        ...


async def cached_bundle(
    *, cache: Cache, bundles: BundleReader, ttl: int, insurer_number: str, symbol_norm: str, number_norm: str
) -> dict[str, Any]:
    """The bundle of one card number: from the cache (one round trip), else from ``bundles``,
    then stored under the version read *before* loading (race-free). The cache fails open."""
    namespace, key = cache_namespace(insurer_number), _cache_key(symbol_norm, number_norm)
    try:
        version: int | None
        version, raw = await cache.get_versioned(namespace, key)
    except CacheError:
        log.warning("cache read failed; answering from the database", exc_info=True)
        version, raw = None, None
    if raw is not None:
        cached: dict[str, Any] = orjson.loads(raw)
        return cached
    bundle = await bundles.bundle(insurer_number, symbol_norm, number_norm)
    if version is not None:
        try:
            await cache.set_versioned(namespace, version, key, orjson.dumps(bundle), ttl)
        except CacheError:
            log.warning("cache write failed", exc_info=True)
    return bundle


async def settle_validity(bundles: BundleReader, evaluation: Evaluation, as_of: dt.date) -> Evaluation:
    """An invalid (lost) record whose person has moved to newer eligibility becomes validity 3."""
    if evaluation.validity == Validity.INVALID and await bundles.newer_eligibility_exists(evaluation, as_of):
        evaluation.validity = Validity.INVALID_NEWER_EXISTS
    return evaluation


@dataclass(frozen=True, slots=True)
class NumberAnswer:
    result: dict[str, Any]  # the JSON values of ``EligibilityResult`` (``result_dict``)
    validity: int
    insured_id: int | None  # the person disclosed, if any
    mismatched: list[int]  # validity 4 only: the persons of the number whose birth date was not it

    @property
    def body(self) -> bytes:
        return orjson.dumps(self.result)


async def answer_by_number(query: ByNumberQuery, *, cache: Cache, bundles: BundleReader, ttl: int) -> NumberAnswer:
    """The by-number answer, whom it disclosed, and whom a wrong birth date was tried on: the
    one path of the route, its fast path (``fastpath``) and batches (``batch.service``).

    A cache hit costs one cache round trip on the event loop; a miss reads through ``bundles``
    (on the event loop on PostgreSQL)."""
    as_of = query.as_of or today_jst()
    bundle = await cached_bundle(
        cache=cache,
        bundles=bundles,
        ttl=ttl,
        insurer_number=query.insurer_number,
        symbol_norm=normalize_key_text(query.symbol),
        number_norm=normalize_key_text(query.number),
    )
    evaluation = evaluate(bundle, branch=query.branch, birth_date=query.birth_date, as_of=as_of)
    await settle_validity(bundles, evaluation, as_of)
    result = result_dict(
        evaluation,
        insurer_name=bundle["insurer_name"],
        as_of=as_of,
        query_kind="number",
        share_limit_certificate=query.include_limit_certificate,
    )
    mismatched = _mismatched(bundle, query, evaluation.validity)
    return NumberAnswer(result, int(evaluation.validity), evaluation.insured_id, mismatched)


@dataclass(frozen=True, slots=True)
class LookupPorts:
    """What a by-number lookup works with (the views take them from the app's state)."""

    limiter: RateLimiter
    cache: Cache
    bundles: BundleReader
    ttl: int  # the bundle cache's, seconds
    access_log: AccessLogWriter
    metrics: Metrics


async def lookup(ports: LookupPorts, principal: Principal, query: ByNumberQuery) -> bytes:
    """One by-number lookup: the answer's JSON, its access-log entries and its metrics.

    The one path of the route, its fast path (``eligibility.views.FAST``, ``shikaku_server.fastpath``)
    and FHIR's ``CoverageEligibilityRequest`` (``fhir.service``).
    Rate-limited per token and per facility (``ratelimit``: the counters are sent before the
    cache read and read after it, one Redis round trip for all), in volume and in failures: a
    token or facility that has used up its failed lookups (validity 4) of the hour is refused
    every lookup until the hour ends, so a birth date cannot be guessed. A refused lookup
    discloses nothing and logs nothing. A lookup that matches nobody is logged for each person of that
    insurance number whose birth date it did not carry (``eligibility_no_match``), so that a
    guessed birth date shows in the victim's access log, and counted in /metrics."""
    facility = principal.require_facility()
    limiter = ports.limiter
    hit, failures = await limiter.begin_lookup(principal)
    try:
        answer = await answer_by_number(query, cache=ports.cache, bundles=ports.bundles, ttl=ports.ttl)
    except BaseException:
        hit.discard()
        failures.discard()
        raise
    await hit.check()
    await failures.check()
    if answer.validity == Validity.NONE:
        await limiter.count_failure(principal)
    entry = {"facility_code": facility, "role": principal.role or "", "query_kind": "number"}
    if answer.insured_id is not None:
        ports.access_log.submit({**entry, "insured_id": answer.insured_id, "what": "eligibility"})
    for insured_id in answer.mismatched:
        ports.access_log.submit({**entry, "insured_id": insured_id, "what": "eligibility_no_match"})
    if answer.mismatched:
        ports.metrics.event("eligibility_birth_date_mismatch")
    ports.metrics.event(f"eligibility_validity_{answer.validity}")
    return answer.body
