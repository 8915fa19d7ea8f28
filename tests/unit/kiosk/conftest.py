"""Fixtures for the kiosk flow: an in-process card on a reader slot and an in-memory central server.

``InMemoryServer`` checks what the real server checks where it matters to the kiosk: the card's
signature over the nonce of a single-use challenge (with the certificate's public key), and the
four basic facts at registration. Everything it receives is recorded for assertions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509

from clinic_terminal.card.inprocess import InProcessReader
from clinic_terminal.client import ServerError
from clinic_terminal.kiosk.flow import CheckFlow, CheckRecord, FacePath, Referral
from schemas.card import BasicFacts, Challenge, ConsentRecord, ConsentRequest, Registered
from schemas.eligibility import (
    BatchCreated,
    BatchResult,
    ByNumberQuery,
    EligibilityResult,
    Insured,
    LimitCertificate,
)
from shikaku_server.card.verify import verify_pin_signature
from testbed.card_emulator import (
    BasicFactsRecord,
    MyNumberCardEmulator,
    assert_no_violations,
    build_card,
    sample_photo_jp2,
)
from testbed.pki import TestCA

TODAY = dt.date(2026, 11, 28)
FACTS = BasicFactsRecord(name="試験 花子", address="東京都千代田区霞が関一丁目2番2号",
                         birth_date=dt.date(1985, 6, 15), sex="2")


def insured(**over: Any) -> Insured:
    values: dict[str, Any] = {
        "insurer_number": "01130012", "insurer_name": "全国健康保険協会 東京支部", "symbol": "１２３",
        "number": "４５６７", "branch": "00", "card_classification": "01", "personal_family": "1",
        "name": FACTS.name, "name_kana": "シケン ハナコ", "sex": "2", "birth_date": FACTS.birth_date,
        "address": FACTS.address, "post_number": "100-8916", "valid_from": dt.date(2024, 4, 1), "valid_to": None,
        "reason_of_loss": None, "copay_ratio": 30,
    }
    values.update(over)
    return Insured(**values)


@dataclass
class InMemoryServer:
    """The central server's card, consent and by-number calls, in memory."""

    linked: set[str] = field(default_factory=set)
    facts_on_file: BasicFactsRecord = FACTS
    insured_row: Insured = field(default_factory=insured)
    validity: int = 1
    #: what a card check answers besides the person: a 限度額 certificate carried by an answer made
    #: under an earlier visit's consent (older servers did; the kiosk must drop it when refused)
    card_extras: dict[str, Any] = field(default_factory=dict)
    down: bool = False
    challenges: dict[str, bytes] = field(default_factory=dict)
    by_card_calls: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[BasicFacts] = field(default_factory=list)
    consents: list[ConsentRequest] = field(default_factory=list)
    number_queries: list[ByNumberQuery] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _check_up(self) -> None:
        if self.down:
            raise ServerError("unavailable", "the server cannot be reached")

    def challenge(self) -> Challenge:
        self._check_up()
        challenge_id = f"ch-{next(self._ids)}"
        nonce = secrets.token_bytes(32)
        self.challenges[challenge_id] = nonce
        return Challenge(challenge_id=challenge_id, nonce=base64.b64encode(nonce).decode(),
                         expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))

    def _redeem_and_verify(self, challenge_id: str, certificate: bytes, signature: bytes) -> None:
        nonce = self.challenges.pop(challenge_id, None)
        if nonce is None:
            raise ServerError("challenge_reused", "used or unknown", 409)
        # the server's own check: the scheme follows the certificate's key (RSA or ECDSA P-384)
        verify_pin_signature(x509.load_der_x509_certificate(certificate), nonce, signature)

    def register(self, challenge_id: str, certificate: bytes, signature: bytes, facts: BasicFacts) -> Registered:
        self._check_up()
        self._redeem_and_verify(challenge_id, certificate, signature)
        self.registrations.append(facts)
        expected = self.facts_on_file
        if (facts.name, facts.birth_date, facts.sex, facts.address) != (
            expected.name, expected.birth_date, expected.sex, expected.address
        ):
            raise ServerError("registration_no_match", "the four facts match nobody", 422)
        self.linked.add(hashlib.sha256(certificate).hexdigest())
        return Registered(status="linked", insurer_number=self.insured_row.insurer_number, branch="00")

    def by_card(self, challenge_id: str, certificate: bytes, *, signature: bytes | None = None,
                attestation: str | None = None, as_of: str | None = None) -> EligibilityResult:
        self._check_up()
        self.by_card_calls.append({"challenge_id": challenge_id, "signature": signature, "attestation": attestation})
        if signature is not None:
            self._redeem_and_verify(challenge_id, certificate, signature)
        else:
            assert attestation == f"attested:{challenge_id}"
            self.challenges.pop(challenge_id)
        if hashlib.sha256(certificate).hexdigest() not in self.linked:
            raise ServerError("card_not_registered", "no person is linked to this certificate", 404)
        return EligibilityResult(validity=self.validity, query_kind="card", as_of=TODAY,
                                 visit_id=f"v-{next(self._ids)}", insured=self.insured_row, **self.card_extras)

    def consent(self, request: ConsentRequest) -> ConsentRecord:
        self._check_up()
        self.consents.append(request)
        now = dt.datetime.now(dt.UTC)
        return ConsentRecord(consent_id=len(self.consents), visit_id=request.visit_id, drug=request.drug,
                             checkup=request.checkup, clinical=request.clinical,
                             limit_certificate=request.limit_certificate, setting=request.setting, given_at=now,
                             expires_at=now + dt.timedelta(hours=24))

    def by_number(self, query: ByNumberQuery) -> EligibilityResult:
        self._check_up()
        self.number_queries.append(query)
        limit = LimitCertificate(kind="01", classification="A03", valid_from=dt.date(2026, 4, 1), valid_to=None)
        return EligibilityResult(validity=1, query_kind="number", as_of=TODAY, insured=self.insured_row,
                                 limit_certificate=limit if query.include_limit_certificate else None)

    def create_batch(self, queries: list[ByNumberQuery], label: str | None = None) -> BatchCreated:
        self.number_queries.extend(queries)
        return BatchCreated(batch_id="b-1", status="pending", count=len(queries))

    def get_batch(self, batch_id: str) -> BatchResult:
        raise NotImplementedError

    def medications(self, visit_id: str) -> Any:
        raise NotImplementedError

    def checkups(self, visit_id: str) -> Any:
        raise NotImplementedError


