"""``MyNumberCard`` over the in-process transport: every path and every error state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509

from clinic_terminal.card import (
    BasicFacts,
    CardError,
    CardProtocolError,
    CardRemovedError,
    CardTransport,
    CollationBFormatError,
    CollationBLockedError,
    CollationBWrongError,
    ForbiddenFileError,
    MyNumberCard,
    NoCardError,
    NoReaderError,
    NotMyNumberCardError,
    PinBlockedError,
    PinFormatError,
    PinWrongError,
)
from clinic_terminal.card.inprocess import InProcessReader, InProcessTransport
from clinic_terminal.card.reader import ALLOWED_FILES, KENKAKU_AID
from shikaku_server.card.verify import verify_pin_signature
from testbed.card_emulator import BasicFactsRecord, ForeignCardEmulator, MyNumberCardEmulator
from testbed.pki import TestCA

from .conftest import MakeCard

NONCE = bytes(range(32))


def _selects_my_number_ef(log: list[bytes]) -> bool:
    aid = b""
    for apdu in log:
        if apdu[:4] == bytes.fromhex("00A4040C"):
            aid = apdu[5:]
        if apdu[:4] == bytes.fromhex("00A4020C") and apdu[5:7] == b"\x00\x01" and aid == KENKAKU_AID:
            return True
    return False


def test_in_process_transport_is_a_card_transport(card: MyNumberCardEmulator) -> None:
    transport: CardTransport = InProcessTransport(card)
    with transport as t:
        assert t.atr == card.atr
        assert t.transmit(bytes.fromhex("00A4040C0AD392F000260100000001")) == (b"", 0x9000)


def test_read_auth_certificate(my_number_card: MyNumberCard, card: MyNumberCardEmulator) -> None:
    der = my_number_card.read_auth_certificate()
    assert der == card.profile.certificate_der
    assert len(der) > 256  # read in several chunks
    subject = x509.load_der_x509_certificate(der).subject
    assert {attr.oid._name for attr in subject} == {"countryName", "commonName"}


def test_read_ca_certificate(my_number_card: MyNumberCard, test_ca: TestCA) -> None:
    assert my_number_card.read_ca_certificate() == test_ca.der


def test_check_jpki_accepts_a_my_number_card(my_number_card: MyNumberCard) -> None:
    my_number_card.check_jpki()


def test_pin_sign_verifies_with_the_certificate(my_number_card: MyNumberCard) -> None:
    cert = x509.load_der_x509_certificate(my_number_card.read_auth_certificate())
    assert my_number_card.auth_pin_tries_left() == 3
    signature = my_number_card.authenticate("1234", NONCE)
    verify_pin_signature(cert, NONCE, signature)  # raises if it does not verify


def test_sign_without_pin_is_refused(my_number_card: MyNumberCard) -> None:
    with pytest.raises(CardProtocolError) as info:
        my_number_card.sign_challenge(NONCE)
    assert info.value.sw == 0x6982


def test_wrong_pin_counts_down_then_blocks(my_number_card: MyNumberCard) -> None:
    for left in (2, 1):
        with pytest.raises(PinWrongError) as info:
            my_number_card.verify_auth_pin("0000")
        assert info.value.tries_left == left
        assert info.value.code == "pin_wrong"
        assert my_number_card.auth_pin_tries_left() == left
    with pytest.raises(PinBlockedError):
        my_number_card.verify_auth_pin("0000")
    assert my_number_card.auth_pin_tries_left() == 0
    with pytest.raises(PinBlockedError):
        my_number_card.verify_auth_pin("1234")  # 69 84 even for the right PIN
    with pytest.raises(PinBlockedError):
        my_number_card.sign_challenge(NONCE)


def test_right_pin_restores_the_tries(my_number_card: MyNumberCard) -> None:
    with pytest.raises(PinWrongError):
        my_number_card.verify_auth_pin("0000")
    my_number_card.verify_auth_pin("1234")
    assert my_number_card.auth_pin_tries_left() == 3


def test_pin_lockout_persists_across_sessions(slot: InProcessReader, card: MyNumberCardEmulator) -> None:
    for expected in (PinWrongError, PinWrongError, PinBlockedError):
        with slot.connect() as transport, pytest.raises(expected):  # a new session each time
            MyNumberCard(transport).verify_auth_pin("9999")
    slot.remove()
    slot.insert(card)  # taken out and put back: still blocked
    with slot.connect() as transport:
        reader = MyNumberCard(transport)
        assert reader.auth_pin_tries_left() == 0
        with pytest.raises(PinBlockedError):
            reader.verify_auth_pin("1234")


def test_verification_does_not_outlive_the_session(slot: InProcessReader) -> None:
    with slot.connect() as transport:
        MyNumberCard(transport).verify_auth_pin("1234")
    with slot.connect() as transport, pytest.raises(CardProtocolError):
        MyNumberCard(transport).sign_challenge(NONCE)


@pytest.mark.parametrize("pin", ["123", "12345", "abcd", "１２３４", ""])
def test_malformed_pin_is_refused_before_sending(
    my_number_card: MyNumberCard, card: MyNumberCardEmulator, pin: str
) -> None:
    with pytest.raises(PinFormatError):
        my_number_card.verify_auth_pin(pin)
    with pytest.raises(PinFormatError):
        my_number_card.read_basic_facts(pin)
    assert card.command_log == []
    assert card.state.auth_pin_tries_left == 3


def test_read_basic_facts(my_number_card: MyNumberCard) -> None:
    facts = my_number_card.read_basic_facts("1234")
    assert facts == BasicFacts(
        name="試験 太郎",
        address="東京都千代田区霞が関一丁目2番2号",
        birth_date=dt.date(1980, 4, 1),
        sex="1",
    )


def test_basic_facts_keep_every_character(make_card: MakeCard) -> None:
    record = BasicFactsRecord(
        name="𠮷田 葛\U000e0100子",  # CJK extension B and an ideographic variation selector
        address="北海道札幌市中央区北1条西2丁目" * 8,  # long enough for 81/82 TLV lengths
        birth_date=dt.date(1950, 2, 28),
        sex="3",
    )
    with InProcessTransport(make_card(facts=record)) as transport:
        facts = MyNumberCard(transport).read_basic_facts("1234")
    assert (facts.name, facts.address, facts.birth_date, facts.sex) == (
        record.name,
        record.address,
        record.birth_date,
        "3",
    )


def test_basic_facts_wrong_pin(my_number_card: MyNumberCard, card: MyNumberCardEmulator) -> None:
    with pytest.raises(PinWrongError) as info:
        my_number_card.read_basic_facts("4321")
    assert info.value.tries_left == 2
    assert card.state.kenkaku_pin_tries_left == 2
    assert card.state.auth_pin_tries_left == 3


def test_face_photo_after_collation_b(my_number_card: MyNumberCard, photo_jp2: bytes) -> None:
    with pytest.raises(CardProtocolError) as info:
        my_number_card.read_face_photo()
    assert info.value.sw == 0x6982
    my_number_card.verify_collation_b("55040120341234")
    photo = my_number_card.read_face_photo()
    assert photo == photo_jp2
    assert photo[:12] == bytes.fromhex("0000000C6A5020200D0A870A")  # JPEG 2000 signature box


def test_card_without_photo(make_card: MakeCard) -> None:
    with InProcessTransport(make_card(photo_jp2=None)) as transport:
        reader = MyNumberCard(transport)
        reader.verify_collation_b("55040120341234")
        with pytest.raises(CardProtocolError, match="no photo"):
            reader.read_face_photo()


def test_collation_b_locks_at_ten_and_stays_locked(slot: InProcessReader) -> None:
    with slot.connect() as transport:
        reader = MyNumberCard(transport)
        assert reader.collation_b_tries_left() == 10
        for left in range(9, 0, -1):
            with pytest.raises(CollationBWrongError) as info:
                reader.verify_collation_b("11111111111111")
            assert info.value.tries_left == left
        with pytest.raises(CollationBLockedError):
            reader.verify_collation_b("11111111111111")
    with slot.connect() as transport:
        reader = MyNumberCard(transport)
        assert reader.collation_b_tries_left() == 0
        with pytest.raises(CollationBLockedError):
            reader.verify_collation_b("55040120341234")
        reader.verify_auth_pin("1234")  # the PIN path still works


@pytest.mark.parametrize("code", ["5504012034123", "550401203412345", "5504012034123a"])
def test_malformed_collation_b(my_number_card: MyNumberCard, card: MyNumberCardEmulator, code: str) -> None:
    with pytest.raises(CollationBFormatError):
        my_number_card.verify_collation_b(code)
    assert card.command_log == []


def test_not_a_my_number_card() -> None:
    foreign = ForeignCardEmulator()
    with InProcessTransport(foreign) as transport:
        reader = MyNumberCard(transport)
        with pytest.raises(NotMyNumberCardError) as info:
            reader.read_auth_certificate()
        with pytest.raises(NotMyNumberCardError):
            reader.check_jpki()
    assert info.value.code == "not_my_number_card"


def test_no_card_on_the_reader() -> None:
    with pytest.raises(NoCardError) as info:
        InProcessReader().connect()
    assert info.value.code == "no_card"


@pytest.mark.parametrize("after", [0, 2, 3, 5])
def test_card_removed_mid_read(slot: InProcessReader, after: int) -> None:
    with slot.connect() as transport:
        slot.remove_after(after)  # SELECT AP, SELECT EF, READ, READ, ...
        with pytest.raises(CardRemovedError) as info:
            MyNumberCard(transport).read_auth_certificate()
    assert info.value.code == "card_removed"
    assert slot.card is None
    with pytest.raises(NoCardError):
        slot.connect()


def test_card_pulled_out_after_connecting(slot: InProcessReader) -> None:
    with slot.connect() as transport:
        slot.remove()
        with pytest.raises(CardRemovedError):
            MyNumberCard(transport).read_auth_certificate()


def test_closed_transport_refuses(card: MyNumberCardEmulator) -> None:
    transport = InProcessTransport(card)
    transport.close()
    with pytest.raises(CardRemovedError):
        transport.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))


# -- the My Number EF is out of reach -------------------------------------------------------------


def test_allow_list_has_no_my_number_ef() -> None:
    assert (KENKAKU_AID, 0x0001) not in ALLOWED_FILES


def test_selecting_the_my_number_ef_raises_before_sending(
    my_number_card: MyNumberCard, card: MyNumberCardEmulator
) -> None:
    with pytest.raises(ForbiddenFileError):
        my_number_card._select_file(KENKAKU_AID, 0x0001)
    my_number_card._select_application(KENKAKU_AID)
    sent = len(card.command_log)
    with pytest.raises(ForbiddenFileError) as info:
        my_number_card._send(bytes.fromhex("00A4020C020001"))
    assert info.value.code == "forbidden_file"
    assert len(card.command_log) == sent  # nothing reached the card
    assert card.violations == []


@pytest.mark.parametrize(
    "apdu",
    [
        "00A4020C020001",  # SELECT EF 0001 in the 入力補助AP (selected below)
        "00A4080C04D3921000",  # select by path
        "00A4040C0AA0000000030000000000",  # an application not on the list
        "00B0810000",  # READ BINARY via short EF identifier 1
        "00B2010400",  # READ RECORD
        "00CA010100",  # GET DATA
    ],
)
def test_guard_refuses_other_access(my_number_card: MyNumberCard, card: MyNumberCardEmulator, apdu: str) -> None:
    my_number_card._select_application(KENKAKU_AID)
    sent = len(card.command_log)
    with pytest.raises(ForbiddenFileError):
        my_number_card._send(bytes.fromhex(apdu))
    assert len(card.command_log) == sent


def test_full_flow_never_touches_the_my_number_ef(my_number_card: MyNumberCard, card: MyNumberCardEmulator) -> None:
    my_number_card.check_jpki()
    my_number_card.read_auth_certificate()
    my_number_card.read_ca_certificate()
    my_number_card.authenticate("1234", NONCE)
    my_number_card.read_basic_facts("1234")
    my_number_card.verify_collation_b("55040120341234")
    my_number_card.read_face_photo()
    assert card.violations == []
    assert not _selects_my_number_ef(card.command_log)
    assert card.profile.my_number.encode() not in b"".join(card.command_log)


# -- transport-level details ----------------------------------------------------------------------


class FunctionTransport:
    """A transport that answers with a plain function (for status words the emulator never uses)."""

    def __init__(self, handler: Callable[[bytes], tuple[bytes, int]]) -> None:
        self.handler = handler
        self.sent: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return b"\x3b"

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return self.handler(apdu)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> FunctionTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_get_response_and_wrong_le_are_followed() -> None:
    signature = bytes(range(256))

    def handler(apdu: bytes) -> tuple[bytes, int]:
        if apdu[:2] == b"\x80\x2a":
            return signature[:100], 0x6100  # 61 00: 256 more bytes... we send the rest
        if apdu[:2] == b"\x00\xc0":
            return signature[100:], 0x9000
        if apdu[:2] == b"\x00\x20":
            return b"", 0x9000
        return b"", 0x9000

    transport = FunctionTransport(handler)
    reader = MyNumberCard(transport)
    assert reader.authenticate("1234", NONCE) == signature
    assert transport.sent[-1] == bytes.fromhex("00C0000000")

    def wrong_le(apdu: bytes) -> tuple[bytes, int]:
        if apdu == bytes.fromhex("00B0000000"):
            return b"", 0x6C04
        if apdu[:2] == b"\x00\xb0":
            return b"\x30\x82\x00\x00", 0x9000
        return b"", 0x9000

    transport = FunctionTransport(wrong_le)
    assert MyNumberCard(transport).read_auth_certificate() == b"\x30\x82\x00\x00"
    assert transport.sent[-1] == bytes.fromhex("00B0000004")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x04\x82\x00\x02ab", "DER SEQUENCE"),
        (b"\x30\x83\x00\x00\x00", "length byte"),
    ],
)
def test_malformed_certificate_file(content: bytes, match: str) -> None:
    def handler(apdu: bytes) -> tuple[bytes, int]:
        if apdu[:2] == b"\x00\xb0":
            offset = apdu[2] << 8 | apdu[3]
            chunk = content[offset : offset + (apdu[4] or 256)]
            return chunk, 0x9000 if len(chunk) == (apdu[4] or 256) else 0x6282
        return b"", 0x9000

    with pytest.raises(CardProtocolError, match=match):
        MyNumberCard(FunctionTransport(handler)).read_auth_certificate()


def test_truncated_file_is_a_protocol_error() -> None:
    def handler(apdu: bytes) -> tuple[bytes, int]:
        if apdu[:2] == b"\x00\xb0":
            return (b"\x30\x82\x01\x00" + b"\x00" * 10, 0x6282) if apdu[2:4] == b"\x00\x00" else (b"", 0x6282)
        return b"", 0x9000

    with pytest.raises(CardProtocolError, match="no data"):
        MyNumberCard(FunctionTransport(handler)).read_auth_certificate()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoReaderError(), "no_reader"),
        (NoCardError(), "no_card"),
        (CardRemovedError(), "card_removed"),
        (NotMyNumberCardError(), "not_my_number_card"),
        (PinWrongError(2), "pin_wrong"),
        (PinBlockedError(), "pin_blocked"),
        (CollationBWrongError(5), "collation_b_wrong"),
        (CollationBLockedError(), "collation_b_locked"),
        (CardProtocolError(sw=0x6F00), "card_protocol"),
    ],
)
def test_errors_have_stable_codes_and_bilingual_messages(error: CardError, code: str) -> None:
    assert error.code == code
    assert error.message_ja in str(error)
    assert error.message_en in str(error)
    assert error.message_ja != error.message_en
