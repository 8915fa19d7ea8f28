"""The outage journal: durable across a restart, encrypted at rest with a key, nothing it must not hold."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from clinic_terminal.outage.journal import CardIdentity, JournalError, OutageJournal, visit_date_of
from schemas.eligibility import ByNumberQuery, EligibilityResult
from tests.unit.kiosk.conftest import insured

VISIT = dt.date(2026, 11, 28)
QUERY = ByNumberQuery(insurer_number="01130012", symbol="１２３", number="４５６７", branch="00",
                      birth_date=dt.date(1985, 6, 15))
CARD = CardIdentity(fingerprint="ab" * 32, serial="1f2e", issuer="CN=JPKI Test CA")


def _raw(directory: Path) -> bytes:
    """Every byte SQLite keeps for the journal (main file and write-ahead log)."""
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.name.startswith("outage.sqlite3"))


def test_entries_survive_closing_and_reopening(tmp_path: Path) -> None:
    with OutageJournal(tmp_path) as journal:
        number = journal.record_number(QUERY.model_copy(update={"as_of": VISIT}), source="staff", visit_date=VISIT)
        card = journal.record_card(CARD, verified_by="pin", visit_date=VISIT)
    with OutageJournal(tmp_path) as again:
        pending = again.pending(("kiosk", "staff"))
    assert [e.id for e in pending] == [number.id, card.id]
    by_number, by_card = pending
    assert by_number.query == QUERY  # as_of is not kept: the re-check sets the visit date
    assert (by_number.kind, by_number.visit_date, by_number.state) == ("number", VISIT, "pending")
    assert (by_card.card, by_card.verified_by, by_card.query) == (CARD, "pin", None)


def test_sources_are_kept_apart(tmp_path: Path) -> None:
    with OutageJournal(tmp_path) as journal:
        journal.record_number(QUERY, source="xml", visit_date=VISIT, xml={"file_id": "OQSsiquc01res_1"})
        journal.record_number(QUERY, source="staff", visit_date=VISIT)
        assert [e.source for e in journal.pending(("xml",))] == ["xml"]
        assert [e.source for e in journal.pending(("kiosk", "staff"))] == ["staff"]


def test_with_a_key_nothing_personal_is_readable_on_disk(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    with OutageJournal(tmp_path, key=key) as journal:
        assert journal.encrypted
        entry = journal.record_number(QUERY, source="staff", visit_date=VISIT)
        journal.record_card(CARD, verified_by="face", visit_date=VISIT)
        result = EligibilityResult(validity=1, query_kind="number", as_of=VISIT, insured=insured())
        journal.resolve(entry, state="done", outcome="valid", result=result)
        raw = _raw(tmp_path)
    for secret in ("４５６７", "1985-06-15", "試験", "霞が関", CARD.fingerprint, CARD.issuer):
        assert secret.encode() not in raw
    with OutageJournal(tmp_path, key=key) as again:
        resolved = again.get(entry.id)
    assert resolved is not None and resolved.result is not None and resolved.result.insured is not None
    assert resolved.result.insured.name == "試験 花子"


def test_without_a_key_the_payload_is_plain_and_the_wrong_key_reads_nothing(tmp_path: Path) -> None:
    with OutageJournal(tmp_path) as journal:
        assert not journal.encrypted
        journal.record_number(QUERY, source="staff", visit_date=VISIT)
    assert "４５６７".encode() in _raw(tmp_path)
    with OutageJournal(tmp_path / "sealed", key=Fernet.generate_key()) as sealed:
        entry = sealed.record_number(QUERY, source="staff", visit_date=VISIT)
    with OutageJournal(tmp_path / "sealed", key=Fernet.generate_key()) as other:
        unreadable = other.get(entry.id)
        assert other.pending(("staff",)) == []  # never re-checked with what it cannot read
    assert unreadable is not None and not unreadable.readable and unreadable.query is None
    assert unreadable.status_label == "後日確認: 記録を読めません（暗号鍵を確認）"


def test_a_my_number_is_never_journalled(tmp_path: Path) -> None:
    with OutageJournal(tmp_path) as journal:
        with pytest.raises(JournalError) as caught:
            journal.record_number(QUERY, source="xml", visit_date=VISIT, xml={"file_id": "123456789018"})
        assert caught.value.code == "my_number_detected"
        assert "123456789018" not in str(caught.value)
        assert journal.count() == 0


def test_the_journal_holds_no_pin_and_no_image_columns(tmp_path: Path) -> None:
    with OutageJournal(tmp_path) as journal:
        journal.record_card(CARD, verified_by="pin", visit_date=VISIT)
    db = sqlite3.connect(tmp_path / "outage.sqlite3")
    try:
        columns = {row[1] for table in ("outage_checks", "known_cards")
                   for row in db.execute(f"PRAGMA table_info({table})")}
        payload = db.execute("SELECT payload FROM outage_checks").fetchone()[0]
    finally:
        db.close()
    assert not columns & {"pin", "photo", "image", "face", "my_number"}
    assert set(__import__("json").loads(payload[2:])) == {"query", "card", "verified_by", "xml", "result",
                                                          "error_code"}


def test_a_card_seen_later_reopens_its_entries_waiting_for_it(tmp_path: Path) -> None:
    der = b"not a real certificate"
    card = CardIdentity.from_certificate(der)
    with OutageJournal(tmp_path, key=Fernet.generate_key()) as journal:
        entry = journal.record_card(card, verified_by="pin", visit_date=VISIT)
        assert journal.resolve(entry, state="needs_card", outcome="needs_card") is not None
        assert journal.pending(("kiosk",)) == []
        assert journal.known_card(card.fingerprint) is None
        result = EligibilityResult(validity=1, query_kind="card", as_of=VISIT, insured=insured())
        assert journal.remember_card(der, result) == 1
        (reopened,) = journal.pending(("kiosk",))
        known = journal.known_card(card.fingerprint)
    assert reopened.id == entry.id and reopened.outcome is None
    assert known == QUERY


def test_resolving_twice_keeps_the_first_outcome(tmp_path: Path) -> None:
    with OutageJournal(tmp_path) as journal:
        entry = journal.record_number(QUERY, source="staff", visit_date=VISIT)
        assert journal.resolve(entry, state="done", outcome="valid") is not None
        assert journal.resolve(entry, state="done", outcome="not_insured") is None
        resolved = journal.get(entry.id)
    assert resolved is not None and (resolved.outcome, resolved.attempts) == ("valid", 1)


def test_the_visit_date_is_the_japanese_day() -> None:
    assert visit_date_of(dt.datetime(2026, 11, 27, 15, 30, tzinfo=dt.UTC)) == dt.date(2026, 11, 28)


def test_a_card_whose_fingerprint_holds_twelve_digits_is_journalled(tmp_path: Path) -> None:
    # 123456789018 has a valid My Number check digit; inside a hex digest it is chance, not a My Number
    card = CardIdentity(fingerprint="ab123456789018cd" + "e" * 48, serial="123456789018", issuer="CN=x")
    with OutageJournal(tmp_path) as journal:
        entry = journal.record_card(card, verified_by="pin", visit_date=VISIT)
        assert journal.get(entry.id) is not None
