"""The face issue's done-criterion: 顔認証 through PC/SC, OCR of the card front, and the real server.

Chain: emulated card (certificate, 照合番号B, photo = JPEG 2000 of ``obama.jpg``) → vpcd → pcscd →
pyscard → ``MyNumberCard``; the terminal reads the certificate, gets 照合番号B by OCR from the
rendered card front (``testbed.card_front``), verifies it on the card, reads the photo, runs
``check_face`` with ``OpenCVCamera`` on a video FILE of the same person (``obama2`` clip), signs the
attestation with its key registered at the server (``add_terminal``) and sends it with
``CardClient`` to ``create_app`` (TestClient transport). The server answers ``auth_method: "face"``.

Refusals: another person's clip → ``no_match`` and a still image → ``liveness_failed``, both at the
terminal with nothing sent; an attestation signed by an unregistered key → ``attestation_invalid``.
The card is linked first (初回登録 with the PIN through PC/SC). Clips are built once per module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from clinic_terminal.card import MyNumberCard
from clinic_terminal.card.pyscard_transport import PyscardTransport
from clinic_terminal.client import CardClient, ServerError
from clinic_terminal.face import FaceCheckResult, OpenCVCamera, attestation_claims, check_face
from clinic_terminal.ocr import collation_b_from_front
from schemas.attestation import generate_terminal_key, public_key_pem, sign_attestation
from schemas.eligibility import EligibilityResult
from shikaku_server.auth.service import add_terminal
from shikaku_server.consent.models import Visit
from shikaku_server.database import transaction
from testbed.card_emulator import MyNumberCardEmulator, assert_no_violations, build_card
from testbed.card_front import BGR, render_card_front
from testbed.faces import card_photo_jp2, natural_frames, static_frames, write_clip
from testbed.pki import TestCA
from testbed.vpcd_bridge import VpcdBridge
from tests.conftest import FACILITY_CODE
from tests.e2e.card_steps import CARD_FACTS, PIN, RecordingTransport
from tests.e2e.test_pcsc_to_server import link_card
from tests.factories import eligibility_csv, person
from tests.integration.test_eligibility_api import upload

pytestmark = [pytest.mark.pcsc, pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

TERMINAL_ID = "kiosk-1"
SECURITY_CODE = "4721"
EXPIRY = CARD_FACTS.birth_date.replace(year=2034)  # the certificate's and the card's expiry
#: 1980-04-01 → 昭和55年 → 550401; expiry year 2034; the security code printed on the front
COLLATION_B = "550401" + "2034" + SECURITY_CODE


@dataclass(frozen=True)
class Media:
    card_photo: bytes
    front: BGR
    same_person: Path
    other_person: Path
    still: Path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """The card photo, the card front as the terminal's camera sees it, and three camera clips."""
    clips = tmp_path_factory.mktemp("clips")
    return Media(
        card_photo=card_photo_jp2("obama.jpg"),
        front=render_card_front(birth_date=CARD_FACTS.birth_date, expiry=EXPIRY, security_code=SECURITY_CODE,
                                name=CARD_FACTS.name, rotation=3.0, noise=5.0, blur=0.8, seed=7),
        same_person=write_clip(natural_frames("obama2.jpg"), clips / "obama2"),
        other_person=write_clip(natural_frames("biden.jpg"), clips / "biden"),
        still=write_clip(static_frames("obama2.jpg"), clips / "still"),
    )


@pytest.fixture(scope="module")
def terminal_key() -> ec.EllipticCurvePrivateKey:
    return generate_terminal_key()


