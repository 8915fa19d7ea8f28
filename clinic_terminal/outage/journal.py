"""The outage journal (緊急時): every check the terminal could not make because the server was away.

One SQLite file in the terminal's data directory (WAL, ``synchronous=FULL``: a committed entry
survives a crash or power cut), shared by the kiosk, its staff screen and the XML folder interface
when they share the directory. Plain columns hold only what the re-check needs to find its work
(id, source, kind, state, dates, outcome code); everything about the patient (the keyed insurance
number and birth date, the card's certificate identity, the result of the re-check, the XML file
to answer) is one JSON payload, **encrypted with Fernet (AES-128-CBC + HMAC-SHA256)** when
``SHIKAKU_TERMINAL_JOURNAL_KEY`` is set.

Never stored: face images, PINs, 照合番号B, the My Number (a payload holding a 12-digit My
Number is refused), and nothing the card did not give: a card entry holds the certificate's
SHA-256 fingerprint, serial number and issuer, and how the patient was verified on the terminal.

``known_cards`` maps a certificate fingerprint to the insurance number seen at the card's last
successful check (kept 400 days), so that a card check made during an outage can be re-checked by
number; see docs/kiosk.md ("Outage mode").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.fernet import Fernet, InvalidToken

from clinic_terminal.sqlite_store import SQLiteStore
from schemas.eligibility import ByNumberQuery, EligibilityResult
from schemas.identifiers import contains_my_number

logger = logging.getLogger(__name__)

JOURNAL_FILE: Final = "outage.sqlite3"
JST: Final = dt.timezone(dt.timedelta(hours=9), "JST")
KNOWN_CARD_DAYS: Final = 400

Source = Literal["kiosk", "staff", "xml"]
Kind = Literal["number", "card"]
#: pending: to re-check; needs_card: a card entry with no known insurance number; done: re-checked;
#: failed: the server refused the re-check for good (e.g. validation_error)
State = Literal["pending", "needs_card", "done", "failed"]
#: valid / not_insured (validity 2, 3, 4) / multiple (validity 5) / error (the server refused)
Outcome = Literal["valid", "not_insured", "multiple", "needs_card", "error"]

#: What the staff board says about an entry (one place for the wording).
STATUS_LABEL: Final[dict[str, str]] = {
    "pending": "後日確認: 待機中（サーバー復旧後に自動で確認）",
    "needs_card": "後日確認: カード再提示が必要",
    "valid": "後日確認: 有効",
    "not_insured": "後日確認: 資格なし — 保険者へ",
    "multiple": "後日確認: 複数の資格が該当 — 枝番を確認",
    "error": "後日確認: 照会できず — 保険者へ",
    "unreadable": "後日確認: 記録を読めません（暗号鍵を確認）",
}
OUTAGE_LABEL: Final = "資格確認できず — 申立書で受付"

_PLAIN: Final = b"P:"
_SEALED: Final = b"F:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outage_checks (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    visit_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    resolved_at TEXT,
    outcome TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    card_key TEXT,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outage_checks_state ON outage_checks (state, created_at);
CREATE TABLE IF NOT EXISTS known_cards (
    card_key TEXT PRIMARY KEY,
    seen_at TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


class JournalError(ValueError):
    """A payload the journal refuses to store (``code`` names the rule, never the value)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class CardIdentity:
    """What a card identifies without the server: its authentication certificate, nothing personal."""

    fingerprint: str  # SHA-256 of the certificate DER, hex
    serial: str  # the certificate's serial number, hex
    issuer: str  # RFC 4514

    @classmethod
    def from_certificate(cls, der: bytes) -> CardIdentity:
        from cryptography import x509

        fingerprint = hashlib.sha256(der).hexdigest()
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return cls(fingerprint, "", "")
        return cls(fingerprint, format(cert.serial_number, "x"), cert.issuer.rfc4514_string())

    def to_json(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "serial": self.serial, "issuer": self.issuer}


@dataclass(frozen=True)
class OutageEntry:
    """One check made while the server was unreachable, and what became of it."""

    id: str
    source: Source
    kind: Kind
    state: State
    visit_date: dt.date
    created_at: dt.datetime
    query: ByNumberQuery | None = None  # by-number entries (and card entries once the number is known)
    card: CardIdentity | None = None
    verified_by: str | None = None  # "pin" (the card accepted it) / "face" (matched on the terminal)
    xml: dict[str, Any] | None = None  # the XML request to follow up (file id, header, search info)
    outcome: Outcome | None = None
    resolved_at: dt.datetime | None = None
    result: EligibilityResult | None = None
    error_code: str | None = None
    attempts: int = 0
    readable: bool = True  # False: sealed with another key (or no key configured)

    @property
    def status(self) -> str:
        if not self.readable:
            return "unreadable"
        return self.outcome or self.state

    @property
    def status_label(self) -> str:
        return STATUS_LABEL[self.status]


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _parse_time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def outcome_of(result: EligibilityResult) -> Outcome:
    """The re-check's verdict: usable → valid; several match → multiple; anything else → not insured."""
    if result.processing.status == "error":
        return "error"
    if result.usable:
        return "valid"
    if result.validity == 5:
        return "multiple"
    return "not_insured"


