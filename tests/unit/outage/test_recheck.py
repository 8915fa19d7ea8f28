"""Re-checking journalled entries: as of the visit date, by number, card rule, backoff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clinic_terminal.client import ServerError
from clinic_terminal.outage.journal import CardIdentity, OutageEntry, OutageJournal
from clinic_terminal.outage.recheck import Backoff, Rechecker
from schemas.eligibility import ByNumberQuery, EligibilityResult
from tests.unit.kiosk.conftest import insured

VISIT = dt.date(2026, 11, 20)
QUERY = ByNumberQuery(insurer_number="01130012", symbol="１２３", number="４５６７", branch="00",
                      birth_date=dt.date(1985, 6, 15))


@dataclass
class Server:
    down: bool = False
    refuse: str | None = None
    validity: int = 1
    queries: list[ByNumberQuery] = field(default_factory=list)

    def by_number(self, query: ByNumberQuery) -> EligibilityResult:
        if self.down:
            raise ServerError("unavailable", "the server cannot be reached")
        if self.refuse:
            raise ServerError(self.refuse, "refused", 422)
        self.queries.append(query)
        assert query.as_of is not None
        return EligibilityResult(validity=self.validity, query_kind="number", as_of=query.as_of, insured=insured())


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[OutageJournal]:
    j = OutageJournal(tmp_path)
    yield j
    j.close()


def test_a_number_entry_is_re_checked_as_of_the_visit_date(journal: OutageJournal) -> None:
    entry = journal.record_number(QUERY, source="staff", visit_date=VISIT)
    server = Server()
    outcomes: list[OutageEntry] = []
    done = Rechecker(journal, server, sources=("staff",), on_outcome=outcomes.append).run_once()
    assert (done.resolved, done.unreachable) == (1, False)
    (query,) = server.queries
    assert query == QUERY.model_copy(update={"as_of": VISIT})
    (outcome,) = outcomes
    assert (outcome.id, outcome.state, outcome.outcome) == (entry.id, "done", "valid")
    assert outcome.status_label == "後日確認: 有効"
    stored = journal.get(entry.id)
    assert stored is not None and stored.result is not None and stored.result.as_of == VISIT


@pytest.mark.parametrize(("validity", "label"), [
    (2, "後日確認: 資格なし — 保険者へ"), (4, "後日確認: 資格なし — 保険者へ"),
    (5, "後日確認: 複数の資格が該当 — 枝番を確認"),
])
def test_an_invalid_answer_says_so(journal: OutageJournal, validity: int, label: str) -> None:
    entry = journal.record_number(QUERY, source="staff", visit_date=VISIT)
    Rechecker(journal, Server(validity=validity), sources=("staff",)).run_once()
    stored = journal.get(entry.id)
    assert stored is not None and stored.status_label == label


def test_a_card_entry_is_re_checked_by_the_number_seen_at_its_last_check(journal: OutageJournal) -> None:
    der = b"certificate bytes"
    journal.remember_card(der, EligibilityResult(validity=1, query_kind="card", as_of=VISIT, insured=insured()))
    entry = journal.record_card(CardIdentity.from_certificate(der), verified_by="pin", visit_date=VISIT)
    server = Server()
    Rechecker(journal, server, sources=("kiosk",)).run_once()
    assert server.queries == [QUERY.model_copy(update={"as_of": VISIT})]
    stored = journal.get(entry.id)
    assert stored is not None and stored.outcome == "valid" and stored.query == QUERY


def test_an_unknown_card_needs_the_card_again(journal: OutageJournal) -> None:
    der = b"never seen"
    entry = journal.record_card(CardIdentity.from_certificate(der), verified_by="face", visit_date=VISIT)
    server = Server()
    done = Rechecker(journal, server, sources=("kiosk",)).run_once()
    assert (done.needs_card, server.queries) == (1, [])
    stored = journal.get(entry.id)
    assert stored is not None and stored.status_label == "後日確認: カード再提示が必要"
    # the card comes back and is checked: its entry is re-checked by number, as of the visit date
    journal.remember_card(der, EligibilityResult(validity=1, query_kind="card", as_of=VISIT, insured=insured()))
    Rechecker(journal, server, sources=("kiosk",)).run_once()
    assert server.queries == [QUERY.model_copy(update={"as_of": VISIT})]
    again = journal.get(entry.id)
    assert again is not None and again.outcome == "valid"


def test_the_server_still_away_leaves_entries_pending_and_backs_off(journal: OutageJournal) -> None:
    journal.record_number(QUERY, source="staff", visit_date=VISIT)
    journal.record_number(QUERY, source="staff", visit_date=VISIT)
    server = Server(down=True)
    rechecker = Rechecker(journal, server, sources=("staff",), backoff=Backoff(initial=2, cap=10), idle=30)
    delays = []
    for _ in range(5):
        done = rechecker.run_once()
        assert done.unreachable
        delays.append(rechecker.next_delay(done))
    assert delays == [2, 4, 8, 10, 10]
    assert len(journal.pending(("staff",))) == 2
    server.down = False
    done = rechecker.run_once()
    assert (done.resolved, rechecker.next_delay(done)) == (2, 30)


def test_a_refused_re_check_is_resolved_as_an_error(journal: OutageJournal) -> None:
    entry = journal.record_number(QUERY, source="staff", visit_date=VISIT)
    Rechecker(journal, Server(refuse="validation_error"), sources=("staff",)).run_once()
    stored = journal.get(entry.id)
    assert stored is not None and (stored.state, stored.outcome, stored.error_code) == (
        "failed", "error", "validation_error")


def test_the_background_thread_re_checks_when_woken(journal: OutageJournal) -> None:
    import threading

    server = Server()
    seen = threading.Event()
    rechecker = Rechecker(journal, server, sources=("staff",), on_outcome=lambda e: seen.set(), idle=3600).start()
    try:
        journal.record_number(QUERY, source="staff", visit_date=VISIT)
        rechecker.wake()
        assert seen.wait(10)
    finally:
        rechecker.stop()
    assert len(server.queries) == 1
