"""Rows for reception beyond the checks themselves (the staff board's 「受付対応」 panel).

Two kinds, newest first:

* **referrals**: the patient screen sent a patient to the desk (PIN locked, face refused with no
  PIN left, card unreadable twice, a certificate problem, ...). Kept in memory for the day, like
  the checks.
* **outage rows** (「資格確認できず — 申立書で受付」): a check the server could not answer, from the
  kiosk (card) or the staff screen (number), and also from the XML folder interface when it shares
  the terminal's data directory. They live in the outage journal (durable, encrypted when a key
  is set) and show the re-check's outcome once it is made (「後日確認: 有効」, ...).

What a row identifies: for a card, the certificate's fingerprint (first 16 hex digits), serial
number and issuer — the card itself holds nothing else the kiosk may read without the PIN; for a
number, the insurance number and birth date as keyed. Never the 12-digit My Number.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clinic_terminal.kiosk import messages as msg
from clinic_terminal.kiosk.flow import Referral
from clinic_terminal.kiosk.staff import JST, result_json
from clinic_terminal.outage.journal import (
    OUTAGE_LABEL,
    CardIdentity,
    OutageEntry,
    OutageJournal,
    Source,
    visit_date_of,
)
from schemas.eligibility import ByNumberQuery

logger = logging.getLogger(__name__)

SOURCE_LABEL = {"kiosk": "受付端末（カード）", "staff": "受付画面（番号）", "xml": "レセコン（XML）"}


@dataclass(frozen=True)
class _Note:
    id: int
    at: dt.datetime
    code: str
    method: str | None
    card: CardIdentity | None


def _serial(value: str) -> str:
    """A certificate serial as colon-separated hex bytes (``0f:a3``), never a bare run of digits."""
    padded = value if len(value) % 2 == 0 else "0" + value
    return ":".join(padded[i:i + 2] for i in range(0, len(padded), 2))


def _card_json(card: CardIdentity | None) -> dict[str, str] | None:
    if card is None:
        return None
    return {"fingerprint": card.fingerprint[:16], "serial": _serial(card.serial), "issuer": card.issuer}


def _number_json(query: ByNumberQuery | None) -> dict[str, Any] | None:
    if query is None:
        return None
    return {"insurer_number": query.insurer_number, "symbol": query.symbol, "number": query.number,
            "branch": query.branch, "birth_date": query.birth_date.isoformat()}


def entry_json(entry: OutageEntry) -> dict[str, Any]:
    """An outage journal entry as the staff board shows it."""
    shows_number = entry.kind == "number" or entry.result is not None
    return {
        "id": f"o-{entry.id}",
        "kind": "outage",
        "at": entry.created_at.astimezone(JST).strftime("%H:%M:%S"),
        "visit_date": entry.visit_date.isoformat(),
        "label": OUTAGE_LABEL,
        # the board's one-word state: 申立書 while the re-check is pending or failed, then its outcome
        "attention": "statement" if entry.status != "valid" else "ok",
        "attention_label": "申立書" if entry.status != "valid" else "後日確認済み",
        "source": entry.source,
        "source_label": SOURCE_LABEL[entry.source],
        "method": entry.verified_by or ("number" if entry.kind == "number" else None),
        "verified": msg.VERIFIED_BY.get(entry.verified_by or ""),
        "card": _card_json(entry.card),
        "number": _number_json(entry.query) if shows_number else None,
        "status": entry.status,
        "status_label": entry.status_label,
        "resolved_at": None if entry.resolved_at is None else entry.resolved_at.astimezone(JST).strftime("%m/%d %H:%M"),
        "error_code": entry.error_code,
        "result": None if entry.result is None else result_json(entry.result),
        "_sort": entry.created_at.astimezone(dt.UTC).isoformat(),
    }


class ReceptionNotices:
    """Referrals (memory, per Japanese day) and outage rows (the journal) for the staff board."""

    def __init__(
        self,
        journal: OutageJournal | None = None,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        on_journalled: Callable[[], None] | None = None,
    ) -> None:
        self.journal = journal
        self._now = now
        self._on_journalled = on_journalled
        self._lock = threading.Lock()
        self._day = self._today()
        self._notes: list[_Note] = []
        self._ids = itertools.count(1)

    def _today(self) -> dt.date:
        return self._now().astimezone(JST).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._notes = today, []

    # --- taking rows
    def refer(self, referral: Referral) -> None:
        """The flow's ``on_referral``: an outage check goes to the journal, the rest to memory."""
        card = None if referral.certificate is None else CardIdentity.from_certificate(referral.certificate)
        if referral.outage and self.journal is not None and card is not None:
            visit = visit_date_of(referral.at)
            try:
                if not self._already_journalled(card, visit):
                    self.journal.record_card(card, verified_by=referral.method, visit_date=visit, now=referral.at)
                    self._journalled()
                return
            except Exception:  # the journal's disk: the desk still gets the row (in memory, no re-check)
                logger.exception("reception: the outage check could not be journalled")
        with self._lock:
            self._roll()
            self._notes.append(_Note(next(self._ids), referral.at, referral.code, referral.method, card))

    def _already_journalled(self, card: CardIdentity, visit: dt.date) -> bool:
        """The same card tried again the same day while the server is away: one row, not several."""
        assert self.journal is not None
        return any(
            e.card is not None and e.card.fingerprint == card.fingerprint and e.visit_date == visit
            and e.state == "pending"
            for e in self.journal.pending(("kiosk",))
        )

    def journal_number(self, query: ByNumberQuery, *, source: Source = "staff") -> OutageEntry:
        """A by-number check the server could not answer (the staff screen's form)."""
        if self.journal is None:
            raise RuntimeError("no outage journal configured")
        now = self._now()
        entry = self.journal.record_number(query, source=source, visit_date=query.as_of or visit_date_of(now), now=now)
        self._journalled()
        return entry

    def _journalled(self) -> None:
        if self._on_journalled is not None:
            self._on_journalled()

    def remember_card(self, certificate: bytes, result: Any) -> None:
        """The flow's ``on_card_checked``: a card answered by the server is remembered for re-checks."""
        if self.journal is not None and self.journal.remember_card(certificate, result):
            self._journalled()  # entries that waited for this card can be re-checked now

    # --- the board
    def rows(self) -> list[dict[str, Any]]:
        start = dt.datetime.combine(self._today(), dt.time(), JST)
        rows: list[dict[str, Any]] = []
        if self.journal is not None:
            rows.extend(entry_json(e) for e in self.journal.board(since=start))
        with self._lock:
            self._roll()
            notes = list(self._notes)
        rows.extend(self._note_json(n) for n in notes)
        rows.sort(key=lambda r: r["_sort"], reverse=True)
        for row in rows:
            del row["_sort"]
        return rows

    @staticmethod
    def _note_json(note: _Note) -> dict[str, Any]:
        return {
            "id": f"r-{note.id}",
            "kind": "referral",
            "at": note.at.astimezone(JST).strftime("%H:%M:%S"),
            "label": msg.referral_label(note.code),
            "attention": "desk",
            "attention_label": "受付へ",
            "code": note.code,
            "source": "kiosk",
            "source_label": SOURCE_LABEL["kiosk"],
            "method": note.method,
            "card": _card_json(note.card),
            "number": None,
            "status": None,
            "status_label": None,
            "_sort": note.at.astimezone(dt.UTC).isoformat(),
        }
