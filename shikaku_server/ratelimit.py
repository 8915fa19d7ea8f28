"""Rate limits: fixed-window counters per token and per facility, kept in the ``RateCounters`` store.

Every limited action has a window (a minute or an hour, aligned on the clock so that every server
process shares it) and two limits, one per token and one per facility (0 turns one off; the
numbers are ``Settings.rate_limit_*``, documented in docs/operations.md). A request adds its
weight (1, or a batch's number of queries) to both counters of the current window in one round
trip (a Lua ``INCRBY`` + ``EXPIRE`` on Redis, a dict in-process) and is refused with 429
``rate_limited`` and ``Retry-After`` (the seconds left in the window) when either counter is over
its limit. A refused request is given back (so one runaway token does not use up its facility's
window, and a refused batch does not use up the window for smaller ones).

On the by-number hot path the counters are sent before the lookup's own cache read and read
after it (``begin`` / ``Hit.check``): one round trip for both on the event-loop Redis client.

When the store fails (Redis down or too slow) the limiter counts in this process instead, with
the same limits (per process), and counts ``rate_limit_store_unavailable`` in /metrics: a Redis
outage neither stops lookups (never a 500, never a 503 from the limiter) nor lifts the limits.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from shikaku_server.auth.service import Principal
from shikaku_server.cache import CacheError, InMemoryCounters, PendingCounts, RateCounters
from shikaku_server.config import Settings
from shikaku_server.errors import RateLimitedError
from shikaku_server.metrics import Metrics

log = logging.getLogger(__name__)

# action → (window in seconds, what is counted)
WINDOWS: dict[str, tuple[int, str]] = {
    "lookup": (60, "by-number lookups"),
    "challenge": (60, "card challenges"),
    "batch_query": (3600, "batch queries"),
    "registration": (3600, "card registrations"),
    "lookup_failure": (3600, "by-number lookups that matched nobody"),
    "me_challenge": (60, "patient challenges"),  # per client address: no token (/v1/me/challenges)
    "emergency": (3600, "emergency reads"),
}
_WARN_EVERY = 10.0  # seconds between two "store unavailable" warnings


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    window: int
    per_token: int
    per_facility: int


def rules_from(settings: Settings) -> dict[str, Rule]:
    def rule(action: str, token: int, facility: int) -> Rule:
        return Rule(action, WINDOWS[action][0], max(token, 0), max(facility, 0))

    return {
        "lookup": rule("lookup", settings.rate_limit_lookups_per_token, settings.rate_limit_lookups_per_facility),
        "challenge": rule(
            "challenge", settings.rate_limit_challenges_per_token, settings.rate_limit_challenges_per_facility
        ),
        "batch_query": rule(
            "batch_query",
            settings.rate_limit_batch_queries_per_token,
            settings.rate_limit_batch_queries_per_facility,
        ),
        "registration": rule(
            "registration",
            settings.rate_limit_registrations_per_token,
            settings.rate_limit_registrations_per_facility,
        ),
        "lookup_failure": rule(
            "lookup_failure",
            settings.rate_limit_lookup_failures_per_token,
            settings.rate_limit_lookup_failures_per_facility,
        ),
        "me_challenge": rule("me_challenge", settings.rate_limit_me_challenges_per_client, 0),
        "emergency": rule(
            "emergency", settings.rate_limit_emergency_reads_per_token, settings.rate_limit_emergency_reads_per_facility
        ),
    }


@dataclass(slots=True)
class _Counted:
    """The counters one request touches in one window: keys, their limits and scopes."""

    rule: Rule
    principal: Principal
    amount: int
    keys: list[str]
    limits: list[int]
    scopes: list[str]
    window_end: float
    reached: bool = False  # refuse once a counter has reached its limit (a read), not only passed it


class Hit:
    """One request's counting in flight (``RateLimiter.begin``): ``await check()`` raises
    ``RateLimitedError`` when over a limit; ``discard()`` when the request failed anyway."""

    __slots__ = ("_counted", "_counts", "_limiter", "_offset", "_pending")

    def __init__(
        self,
        limiter: RateLimiter,
        counted: _Counted | None,
        counts: list[int] | None = None,
        pending: PendingCounts | None = None,
        offset: int = 0,  # where this request's counts start in ``pending``'s (one command, several windows)
    ) -> None:
        self._limiter, self._counted, self._counts, self._pending = limiter, counted, counts, pending
        self._offset = offset

    async def check(self) -> None:
        counted = self._counted
        if counted is None:
            return
        counts = self._counts
        if counts is None:
            assert self._pending is not None
            try:
                counts = (await self._pending.counts())[self._offset : self._offset + len(counted.keys)]
            except CacheError:
                counts = self._limiter.local_counts(counted)
        await self._limiter.verdict(counted, counts)

    def discard(self) -> None:
        if self._pending is not None:
            self._pending.discard()


class RateLimiter:
    def __init__(self, counters: RateCounters, settings: Settings, metrics: Metrics) -> None:
        self.counters = counters
        self.rules = rules_from(settings)
        self.metrics = metrics
        self.clock: Callable[[], float] = time.time  # wall clock: windows shared by every process
        self._local = InMemoryCounters(max_entries=100_000)  # when the cache fails
        self._warned_at = -math.inf

    def _counted(self, action: str, principal: Principal, amount: int) -> _Counted | None:
        rule = self.rules[action]
        now = self.clock()
        index = int(now // rule.window)
        counted = _Counted(rule, principal, amount, [], [], [], (index + 1) * rule.window)
        if rule.per_token:
            counted.keys.append(f"rl:{action}:token:{principal.token_id}:{index}")
            counted.limits.append(rule.per_token)
            counted.scopes.append("token")
        if rule.per_facility and principal.facility_code is not None:
            counted.keys.append(f"rl:{action}:facility:{principal.facility_code}:{index}")
            counted.limits.append(rule.per_facility)
            counted.scopes.append("facility")
        return counted if counted.keys else None

    # ------------------------------------------------------------ the store, and its fallback

    def local_counts(self, counted: _Counted, amount: int | None = None) -> list[int]:
        self.metrics.event("rate_limit_store_unavailable")
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning("rate-limit store unavailable; counting in this process", extra={"code": "rate_limit_local"})
        return self._local.add(counted.keys, counted.amount if amount is None else amount, counted.rule.window)

    async def _counts(self, counted: _Counted, amount: int | None = None) -> list[int]:
        try:
            return await self.counters.incr_windows(
                counted.keys, counted.amount if amount is None else amount, counted.rule.window
            )
        except CacheError:
            return self.local_counts(counted, amount)

    # ------------------------------------------------------------ the verdict

    def _refusal(self, counted: _Counted, counts: list[int]) -> RateLimitedError | None:
        over = [
            i
            for i, (n, limit) in enumerate(zip(counts, counted.limits, strict=True))
            if n > limit or (counted.reached and n >= limit)
        ]
        if not over:
            return None
        rule, principal = counted.rule, counted.principal
        self.metrics.event(f"rate_limited_{rule.action}")
        scopes = [counted.scopes[i] for i in over]
        log.warning(
            "rate limited",
            extra={
                "code": "rate_limited",
                "action": rule.action,
                "scope": ",".join(scopes),
                "facility_code": principal.facility_code,
                "token_id": principal.token_id,
            },
        )
        first = over[0]
        what = WINDOWS[rule.action][1]
        period = "minute" if rule.window == 60 else "hour"
        retry_after = max(1, math.ceil(counted.window_end - self.clock()))
        return RateLimitedError(
            f"at most {counted.limits[first]} {what} per {period} per {counted.scopes[first]}",
            retry_after=retry_after,
        )

    async def verdict(self, counted: _Counted, counts: list[int]) -> None:
        refusal = self._refusal(counted, counts)
        if refusal is not None:
            if counted.amount:
                await self._counts(counted, -counted.amount)
            raise refusal

    # ------------------------------------------------------------ entry points

    async def hit(self, action: str, principal: Principal, amount: int = 1) -> None:
        """Count a request of ``action``: raises ``RateLimitedError`` when over a limit."""
        await (await self.begin(action, principal, amount)).check()

    async def hit_client(self, action: str, address: str) -> None:
        """``hit`` for a call without a token, counted per client address (the rule's per-token
        limit is the per-address one)."""
        principal = Principal(token_id=-1, kind="client", facility_code=None, role=None, insurer_numbers=frozenset())
        counted = self._counted(action, principal, 1)
        if counted is not None:
            counted.keys = [f"rl:{action}:client:{address}:{key.rsplit(':', 1)[1]}" for key in counted.keys]
            counted.scopes = ["client address"] * len(counted.keys)
            (hit,) = await self._begin(counted)
            await hit.check()

    async def begin(self, action: str, principal: Principal, amount: int = 1) -> Hit:
        """Start counting a request: on the event-loop Redis client the counters are sent now and
        read by ``Hit.check``, so a cache read sent in between shares their round trip."""
        (hit,) = await self._begin(self._counted(action, principal, amount))
        return hit

    async def begin_lookup(self, principal: Principal) -> tuple[Hit, Hit]:
        """``begin("lookup")`` and the read of this token's and facility's counters of failed
        lookups, in one command: the second ``Hit.check`` refuses once either failure counter has
        reached its limit. Failures are added afterwards, by ``count_failure``, only when the
        lookup matched nobody."""
        failures = self._counted("lookup_failure", principal, 0)
        if failures is not None:
            failures.reached = True
        hit, failed = await self._begin(self._counted("lookup", principal, 1), failures)
        return hit, failed

    async def count_failure(self, principal: Principal) -> None:
        """One more failed lookup (no verdict: the lookup that failed has had its answer)."""
        counted = self._counted("lookup_failure", principal, 1)
        if counted is not None:
            await self._counts(counted)

    async def _begin(self, *requests: _Counted | None) -> list[Hit]:
        """One ``Hit`` per request, all of their counters in one command where the store can."""
        counted = [c for c in requests if c is not None]
        pending = None
        try:
            if counted:
                pending = self.counters.incr_windows_nowait([(c.keys, c.amount, c.rule.window) for c in counted])
        except CacheError:
            return [Hit(self, c, counts=self.local_counts(c)) if c is not None else Hit(self, None) for c in requests]
        hits, offset = [], 0
        for c in requests:
            if c is None:
                hits.append(Hit(self, None))
            elif pending is not None:
                hits.append(Hit(self, c, pending=pending, offset=offset))
                offset += len(c.keys)
            else:
                hits.append(Hit(self, c, counts=await self._counts(c)))
        return hits
