"""The kiosk's assembly: the card monitor starts a read, the attestation verifies at the server side."""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path

import httpx
import pytest

from clinic_terminal.kiosk.wiring import KioskConfig, build_kiosk, make_attestation_signer
from schemas.attestation import (
    certificate_fingerprint,
    generate_terminal_key,
    private_key_pem,
    public_key_pem,
    verify_attestation,
)
from schemas.card import Challenge
from testbed.kiosk_demo import make_demo
from tests.unit.kiosk.conftest import FakeFaceOutcome


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def test_placing_the_demo_card_starts_the_read_and_taking_it_out_says_so(tmp_path: Path) -> None:
    profile, _ = make_demo(tmp_path / "demo")
    runtime = build_kiosk(KioskConfig(server_url="http://central.invalid", token="t", demo_card=profile),
                          transport=httpx.MockTransport(_unreachable))
    try:
        assert runtime.flow.screen().name == "place_card"
        demo = runtime.demo_card
        assert demo is not None
        reader = demo.reader
        reader.remove()
        reader.insert(demo.card)
        deadline = time.monotonic() + 5
        while runtime.flow.screen().name != "choose_method" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runtime.flow.screen().name == "choose_method"
        reader.remove()  # taken out mid-check: the screen says so
        deadline = time.monotonic() + 5
        while runtime.flow.screen().code != "card_taken_out" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (runtime.flow.screen().name, runtime.flow.screen().code) == ("error", "card_taken_out")
        reader.insert(demo.card)  # put back: read again at once
        deadline = time.monotonic() + 5
        while runtime.flow.screen().name != "choose_method" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runtime.flow.screen().name == "choose_method"
    finally:
        runtime.close()


def test_face_path_is_off_without_the_terminal_key(tmp_path: Path) -> None:
    profile, _ = make_demo(tmp_path / "demo", photo=None)
    runtime = build_kiosk(KioskConfig(server_url="http://central.invalid", token="t", demo_card=profile,
                                      camera="missing.avi"), watch_card=False)
    try:
        assert runtime.face_enabled is False
        assert runtime.flow.read_card().methods == ("pin",)
    finally:
        runtime.close()


def test_attestation_verifies_with_the_registered_public_key() -> None:
    key = generate_terminal_key()
    signer = make_attestation_signer(private_key_pem(key), "kiosk-1", "0110113719")
    certificate = b"\x30\x03\x02\x01\x01"
    challenge = Challenge(challenge_id="ch-1", nonce=base64.b64encode(b"n" * 32).decode(),
                          expires_at=dt.datetime.now(dt.UTC))
    token = signer(challenge=challenge, certificate=certificate,
                   outcome=FakeFaceOutcome(match=True, liveness=True, distance=0.31, threshold=0.5))
    claims = verify_attestation(token, public_key_pem(key), expected_challenge_id="ch-1",
                                expected_fingerprint=certificate_fingerprint(certificate),
                                expected_facility_code="0110113719")
    assert (claims.terminal_id, claims.distance, claims.liveness) == ("kiosk-1", 0.31, True)


def test_without_a_card_front_source_the_face_path_uses_staff_entry(tmp_path: Path) -> None:
    from clinic_terminal.card.inprocess import InProcessReader
    from testbed.card_emulator import build_card
    from testbed.pki import TestCA

    key_file = tmp_path / "terminal-key.pem"
    key_file.write_bytes(private_key_pem(generate_terminal_key()))
    reader = InProcessReader()
    reader.insert(build_card(TestCA.create(common_name="JPKI Wiring CA")))

    def checker(card_photo: bytes, on_status: object) -> FakeFaceOutcome:
        return FakeFaceOutcome(match=True, liveness=True)

    config = KioskConfig(server_url="http://central.invalid", token="t", reader="Virtual PCD 00 00",
                         terminal_key=key_file, terminal_id="kiosk-1", facility_code="0110113719")
    runtime = build_kiosk(config, transport=httpx.MockTransport(_unreachable), connect_card=reader.connect,
                          face_checker=checker, watch_card=False)
    try:
        assert runtime.face_enabled  # no --card-front: 照合番号B is keyed in by staff
        assert runtime.flow.read_card().methods == ("face", "pin")
        screen = runtime.flow.choose("face")
        assert (screen.name, screen.code) == ("face_failed", "collation_b_unread")
        assert screen.actions == ("collation_b_entry", "pin", "restart")
    finally:
        runtime.close()


def test_a_2026_demo_card_profile_loads_as_the_2026_card_and_signs_with_p384(tmp_path: Path) -> None:
    """The demo's second card (``testbed.demo``: ``card-2026/``): its profile says its generation,
    the kiosk's card module finds the 2026 application on it, and its signature verifies with the
    certificate's P-384 key (ECDSA, SHA-384); a key of the other kind is refused at load."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from clinic_terminal.card import MyNumberCard
    from testbed.card_emulator import CARD_2026, build_card
    from testbed.kiosk_demo import load_demo_card, write_profile
    from testbed.pki import TestCA, rsa_key

    folder = write_profile(tmp_path / "card-2026", build_card(TestCA.create_ecdsa(), layout=CARD_2026).profile,
                           CARD_2026)
    demo = load_demo_card(folder)
    card = MyNumberCard(demo.connect())
    assert card.generation == "2026"
    card.verify_auth_pin("1234")
    nonce = b"n" * 32
    signature = card.sign_challenge(nonce)
    key = x509.load_der_x509_certificate(card.read_auth_certificate()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)
    key.verify(signature, nonce, ec.ECDSA(hashes.SHA384()))
    (folder / "key.pem").write_bytes(rsa_key(0).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError, match="ECDSA P-384"):
        load_demo_card(folder)
