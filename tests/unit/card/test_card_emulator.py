"""The emulator answers the real APDUs with the real status words."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from testbed.card_emulator import (
    FOREIGN_CARD_ATR,
    JPKI_AID,
    KENKAKU_AID,
    KENMEN_AID,
    MY_NUMBER_CARD_ATR,
    CardViolationError,
    ForeignCardEmulator,
    MyNumberCardEmulator,
    assert_no_violations,
)

DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def sel_ap(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid


def sel_ef(ef: int) -> bytes:
    return bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + ef.to_bytes(2, "big")


def read(offset: int, le: int) -> bytes:
    return bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le])


def verify(secret: bytes = b"") -> bytes:
    return bytes([0x00, 0x20, 0x00, 0x80]) + (bytes([len(secret)]) + secret if secret else b"")


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def send(card: MyNumberCardEmulator, *apdus: bytes) -> bytes:
    """Send in order; every response but the last must be 90 00."""
    response = b""
    for index, apdu in enumerate(apdus):
        response = card.process_apdu(apdu)
        if index < len(apdus) - 1:
            assert sw(response) == 0x9000, apdu.hex()
    return response


def test_atr_is_the_my_number_card_atr(card: MyNumberCardEmulator) -> None:
    assert card.atr == MY_NUMBER_CARD_ATR == bytes.fromhex("3BE000FF8131FE4514")


@pytest.mark.parametrize("aid", [JPKI_AID, KENKAKU_AID, KENMEN_AID])
def test_select_known_application(card: MyNumberCardEmulator, aid: bytes) -> None:
    assert sw(card.process_apdu(sel_ap(aid))) == 0x9000


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        (sel_ap(bytes.fromhex("A000000003000000")), 0x6A82),  # unknown application
        (sel_ef(0x000A), 0x6A82),  # EF with no application selected
        (bytes.fromhex("00A4000C023F00"), 0x6A86),  # select by path: not offered
        (bytes.fromhex("00A4040C0AD392F0"), 0x6700),  # Lc longer than the data
        (bytes.fromhex("0084000008"), 0x6D00),  # GET CHALLENGE: unknown INS
        (bytes.fromhex("A0A4040C02AAAA"), 0x6E00),  # unknown CLA
        (bytes.fromhex("80B0000010"), 0x6E00),  # READ BINARY with the proprietary CLA
        (bytes.fromhex("00B0"), 0x6700),  # shorter than a header
        (bytes.fromhex("00B00000000100"), 0x6700),  # extended length: not supported
    ],
)
def test_malformed_or_unknown_commands(card: MyNumberCardEmulator, apdu: bytes, expected: int) -> None:
    assert sw(card.process_apdu(apdu)) == expected


def test_unknown_ef_in_application(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x1234))) == 0x6A82


def test_read_certificate_in_chunks(card: MyNumberCardEmulator) -> None:
    der = card.profile.certificate_der
    first = send(card, sel_ap(JPKI_AID), sel_ef(0x000A), read(0, 0))  # Le 00 = 256 bytes
    assert sw(first) == 0x9000
    assert first[:-2] == der[:256]
    assert (first[2] << 8 | first[3]) + 4 == len(der)
    tail_offset = len(der) - 10
    tail = card.process_apdu(read(tail_offset, 0x20))
    assert sw(tail) == 0x6282  # end of file before Le bytes
    assert tail[:-2] == der[tail_offset:]
    assert sw(card.process_apdu(read(len(der) + 1, 1))) == 0x6B00
    assert sw(card.process_apdu(bytes.fromhex("00B08A0010"))) == 0x6A86  # short EF id addressing
    assert sw(card.process_apdu(bytes.fromhex("00B00000"))) == 0x6700  # no Le


def test_read_ca_certificate_and_token(card: MyNumberCardEmulator) -> None:
    ca = send(card, sel_ap(JPKI_AID), sel_ef(0x000B), read(0, 4))
    assert ca[:-2] == card.profile.ca_certificate_der[:4]
    token = send(card, sel_ef(0x0006), read(0, 15))
    assert token == b"JPKIAPICCTOKEN2\x90\x00"


def test_read_binary_needs_a_readable_current_ef(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), read(0, 4))) == 0x6986
    assert sw(send(card, sel_ef(0x0017), read(0, 4))) == 0x6981  # the key is not readable
    assert sw(send(card, sel_ef(0x0018), read(0, 4))) == 0x6981


def test_verify_status_wrong_and_blocked(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x0018), verify())) == 0x63C3
    assert sw(card.process_apdu(verify(b"0000"))) == 0x63C2
    assert sw(card.process_apdu(verify())) == 0x63C2  # asking does not use a try
    assert sw(card.process_apdu(verify(b"0000"))) == 0x63C1
    assert sw(card.process_apdu(verify(b"0000"))) == 0x63C0
    assert sw(card.process_apdu(verify())) == 0x6984
    assert sw(card.process_apdu(verify(b"1234"))) == 0x6984  # even the right PIN
    assert card.state.auth_pin_tries_left == 0
    assert card.state.kenkaku_pin_tries_left == 3  # separate counter


def test_right_pin_resets_the_counter(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x0018), verify(b"9999"))) == 0x63C2
    assert sw(card.process_apdu(verify(b"1234"))) == 0x9000
    assert sw(card.process_apdu(verify())) == 0x9000  # verified in this session
    assert card.state.auth_pin_tries_left == 3


def test_verify_needs_a_pin_ef_and_p2_80(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x000A), verify(b"1234"))) == 0x6986
    assert sw(send(card, sel_ef(0x0018), bytes.fromhex("0020000104") + b"1234")) == 0x6A86


def _digest_info(message: bytes) -> bytes:
    return DIGEST_INFO_PREFIX + hashlib.sha256(message).digest()


def _sign_apdu(digest_info: bytes) -> bytes:
    return bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00"


def test_sign_after_pin_gives_a_pkcs1_signature(card: MyNumberCardEmulator) -> None:
    nonce = b"\x01" * 32
    send(card, sel_ap(JPKI_AID), sel_ef(0x0018), verify(b"1234"))
    response = send(card, sel_ef(0x0017), _sign_apdu(_digest_info(nonce)))
    assert sw(response) == 0x9000
    signature = response[:-2]
    assert len(signature) == 256
    public_key = x509.load_der_x509_certificate(card.profile.certificate_der).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, nonce, padding.PKCS1v15(), hashes.SHA256())


def test_sign_refused_without_pin_or_key_ef(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x0017), _sign_apdu(_digest_info(b"x")))) == 0x6982
    send(card, sel_ef(0x0018), verify(b"1234"))
    assert sw(send(card, sel_ef(0x000A), _sign_apdu(_digest_info(b"x")))) == 0x6986
    assert sw(send(card, sel_ef(0x0017), _sign_apdu(b"\x00" * 246))) == 0x6700  # longer than k - 11
    assert sw(card.process_apdu(bytes.fromhex("802A0081") + bytes([51]) + _digest_info(b"x"))) == 0x6A86


def test_power_cycle_clears_verification_but_keeps_counters(card: MyNumberCardEmulator) -> None:
    send(card, sel_ap(JPKI_AID), sel_ef(0x0018), verify(b"0000"))
    send(card, sel_ap(JPKI_AID), sel_ef(0x0018), verify(b"1234"))
    send(card, sel_ap(JPKI_AID), sel_ef(0x0018), verify(b"0000"))
    card.power_off()
    card.power_on()
    assert sw(card.process_apdu(sel_ef(0x0018))) == 0x6A82  # nothing selected any more
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x0017), _sign_apdu(_digest_info(b"x")))) == 0x6982
    assert card.state.auth_pin_tries_left == 2


def test_basic_facts_need_the_kenkaku_pin(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(KENKAKU_AID), sel_ef(0x0002), read(0, 0))) == 0x6982
    facts = send(card, sel_ef(0x0011), verify(b"1234"), sel_ef(0x0002), read(0, 0))
    assert facts[:2] == b"\xff\x20"
    assert "試験 太郎".encode() in facts


def test_face_data_needs_collation_b(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(KENMEN_AID), sel_ef(0x0002), read(0, 0))) == 0x6982
    send(card, sel_ef(0x0012), verify(card.profile.collation_b.encode()))
    head = send(card, sel_ef(0x0002), read(0, 0))
    assert head[:2] == b"\xff\x40"


def test_collation_b_locks_after_ten_wrong_tries(card: MyNumberCardEmulator) -> None:
    send(card, sel_ap(KENMEN_AID), sel_ef(0x0012))
    answers = [sw(card.process_apdu(verify(b"00000000000000"))) for _ in range(10)]
    assert answers == [0x63C0 | n for n in range(9, -1, -1)]
    assert sw(card.process_apdu(verify(card.profile.collation_b.encode()))) == 0x6984


def test_selecting_the_my_number_ef_is_recorded_and_refused(card: MyNumberCardEmulator) -> None:
    response = send(card, sel_ap(KENKAKU_AID), sel_ef(0x0001))
    assert sw(response) == 0x6982
    assert len(card.violations) == 1
    with pytest.raises(CardViolationError, match="My Number EF"):
        assert_no_violations(card)
    card.violations.clear()  # the make_card guard would fail this test otherwise


def test_the_my_number_ef_of_other_applications_is_just_missing(card: MyNumberCardEmulator) -> None:
    assert sw(send(card, sel_ap(JPKI_AID), sel_ef(0x0001))) == 0x6A82
    assert card.violations == []


def test_foreign_card_has_no_jpki_application() -> None:
    foreign = ForeignCardEmulator()
    assert foreign.atr == FOREIGN_CARD_ATR != MY_NUMBER_CARD_ATR
    assert sw(foreign.process_apdu(sel_ap(JPKI_AID))) == 0x6A82
    assert sw(foreign.process_apdu(read(0, 0))) == 0x6D00
