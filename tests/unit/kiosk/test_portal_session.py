"""The patient's own screens' card session (``clinic_terminal.portal.session.MySession``): nothing
before the PIN, the PIN once per session and never kept, a fresh card-signed challenge for every
call, the session ended by a pulled card, 「終了」 or the idle timeout."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.client import CardProofBody, ServerError
from clinic_terminal.portal.session import MeError, MySession
from clinic_terminal.portal.web import WHAT_LABELS, access_log_json
from schemas.card import AccessLog, Challenge
from testbed.card_emulator import build_card
from testbed.pki import TestCA
from tests.unit.kiosk.conftest import FACTS, Clock

PIN = "1234"
#: every ``what`` the server writes to a person's access log (docs/patient.md, docs/card.md)
SERVER_WHATS = {"eligibility", "eligibility_no_match", "medications", "checkups", "access_log", "consents",
                "consent_withdraw", "expenses", "expenses_export", "card_suspended", "card_resumed", "card_link",
                "card_link_refused", "home_courses"}


@dataclass
class FakeMe:
    """``/v1/me``: single-use challenges, each checked against the card's signature."""

    certificate: bytes | None = None
    challenges: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    refuse: str | None = None

    def me_challenge(self) -> Challenge:
        cid, nonce = secrets.token_hex(8), secrets.token_bytes(32)
        self.challenges[cid] = nonce
        return Challenge(challenge_id=cid, nonce=base64.b64encode(nonce).decode(),
                         expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60))

    def _prove(self, proof: CardProofBody) -> None:
        nonce = self.challenges.pop(proof.challenge_id)  # single use: a second use fails here
        key = x509.load_der_x509_certificate(proof.certificate).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(proof.signature, nonce, padding.PKCS1v15(), hashes.SHA256())
        if self.refuse:
            raise ServerError(self.refuse, "refused", 403)

    def me(self, what: str, proof: CardProofBody, **extra: Any) -> Any:
        self._prove(proof)
        self.calls.append((what, proof.challenge_id, extra))
        if what == "eligibility":
            return {"periods": [{"current": True, "name": FACTS.name, "sex": "2"}]}
        return {"what": what}

    def me_file(self, what: str, proof: CardProofBody, **extra: Any) -> tuple[bytes, str, str]:
        self._prove(proof)
        self.calls.append((what, proof.challenge_id, extra))
        return b"x", "text/csv", "iryouhi.csv"


@pytest.fixture
def setup(kiosk_ca: TestCA) -> tuple[MySession, FakeMe, InProcessReader, Clock]:
    card = build_card(kiosk_ca, pin=PIN, facts=FACTS, key_index=7)
    reader = InProcessReader()
    reader.insert(card)
    server, clock = FakeMe(), Clock()
    return MySession(connect_card=reader.connect, server=server, idle_timeout=60, clock=clock), server, reader, clock


def test_nothing_before_the_pin(setup: Any) -> None:
    mine, server, *_ = setup
    assert mine.read_card()["screen"] == "pin"
    assert mine.state()["patient_name"] is None
    with pytest.raises(MeError) as refused:
        mine.read("medications")
    assert refused.value.code == "pin_required"
    assert server.calls == []


def test_the_pin_once_then_a_fresh_signed_challenge_per_call_and_the_pin_kept_nowhere(setup: Any) -> None:
    mine, server, *_ = setup
    mine.read_card()
    state = mine.submit_pin(PIN)
    assert (state["screen"], state["patient_name"]) == ("menu", FACTS.name)
    assert mine.read("medications") == {"what": "medications"}
    assert mine.read("expenses", year=2025) == {"what": "expenses"}
    assert mine.download("expenses/export", year=2025, format="csv")[2] == "iryouhi.csv"
    challenge_ids = [c for _, c, _ in server.calls]
    assert [w for w, _, _ in server.calls] == ["eligibility", "medications", "expenses", "expenses/export"]
    assert len(set(challenge_ids)) == 4 and server.challenges == {}  # each its own, each used once
    assert PIN not in repr(vars(mine)) and PIN not in repr(vars(mine._card))


def test_a_wrong_pin_says_how_many_tries_are_left(setup: Any) -> None:
    mine, server, *_ = setup
    mine.read_card()
    state = mine.submit_pin("9999")
    assert (state["screen"], state["tries_left"], state["code"]) == ("pin", 2, "pin_wrong")
    assert "あと2回" in state["message"] and server.calls == []


def test_a_pulled_card_ends_the_session_and_the_pin_is_asked_again(setup: Any) -> None:
    mine, _, reader, _ = setup
    card = reader.card
    mine.read_card()
    mine.submit_pin(PIN)
    reader.remove()
    mine.card_removed()
    assert mine.state()["screen"] == "place_card" and mine.state()["patient_name"] is None
    reader.insert(card)
    assert mine.read_card()["screen"] == "pin"  # the card was powered off: its PIN state is gone
    with pytest.raises(MeError):
        mine.read("medications")


def test_the_idle_timeout_ends_the_session(setup: Any) -> None:
    mine, _, _, clock = setup
    mine.read_card()
    mine.submit_pin(PIN)
    clock.t += 61
    assert mine.state()["screen"] == "place_card"
    with pytest.raises(MeError) as refused:
        mine.read("checkups")
    assert refused.value.code == "pin_required"


def test_a_suspended_card_ends_the_session_with_the_reason(setup: Any) -> None:
    mine, server, *_ = setup
    mine.read_card()
    mine.submit_pin(PIN)
    server.refuse = "card_suspended"
    with pytest.raises(MeError):
        mine.read("medications")
    state = mine.state()
    assert (state["screen"], state["code"]) == ("error", "card_suspended") and "一時停止中" in state["message"]


def test_the_access_log_names_every_read_and_marks_emergency_reads() -> None:
    assert set(WHAT_LABELS) >= SERVER_WHATS
    log = AccessLog.model_validate({"entries": [
        {"at": "2026-12-01T01:00:00Z", "facility_code": "0110113719", "facility_name": "救急病院", "role": "physician",
         "what": "medications", "query_kind": None, "consent_id": None, "emergency": True},
        {"at": "2026-12-01T02:30:00Z", "facility_code": None, "facility_name": None, "role": "patient",
         "what": "expenses_export", "query_kind": "self", "consent_id": None},
    ]})
    first, second = access_log_json(log)["entries"]
    assert (first["who"], first["what"], first["role"], first["emergency"]) == ("救急病院", "お薬の情報", "医師", True)
    assert first["at"] == "2026年12月1日 10時00分"  # JST
    assert (second["who"], second["what"]) == ("ご本人（ご自宅など）", "医療費のファイル出力")
    assert not second["emergency"]