@dataclass
class FakeFaceOutcome:
    match: bool
    liveness: bool
    distance: float | None = 0.3
    threshold: float = 0.5
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.match and self.liveness and self.reason is None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Kiosk:
    """A flow over one card on an in-process reader, the in-memory server and collecting sinks."""

    flow: CheckFlow
    card: MyNumberCardEmulator
    reader: InProcessReader
    server: InMemoryServer
    records: list[CheckRecord]
    face_files: list[tuple[EligibilityResult, ConsentRecord | None]]
    clock: Clock
    face_statuses: list[str]
    referrals: list[Referral] = field(default_factory=list)
    card_checks: list[tuple[bytes, EligibilityResult]] = field(default_factory=list)


@pytest.fixture(scope="session")
def kiosk_ca() -> TestCA:
    return TestCA.create(common_name="JPKI Test Kiosk CA")


@pytest.fixture(scope="session")
def photo() -> bytes:
    return sample_photo_jp2()


MakeKiosk = Callable[..., Kiosk]


@pytest.fixture
def make_kiosk(kiosk_ca: TestCA, photo: bytes) -> Iterator[MakeKiosk]:
    cards: list[MyNumberCardEmulator] = []

    def factory(*, linked: bool = True, face_outcome: FakeFaceOutcome | None = None, face: bool = False,
                card: MyNumberCardEmulator | None = None, auto_collation_b: bool = True,
                **server_over: Any) -> Kiosk:
        emulator = card or build_card(kiosk_ca, pin="1234", facts=FACTS, photo_jp2=photo, key_index=7)
        if isinstance(emulator, MyNumberCardEmulator):
            cards.append(emulator)
        reader = InProcessReader()
        reader.insert(emulator)
        server = InMemoryServer(**server_over)
        if linked and isinstance(emulator, MyNumberCardEmulator):
            server.linked.add(hashlib.sha256(emulator.profile.certificate_der).hexdigest())
        records: list[CheckRecord] = []
        files: list[tuple[EligibilityResult, ConsentRecord | None]] = []
        statuses: list[str] = []
        clock = Clock()
        face_path = None
        if face or face_outcome is not None:
            outcome = face_outcome or FakeFaceOutcome(match=True, liveness=True)

            def checker(card_photo: bytes, on_status: Callable[[str], None]) -> FakeFaceOutcome:
                assert card_photo == photo  # the chip's photo, read after 照合番号B
                on_status("detecting")
                statuses.append(flow.screen().face_status or "")
                on_status("matching")
                statuses.append(flow.screen().face_status or "")
                return outcome

            def signer(*, challenge: Challenge, certificate: bytes, outcome: Any) -> str:
                return f"attested:{challenge.challenge_id}"

            collation = emulator.profile.collation_b if isinstance(emulator, MyNumberCardEmulator) else None
            source = (lambda: collation) if auto_collation_b else None  # None: staff key 照合番号B in
            face_path = FacePath(checker=checker, signer=signer, collation_b=source)
        referrals: list[Referral] = []
        card_checks: list[tuple[bytes, EligibilityResult]] = []
        flow = CheckFlow(
            connect_card=reader.connect, server=server, face=face_path, on_check=records.append,
            face_file=lambda result, consent: files.append((result, consent)), clock=clock,
            run_in_background=lambda job: job(), on_referral=referrals.append,
            on_card_checked=lambda cert, result: card_checks.append((cert, result)),
        )
        return Kiosk(flow, emulator, reader, server, records, files, clock, statuses, referrals, card_checks)

    yield factory
    assert_no_violations(*cards)