class BodyRecordingTransport(RecordingTransport):
    """Also keeps each request's JSON body (to check what the terminal sent)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        super().__init__(inner)
        self.bodies: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        self.bodies.append(json.loads(content) if content else {})
        return super().handle_request(request)


@pytest.fixture
def wire(client: TestClient) -> BodyRecordingTransport:
    """Replaces the suite's ``wire``: the conftest's ``server`` then sends through this one."""
    return BodyRecordingTransport(client._transport)


@pytest.fixture
def linked_card(
    vpcd_bridge: VpcdBridge,
    client: TestClient,
    tokens: dict[str, str],
    session_factory: Any,
    test_ca: TestCA,
    server: CardClient,
    wire: BodyRecordingTransport,
    media: Media,
    terminal_key: ec.EllipticCurvePrivateKey,
) -> Iterator[MyNumberCardEmulator]:
    """山田 太郎 insured; the terminal registered; his card (with photo) linked by PIN, then placed again."""
    assert upload(client, tokens["insurer"], eligibility_csv([person()]))["accepted"] == 1
    with transaction(session_factory) as s:
        add_terminal(s, terminal_id=TERMINAL_ID, facility_code=FACILITY_CODE,
                     public_key_pem=public_key_pem(terminal_key).decode())
    card = build_card(test_ca, pin=PIN, facts=CARD_FACTS, collation_b=COLLATION_B, photo_jp2=media.card_photo,
                      not_after=EXPIRY)
    vpcd_bridge.insert(card)
    assert link_card(vpcd_bridge.reader_name, server).status == "linked"
    vpcd_bridge.remove()
    vpcd_bridge.insert(card)  # the next visit
    wire.requests.clear()
    wire.bodies.clear()
    yield card
    assert_no_violations(card)
    assert card.state.collation_b_tries_left == 10  # the OCR never cost a try


# ---------------------------------------------------------------- the terminal's side


def read_card_for_face(reader: str, front: BGR) -> tuple[bytes, bytes]:
    """Certificate (no PIN) and the card-face photo, unlocked by 照合番号B read from the front."""
    with PyscardTransport(reader) as transport:
        card = MyNumberCard(transport)
        certificate = card.read_auth_certificate()
        collation_b_from_front(front, card)
        photo = card.read_face_photo()
    return certificate, photo


def face_check(
    reader: str,
    server: CardClient,
    media: Media,
    clip: Path,
    key: ec.EllipticCurvePrivateKey,
) -> EligibilityResult | FaceCheckResult:
    """The kiosk's face path: a refused check is returned as is and nothing goes to the server."""
    certificate, photo = read_card_for_face(reader, media.front)
    result = check_face(photo, OpenCVCamera(str(clip)))
    del photo
    if not result.accepted:
        return result
    challenge = server.challenge()
    claims = attestation_claims(result, challenge_id=challenge.challenge_id, certificate_der=certificate,
                                facility_code=FACILITY_CODE, terminal_id=TERMINAL_ID)
    return server.by_card(challenge.challenge_id, certificate,
                          attestation=sign_attestation(claims, key, TERMINAL_ID))


# ---------------------------------------------------------------- the done-criterion


def test_face_path_through_pcsc_returns_eligibility(
    vpcd_bridge: VpcdBridge,
    linked_card: MyNumberCardEmulator,
    server: CardClient,
    wire: BodyRecordingTransport,
    media: Media,
    terminal_key: ec.EllipticCurvePrivateKey,
    session_factory: Any,
) -> None:
    started = time.perf_counter()
    result = face_check(vpcd_bridge.reader_name, server, media, media.same_person, terminal_key)
    elapsed = time.perf_counter() - started
    assert isinstance(result, EligibilityResult), result
    assert result.usable and result.validity == 1 and result.query_kind == "card"
    assert result.insured is not None and result.insured.name == "山田 太郎"
    assert wire.requests == ["POST /v1/card/challenges", "POST /v1/eligibility/by-card"]
    assert elapsed < 20, f"the face path took {elapsed:.1f} s"
    # what went over the wire: auth_method "face" and the attestation, no image, no 照合番号B
    body = wire.bodies[-1]
    assert body["auth_method"] == "face" and body["attestation"] and "signature" not in body
    assert COLLATION_B not in json.dumps(wire.bodies)
    # the server recorded the visit as a face check
    with transaction(session_factory) as s:
        visit = s.get(Visit, result.visit_id)
        assert visit is not None and visit.auth_method == "face"


def test_another_person_is_refused_at_the_terminal(
    vpcd_bridge: VpcdBridge, linked_card: MyNumberCardEmulator, server: CardClient, wire: BodyRecordingTransport,
    media: Media, terminal_key: ec.EllipticCurvePrivateKey,
) -> None:
    result = face_check(vpcd_bridge.reader_name, server, media, media.other_person, terminal_key)
    assert isinstance(result, FaceCheckResult)
    assert (result.accepted, result.match, result.reason) == (False, False, "no_match")
    assert wire.requests == []


def test_a_still_image_fails_liveness(
    vpcd_bridge: VpcdBridge, linked_card: MyNumberCardEmulator, server: CardClient, wire: BodyRecordingTransport,
    media: Media, terminal_key: ec.EllipticCurvePrivateKey,
) -> None:
    result = face_check(vpcd_bridge.reader_name, server, media, media.still, terminal_key)
    assert isinstance(result, FaceCheckResult)
    assert (result.accepted, result.liveness, result.reason) == (False, False, "liveness_failed")
    assert wire.requests == []


def test_an_attestation_from_an_unregistered_key_is_refused(
    vpcd_bridge: VpcdBridge, linked_card: MyNumberCardEmulator, server: CardClient, wire: BodyRecordingTransport,
    media: Media,
) -> None:
    forger = generate_terminal_key()  # claims to be kiosk-1, but is not its registered key
    with pytest.raises(ServerError) as info:
        face_check(vpcd_bridge.reader_name, server, media, media.same_person, forger)
    assert info.value.code == "attestation_invalid"
    assert wire.requests == ["POST /v1/card/challenges", "POST /v1/eligibility/by-card"]
