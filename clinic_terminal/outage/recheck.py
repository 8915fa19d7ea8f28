"""Re-checking journalled outage entries once the server answers again (後日確認).

:class:`Rechecker` runs one pass at a time (:meth:`Rechecker.run_once`, what tests call) or in a
background thread (:meth:`Rechecker.start`). A pass asks the server for every pending entry of its
sources, oldest first, by number with ``as_of`` = the visit date:

* a by-number entry: its own query;
* a card entry: the insurance number the terminal saw at this card's last successful check
  (``known_cards``); with none, the entry becomes ``needs_card`` (「後日確認: カード再提示が必要」)
  at once, server or not, until the card is checked successfully again, which puts it back to
  ``pending``.

``unavailable`` (or ``rate_limited``) ends the pass and the next one waits with exponential backoff
(``initial`` doubling up to ``cap`` seconds); any other refusal resolves the entry as ``error``.
While nothing is pending the thread looks again every ``idle`` seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from clinic_terminal.client import ServerError
from clinic_terminal.outage.journal import OutageEntry, OutageJournal, Source, outcome_of
from schemas.eligibility import ByNumberQuery, EligibilityResult

logger = logging.getLogger(__name__)

#: Server codes that mean "not now": the pass stops and backs off.
RETRY_LATER = frozenset({"unavailable", "rate_limited"})

OutcomeSink = Callable[[OutageEntry], None]


class RecheckServer(Protocol):
    def by_number(self, query: ByNumberQuery) -> EligibilityResult: ...


@dataclass(frozen=True)
class Backoff:
    initial: float = 2.0
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.initial * 2.0 ** max(0, failures - 1)))


@dataclass
class PassResult:
    resolved: int = 0
    needs_card: int = 0
    unreachable: bool = False


class Rechecker:
    """Re-checks the journal's pending entries of ``sources``; ``on_outcome`` gets each resolved entry."""

    def __init__(
        self,
        journal: OutageJournal,
        server: RecheckServer,
        *,
        sources: tuple[Source, ...],
        on_outcome: OutcomeSink | None = None,
        backoff: Backoff | None = None,
        idle: float = 30.0,
    ) -> None:
        self.journal = journal
        self.server = server
        self.sources = sources
        self.on_outcome = on_outcome
        self.backoff = backoff or Backoff()
        self.idle = idle
        self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one pass
    def run_once(self) -> PassResult:
        done = PassResult()
        # card entries with no known number need no server to decide: they wait for the card
        work: list[tuple[OutageEntry, ByNumberQuery | None]] = []
        for entry in self.journal.pending(self.sources):
            query = entry.query
            if query is None and entry.card is not None:
                query = self.journal.known_card(entry.card.fingerprint)
            work.append((entry, query))
        work.sort(key=lambda item: item[1] is not None)
        for entry, query in work:
            try:
                resolved = self._recheck(entry, query)
            except ServerError as exc:
                if exc.code in RETRY_LATER:
                    done.unreachable = True
                    break
                logger.warning("outage re-check %s refused by the server: %s", entry.id, exc.code)
                resolved = self.journal.resolve(entry, state="failed", outcome="error", error_code=exc.code)
            if resolved is None:
                continue
            if resolved.state == "needs_card":
                done.needs_card += 1
            else:
                done.resolved += 1
            if self.on_outcome is not None:
                try:
                    self.on_outcome(resolved)
                except Exception:  # a failing follow-up writer must not stop the re-checks
                    logger.exception("outage re-check %s: the follow-up could not be delivered", entry.id)
        self.failures = self.failures + 1 if done.unreachable else 0
        return done

    def _recheck(self, entry: OutageEntry, query: ByNumberQuery | None) -> OutageEntry | None:
        if query is None:
            return self.journal.resolve(entry, state="needs_card", outcome="needs_card")
        result = self.server.by_number(query.model_copy(update={"as_of": entry.visit_date}))
        logger.info("outage re-check %s: validity %s", entry.id, result.validity)
        return self.journal.resolve(entry, state="done", outcome=outcome_of(result), result=result, query=query)

    def next_delay(self, last: PassResult) -> float:
        return self.backoff.delay(self.failures) if last.unreachable else self.idle

    # --- background
    def start(self) -> Rechecker:
        self._thread = threading.Thread(target=self._loop, name="outage-recheck", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look now (a new entry was journalled, or a card became known)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                last = self.run_once()
            except Exception:  # the journal or a bug: keep the thread alive, try again later
                logger.exception("outage re-check pass failed")
                last = PassResult(unreachable=True)
                self.failures += 1
            delay = self.next_delay(last)
            self._wake.wait(delay)
            self._wake.clear()