class OutageJournal(SQLiteStore):
    """SQLite-backed, thread-safe; several processes may open the same file."""

    def __init__(self, directory: Path, *, key: str | bytes | None = None) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / JOURNAL_FILE
        # owner only, whatever the umask (SQLite gives its -wal and -shm files the same mode)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._fernet = Fernet(key) if key else None
        self._mac_key = hashlib.sha256(b"shikaku-journal-card|" + (key.encode() if isinstance(key, str) else key)
                                       ).digest() if key else None
        super().__init__(self.path, _SCHEMA, busy_timeout_ms=10_000)
        self._purge_known_cards()

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    # --- sealing
    def _seal(self, data: dict[str, Any], *, scan: tuple[str, ...]) -> bytes:
        """The payload as stored; every string under the ``scan`` keys (what came from a keyed or
        clinic-sent input) is checked for a My Number first. Certificate fingerprints, serials and
        ids are not scanned: a hex digest may hold a run of 12 decimal digits by chance."""
        if any(contains_my_number(value) for key in scan for value in _strings(data.get(key))):
            raise JournalError("my_number_detected", "a 12-digit individual number is never journalled")
        raw = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return _SEALED + self._fernet.encrypt(raw) if self._fernet is not None else _PLAIN + raw

    def _open(self, blob: bytes) -> dict[str, Any] | None:
        blob = bytes(blob)
        if blob.startswith(_PLAIN):
            data: dict[str, Any] = json.loads(blob[len(_PLAIN):])
            return data
        if self._fernet is None:
            return None
        try:
            data = json.loads(self._fernet.decrypt(blob[len(_SEALED):]))
        except InvalidToken:
            return None
        return data

    def _card_key(self, fingerprint: str) -> str:
        if self._mac_key is None:
            return hashlib.sha256(b"card|" + fingerprint.encode()).hexdigest()
        return hmac.new(self._mac_key, fingerprint.encode(), hashlib.sha256).hexdigest()

    # --- recording
    def record_number(
        self, query: ByNumberQuery, *, source: Source, visit_date: dt.date, xml: dict[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> OutageEntry:
        """A by-number check the server could not answer (kiosk staff screen or XML request)."""
        query = query.model_copy(update={"as_of": None})
        return self._insert(OutageEntry(
            id=uuid.uuid4().hex, source=source, kind="number", state="pending", visit_date=visit_date,
            created_at=now or dt.datetime.now(dt.UTC), query=query, xml=xml,
        ))

    def record_card(
        self, card: CardIdentity, *, verified_by: str | None, visit_date: dt.date, source: Source = "kiosk",
        now: dt.datetime | None = None,
    ) -> OutageEntry:
        """A card check the server could not answer: what the card identified, re-checked later."""
        return self._insert(OutageEntry(
            id=uuid.uuid4().hex, source=source, kind="card", state="pending", visit_date=visit_date,
            created_at=now or dt.datetime.now(dt.UTC), card=card, verified_by=verified_by,
        ))

    def _insert(self, entry: OutageEntry) -> OutageEntry:
        payload = self._seal(_payload(entry), scan=_SCANNED)
        card_key = self._card_key(entry.card.fingerprint) if entry.card is not None else None
        with self._tx() as db:
            db.execute(
                "INSERT INTO outage_checks (id, source, kind, state, visit_date, created_at, card_key, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.id, entry.source, entry.kind, entry.state, entry.visit_date.isoformat(),
                 _iso(entry.created_at), card_key, payload),
            )
        logger.info("outage journal: %s %s check %s recorded", entry.source, entry.kind, entry.id)
        return entry

    # --- cards seen while the server was up
    def remember_card(self, certificate: bytes, result: EligibilityResult, *, now: dt.datetime | None = None) -> int:
        """After a successful card check: keep fingerprint → insurance number, and put this card's
        entries that were waiting for it (``needs_card``) back to ``pending``. Returns how many."""
        insured = result.insured
        if insured is None:
            return 0
        card_key = self._card_key(hashlib.sha256(certificate).hexdigest())
        number = {"insurer_number": insured.insurer_number, "symbol": insured.symbol, "number": insured.number,
                  "branch": insured.branch, "birth_date": insured.birth_date.isoformat()}
        payload = self._seal({"query": number}, scan=_SCANNED)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO known_cards (card_key, seen_at, payload) VALUES (?, ?, ?)",
                       (card_key, _iso(now or dt.datetime.now(dt.UTC)), payload))
            reopened = db.execute(
                "UPDATE outage_checks SET state = 'pending', outcome = NULL, resolved_at = NULL "
                "WHERE card_key = ? AND state = 'needs_card'", (card_key,)).rowcount
        return int(reopened)

    def known_card(self, fingerprint: str) -> ByNumberQuery | None:
        """The insurance number last seen for this certificate (None if never, or unreadable)."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM known_cards WHERE card_key = ?",
                                   (self._card_key(fingerprint),)).fetchone()
        data = None if row is None else self._open(row[0])
        return None if data is None else ByNumberQuery.model_validate(data["query"])

    def _purge_known_cards(self) -> None:
        cutoff = _iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=KNOWN_CARD_DAYS))
        with self._tx() as db:
            db.execute("DELETE FROM known_cards WHERE seen_at < ?", (cutoff,))

    # --- reading
    def _entry(self, row: tuple[Any, ...]) -> OutageEntry:
        data = self._open(row[9])
        base: dict[str, Any] = {
            "id": row[0], "source": row[1], "kind": row[2], "state": row[3],
            "visit_date": dt.date.fromisoformat(row[4]), "created_at": dt.datetime.fromisoformat(row[5]),
            "resolved_at": _parse_time(row[6]), "outcome": row[7], "attempts": int(row[8]),
        }
        if data is None:
            return OutageEntry(**base, readable=False)
        query = data.get("query")
        card = data.get("card")
        result = data.get("result")
        return OutageEntry(
            **base,
            query=None if query is None else ByNumberQuery.model_validate(query),
            card=None if card is None else CardIdentity(**card),
            verified_by=data.get("verified_by"),
            xml=data.get("xml"),
            result=None if result is None else EligibilityResult.model_validate(result),
            error_code=data.get("error_code"),
        )

    def get(self, entry_id: str) -> OutageEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, source, kind, state, visit_date, created_at, resolved_at, outcome, attempts, payload "
                "FROM outage_checks WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else self._entry(row)

    def pending(self, sources: tuple[Source, ...]) -> list[OutageEntry]:
        """Entries to re-check, oldest first (only readable ones: a sealed entry needs its key)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, source, kind, state, visit_date, created_at, resolved_at, outcome, attempts, payload "
                "FROM outage_checks WHERE state = 'pending' ORDER BY created_at, id").fetchall()
        return [e for e in map(self._entry, (r for r in rows if r[1] in sources)) if e.readable]

    def board(self, *, since: dt.datetime) -> list[OutageEntry]:
        """What the staff board shows: entries made or resolved since ``since``, and all still open."""
        cutoff = _iso(since)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, source, kind, state, visit_date, created_at, resolved_at, outcome, attempts, payload "
                "FROM outage_checks WHERE created_at >= ? OR resolved_at >= ? "
                "OR state IN ('pending', 'needs_card') ORDER BY created_at DESC, id", (cutoff, cutoff)).fetchall()
        return [self._entry(r) for r in rows]

    # --- resolving
    def resolve(
        self, entry: OutageEntry, *, state: State, outcome: Outcome, result: EligibilityResult | None = None,
        query: ByNumberQuery | None = None, error_code: str | None = None, now: dt.datetime | None = None,
    ) -> OutageEntry | None:
        """Record the re-check's outcome; None when another process resolved the entry first."""
        resolved = OutageEntry(**{
            **entry.__dict__, "state": state, "outcome": outcome, "result": result,
            "query": query or entry.query, "error_code": error_code,
            "resolved_at": now or dt.datetime.now(dt.UTC), "attempts": entry.attempts + 1,
        })
        payload = self._seal(_payload(resolved), scan=_SCANNED)
        assert resolved.resolved_at is not None
        with self._tx() as db:
            changed = db.execute(
                "UPDATE outage_checks SET state = ?, outcome = ?, resolved_at = ?, attempts = attempts + 1, "
                "payload = ? WHERE id = ? AND state = 'pending'",
                (state, outcome, _iso(resolved.resolved_at), payload, entry.id)).rowcount
        return resolved if changed else None

    def count(self, state: State | None = None) -> int:
        with self._lock:
            if state is None:
                row = self._db.execute("SELECT count(*) FROM outage_checks").fetchone()
            else:
                row = self._db.execute("SELECT count(*) FROM outage_checks WHERE state = ?", (state,)).fetchone()
        return int(row[0])


#: Payload keys holding input values (keyed by staff, sent by clinic software): scanned for a My Number.
_SCANNED: Final = ("query", "xml")


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _payload(entry: OutageEntry) -> dict[str, Any]:
    return {
        "query": None if entry.query is None else entry.query.model_dump(mode="json"),
        "card": None if entry.card is None else entry.card.to_json(),
        "verified_by": entry.verified_by,
        "xml": entry.xml,
        "result": None if entry.result is None else entry.result.model_dump(mode="json"),
        "error_code": entry.error_code,
    }


def visit_date_of(now: dt.datetime) -> dt.date:
    """The visit date of a check made at ``now``: the Japanese calendar day."""
    return now.astimezone(JST).date()
