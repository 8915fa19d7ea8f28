"""The face check end to end through InMemoryCamera and OpenCVCamera (dlib: seconds per check)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from clinic_terminal.face import (
    REASONS,
    CameraError,
    CardPhotoError,
    FaceCheckResult,
    FaceSettings,
    InMemoryCamera,
    OpenCVCamera,
    check_face,
    decode_card_photo,
)
from clinic_terminal.face.camera import Frame
from testbed import faces as tf


@pytest.fixture(scope="module")
def genuine_result(
    card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], face_settings: FaceSettings
) -> FaceCheckResult:
    return check_face(card_photos["obama.jpg"], InMemoryCamera(clip_frames["genuine"]), settings=face_settings)


def test_card_photo_is_greyscale_portrait_jpeg2000(card_photos: dict[str, bytes]) -> None:
    data = card_photos["obama.jpg"]
    assert data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L"
        assert image.width < image.height


@pytest.mark.slow
def test_genuine_person_is_accepted(genuine_result: FaceCheckResult, face_settings: FaceSettings) -> None:
    assert genuine_result.accepted
    assert genuine_result.match and genuine_result.liveness
    assert genuine_result.reason is None
    assert genuine_result.distance is not None
    assert genuine_result.distance <= face_settings.threshold < 0.6
    assert genuine_result.frames_used == 30
    assert genuine_result.elapsed_ms > 0


def test_result_holds_scalars_only(genuine_result: FaceCheckResult) -> None:
    text = repr(genuine_result)
    assert "array" not in text
    assert "[" not in text
    for item in dataclasses.fields(genuine_result):
        assert isinstance(getattr(genuine_result, item.name), bool | int | float | str | None)
    assert set(genuine_result.to_json_dict()) >= {"match", "distance", "threshold", "liveness", "elapsed_ms"}


@pytest.mark.slow
def test_impostor_is_refused(
    card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], face_settings: FaceSettings
) -> None:
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(clip_frames["impostor"]), settings=face_settings)
    assert not result.match
    assert result.reason == "no_match"
    assert result.distance is not None and result.distance > 0.6
    assert not result.accepted


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["static", "rigid"])
def test_still_image_fails_liveness(
    kind: str, card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], face_settings: FaceSettings
) -> None:
    # the photo IS the card holder: only liveness stands between it and acceptance
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(clip_frames[kind]), settings=face_settings)
    assert result.match
    assert not result.liveness
    assert result.reason == "liveness_failed"
    assert not result.accepted


def test_empty_room_is_no_face(
    card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], face_settings: FaceSettings
) -> None:
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(clip_frames["empty_room"]), settings=face_settings)
    assert result.reason == "no_face"
    assert result.distance is None
    assert not result.accepted


def test_two_people_are_refused(
    card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], face_settings: FaceSettings
) -> None:
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(clip_frames["two_people"]), settings=face_settings)
    assert result.reason == "several_faces"
    assert not result.accepted


@pytest.mark.slow
def test_stricter_threshold_refuses_the_genuine_pair(
    genuine_result: FaceCheckResult,
    card_photos: dict[str, bytes],
    clip_frames: dict[str, list[Frame]],
    face_settings: FaceSettings,
) -> None:
    assert genuine_result.distance is not None
    strict = round(genuine_result.distance - 0.05, 3)
    result = check_face(
        card_photos["obama.jpg"], InMemoryCamera(clip_frames["genuine"]), threshold=strict, settings=face_settings
    )
    assert result.threshold == strict
    assert result.reason == "no_match"


@pytest.mark.slow
def test_video_file_through_opencv_camera(
    card_photos: dict[str, bytes], clip_files: dict[str, Path], face_settings: FaceSettings
) -> None:
    result = check_face(
        card_photos["obama.jpg"], OpenCVCamera(str(clip_files["genuine"])), frames_n=24, settings=face_settings
    )
    assert result.accepted
    assert result.frames_used == 24


def test_missing_camera_is_camera_unavailable(card_photos: dict[str, bytes], tmp_path: Path) -> None:
    with pytest.raises(CameraError) as caught:
        check_face(card_photos["obama.jpg"], OpenCVCamera(str(tmp_path / "no-such-camera.avi")))
    assert caught.value.code == "camera_unavailable"


def test_camera_without_frames_is_camera_unavailable(card_photos: dict[str, bytes]) -> None:
    with pytest.raises(CameraError) as caught:
        check_face(card_photos["obama.jpg"], InMemoryCamera([]))
    assert caught.value.code == "camera_unavailable"


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 40])
def test_unreadable_card_photo(data: bytes) -> None:
    with pytest.raises(CardPhotoError) as caught:
        decode_card_photo(data)
    assert caught.value.code == "card_photo_unreadable"
    assert caught.value.__cause__ is None


def test_card_photo_without_face(clip_frames: dict[str, list[Frame]]) -> None:
    buffer = io.BytesIO()
    Image.fromarray(clip_frames["empty_room"][0]).save(buffer, format="PNG")
    with pytest.raises(CardPhotoError) as caught:
        check_face(buffer.getvalue(), InMemoryCamera(clip_frames["genuine"]))
    assert caught.value.code == "card_photo_unreadable"


def test_card_photo_in_other_formats_is_decoded() -> None:
    buffer = io.BytesIO()
    Image.new("L", (30, 40), 128).save(buffer, format="PNG")
    assert decode_card_photo(buffer.getvalue()).shape == (40, 30, 3)


def test_reason_codes_are_stable() -> None:
    assert REASONS == (
        "no_face",
        "several_faces",
        "no_match",
        "liveness_failed",
        "camera_unavailable",
        "card_photo_unreadable",
    )


def test_same_person_table() -> None:
    assert tf.same_person("obama.jpg", "obama2.jpg")
    assert not tf.same_person("obama.jpg", "biden.jpg")


def test_accepted_check_becomes_a_verifiable_attestation(genuine_result: FaceCheckResult) -> None:
    from clinic_terminal.face import attestation_claims
    from schemas.attestation import generate_terminal_key, public_key_pem, sign_attestation, verify_attestation

    key = generate_terminal_key()
    claims = attestation_claims(
        genuine_result,
        challenge_id="ch-9",
        certificate_der=b"DER",
        facility_code="0110113719",
        terminal_id="kiosk-1",
        now=1_790_000_000,
    )
    token = sign_attestation(claims, key, "kiosk-1")
    verified = verify_attestation(
        token,
        public_key_pem(key),
        expected_challenge_id="ch-9",
        expected_fingerprint=claims.certificate_fingerprint,
        expected_facility_code="0110113719",
        now=1_790_000_010,
    )
    assert verified.distance == pytest.approx(genuine_result.distance or 0.0)


def test_refused_check_cannot_be_attested() -> None:
    from clinic_terminal.face import attestation_claims

    refused = FaceCheckResult(True, 0.3, 0.5, False, "liveness_failed", 10, 30)
    with pytest.raises(ValueError, match="accepted"):
        attestation_claims(refused, challenge_id="c", certificate_der=b"d", facility_code="0110113719", terminal_id="t")


@pytest.mark.slow
def test_photo_taken_away_and_shown_again_is_not_a_blink(
    card_photos: dict[str, bytes], clip_frames: dict[str, list[Frame]], face_settings: FaceSettings
) -> None:
    still, empty = clip_frames["static"], clip_frames["empty_room"]
    frames = still[:10] + empty[:4] + still[10:26]
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(frames), settings=face_settings)
    assert result.reason == "liveness_failed"
    assert not result.accepted


def _leaning_in(n: int = 30, *, second_width: float, appears_at: int) -> list[Frame]:
    """The patient's face (200 px) alone, then from frame ``appears_at`` a second face of
    ``second_width`` px beside it (someone leaning in mid-capture)."""
    width, height = tf.FRAME_SIZE
    halves = []
    for name, face_width, cx in (("obama.jpg", 200.0, width * 0.3), ("biden.jpg", second_width, width * 0.78)):
        m = tf._placement(name, face_width, (cx, height * 0.45), tf.FACES_DIR)
        halves.append(
            cv2.warpAffine(tf._photo(name), m, tf.FRAME_SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        )
    split = round(width * 0.58)
    together = np.ascontiguousarray(np.concatenate([halves[0][:, :split], halves[1][:, split:]], axis=1))
    alone = np.ascontiguousarray(np.concatenate([halves[0][:, :split], np.full_like(halves[1][:, split:], 90)], axis=1))
    return [(together if i >= appears_at else alone).copy() for i in range(n)]


@pytest.mark.parametrize("second_width", [110.0, 140.0, 160.0, 170.0, 200.0])
def test_scaled_whole_frame_detection_judges_several_faces_as_full_resolution(second_width: float) -> None:
    """Whole-frame detections after the first run on the frame scaled down to a step of dlib's
    image pyramid: the same faces with the same box sizes as at full resolution, so the
    several-faces verdict (second face >= 0.7x the largest) does not change."""
    from clinic_terminal.face import matcher

    frame = _leaning_in(1, second_width=second_width, appears_at=0)[0]
    grey = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    full = matcher.find_faces(grey)
    assert len(full) == 2
    scale = matcher._full_scale(full[0])
    assert scale < 0.8  # really scaled down
    scaled = matcher.find_faces(grey, scale=scale)
    assert len(scaled) == 2
    ratio = FaceSettings().several_faces_ratio
    assert matcher._several_comparable(scaled, ratio) == matcher._several_comparable(full, ratio)
    for a, b in zip(sorted(full, key=lambda x: x[3]), sorted(scaled, key=lambda x: x[3]), strict=True):
        # the same boxes, mapped back to frame pixels
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 0.05 * (a[1] - a[3])


@pytest.mark.slow
@pytest.mark.parametrize("appears_at", [7, 20])
def test_someone_leaning_in_mid_capture_is_refused(
    card_photos: dict[str, bytes], face_settings: FaceSettings, appears_at: int
) -> None:
    """Whole-frame detection every 5th frame: a second face that appears by frame 20 of 30 is
    found by frame 20 and is then in every later frame (each is a whole-frame detection), a
    third of the frames: refused (with every 3rd frame, up to frame 21)."""
    frames = _leaning_in(30, second_width=170.0, appears_at=appears_at)
    result = check_face(card_photos["obama.jpg"], InMemoryCamera(frames), settings=face_settings)
    assert result.reason == "several_faces"
    assert not result.accepted
