"""Server-made FHIR ids never read as a My Number (a Bundle id did once, in the hostile suite)."""

from __future__ import annotations

import uuid

import pytest

from schemas.identifiers import my_number_in
from shikaku_server.fhir import mapping

LOOKS_LIKE = uuid.UUID("000a0851-4566-4271-a08d-c7b3cd37dcf5")  # "0851-4566-4271": a valid My Number
FINE = uuid.UUID("5f0c2a9e-3b1d-4e7a-9c2b-7d4e1f0a8b6c")


def test_a_uuid_that_reads_as_a_my_number_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    assert my_number_in(str(LOOKS_LIKE))
    drawn = iter([LOOKS_LIKE, FINE])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    body = mapping.bundle("searchset", [])
    assert body["id"] == str(FINE)


def test_entries_get_ids_that_are_no_my_number(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter([LOOKS_LIKE, LOOKS_LIKE, FINE])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    entry = mapping.search_entry({"resourceType": "Procedure"})
    assert entry["fullUrl"] == f"urn:uuid:{FINE}" and not my_number_in(entry["fullUrl"])
