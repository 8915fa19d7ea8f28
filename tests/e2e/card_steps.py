"""The terminal's card steps against the server, over any transport (PC/SC or in-process).

Each step opens a session with ``connect()``, does on the card what the terminal does (read the
certificate, verify the PIN on the card, only then fetch a challenge and have the card sign it)
and makes one server call. Shared by the PC/SC end-to-end tests.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest

from clinic_terminal.card import BasicFacts as CardFacts
from clinic_terminal.card import CardTransport, MyNumberCard
from clinic_terminal.client import CardClient, ServerError
from schemas.card import AccessLog, BasicFacts, Registered
from schemas.eligibility import EligibilityResult
from testbed.card_emulator import BasicFactsRecord

PIN = "1234"
#: What the card's 入力補助AP holds: the insurer's record of 山田 太郎 as the card spells it
#: (full-width space and digits): linking compares after normalisation.
CARD_FACTS = BasicFactsRecord(
    name="山田　太郎",
    address="東京都千代田区霞が関１－２－２",
    birth_date=dt.date(1980, 4, 1),
    sex="1",
)

Connect = Callable[[], AbstractContextManager[CardTransport]]


class RecordingTransport(httpx.BaseTransport):
    """Passes requests to the app and remembers each ``METHOD /path``; leaves the app open."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return self.inner.handle_request(request)

    def close(self) -> None:
        """The TestClient owns the inner transport."""


def _signed(
    connect: Connect, server: CardClient, pin: str, *, with_facts: bool = False
) -> tuple[str, bytes, bytes, CardFacts | None]:
    """(challenge id, certificate, signature, the four facts when asked) from one card session."""
    with connect() as transport:
        card = MyNumberCard(transport)
        certificate = card.read_auth_certificate()
        facts = card.read_basic_facts(pin) if with_facts else None
        card.verify_auth_pin(pin)
        challenge = server.challenge()
        signature = card.sign_challenge(base64.b64decode(challenge.nonce))
    return challenge.challenge_id, certificate, signature, facts


def register(connect: Connect, server: CardClient, pin: str = PIN) -> Registered:
    """初回登録: certificate, four facts (PIN), auth PIN, signature, register."""
    challenge_id, certificate, signature, facts = _signed(connect, server, pin, with_facts=True)
    assert facts is not None
    return server.register(
        challenge_id,
        certificate,
        signature,
        BasicFacts(name=facts.name, birth_date=facts.birth_date, sex=facts.sex, address=facts.address),
    )


def pin_check(connect: Connect, server: CardClient, pin: str = PIN) -> EligibilityResult:
    """A by-card check with the PIN; the PIN is verified on the card before the server is asked."""
    challenge_id, certificate, signature, _ = _signed(connect, server, pin)
    return server.by_card(challenge_id, certificate, signature=signature)


def access_log(connect: Connect, server: CardClient, pin: str = PIN) -> AccessLog:
    """The patient reads who looked at their data, proving it with the card and the PIN."""
    challenge_id, certificate, signature, _ = _signed(connect, server, pin)
    return server.access_log(challenge_id, certificate, signature)


def server_code(call: Callable[[], object]) -> str:
    with pytest.raises(ServerError) as info:
        call()
    return info.value.code
