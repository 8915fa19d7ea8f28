"""Reading a My Number card over any :class:`CardTransport`.

Only the files this terminal needs are reachable: every SELECT is checked against
:data:`ALLOWED_FILES` *before* it is sent, so the My Number EF (入力補助AP ``0001``) can never be
selected, and READ BINARY by short EF identifier (which would bypass SELECT) is refused too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Final

from clinic_terminal.card.errors import (
    CardError,
    CardProtocolError,
    CollationBFormatError,
    CollationBLockedError,
    CollationBWrongError,
    ForbiddenFileError,
    NotMyNumberCardError,
    PinBlockedError,
    PinFormatError,
    PinWrongError,
)
from clinic_terminal.card.models import BasicFacts
from clinic_terminal.card.tlv import parse_template, read_header
from clinic_terminal.card.transport import CardTransport

JPKI_AID: Final = bytes.fromhex("D392F000260100000001")
KENKAKU_AID: Final = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP
KENMEN_AID: Final = bytes.fromhex("D3921000310001010402")  # 券面AP

EF_AUTH_CERT: Final = 0x000A
EF_AUTH_CA: Final = 0x000B
EF_TOKEN: Final = 0x0006
EF_AUTH_KEY: Final = 0x0017
EF_AUTH_PIN: Final = 0x0018
EF_KENKAKU_PIN: Final = 0x0011
EF_BASIC_FACTS: Final = 0x0002
EF_COLLATION_B: Final = 0x0012
EF_FACE: Final = 0x0002

#: The only (application, EF) pairs this terminal may select. The My Number EF is not here.
ALLOWED_FILES: Final[frozenset[tuple[bytes, int]]] = frozenset(
    {
        (JPKI_AID, EF_AUTH_CERT),
        (JPKI_AID, EF_AUTH_CA),
        (JPKI_AID, EF_TOKEN),
        (JPKI_AID, EF_AUTH_KEY),
        (JPKI_AID, EF_AUTH_PIN),
        (KENKAKU_AID, EF_KENKAKU_PIN),
        (KENKAKU_AID, EF_BASIC_FACTS),
        (KENMEN_AID, EF_COLLATION_B),
        (KENMEN_AID, EF_FACE),
    }
)
ALLOWED_APPLICATIONS: Final = frozenset({JPKI_AID, KENKAKU_AID, KENMEN_AID})

JPKI_TOKEN: Final = b"JPKIAPICCTOKEN2"
#: DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO_PREFIX: Final = bytes.fromhex("3031300d060960864801650304020105000420")

SW_OK: Final = 0x9000
SW_EOF: Final = 0x6282
SW_SECURITY: Final = 0x6982
SW_BLOCKED: Final = 0x6984
SW_BLOCKED_ALT: Final = 0x6983
SW_NOT_FOUND: Final = 0x6A82

_MAX_OFFSET: Final = 0x7FFF
_CHUNK: Final = 256
_PIN_TRIES: Final = 3


def _sw_hex(sw: int) -> str:
    return f"{sw:04X}"


class MyNumberCard:
    """The My Number card as this terminal sees it: certificate, PIN, signature, four facts, photo.

    One object per card session (per connected transport); it remembers which application is
    selected to avoid needless SELECTs.
    """

    def __init__(self, transport: CardTransport) -> None:
        self._transport = transport
        self._aid: bytes | None = None

    @property
    def atr(self) -> bytes:
        return self._transport.atr

    # -- the guarded channel -----------------------------------------------------------------
    def _check_allowed(self, apdu: bytes) -> None:
        if len(apdu) < 4:
            raise CardProtocolError("APDU shorter than its header")
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == 0xA4:
            data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
            if p1 == 0x04 and p2 == 0x0C and data in ALLOWED_APPLICATIONS:
                return
            if p1 == 0x02 and p2 == 0x0C and len(data) == 2:
                ef = int.from_bytes(data, "big")
                if self._aid is not None and (self._aid, ef) in ALLOWED_FILES:
                    return
            shown = apdu[: 5 + len(data)].hex(" ").upper()
            raise ForbiddenFileError(f"SELECT {shown} is not on the allow-list")
        if ins == 0xB0 and p1 & 0x80:
            raise ForbiddenFileError("READ BINARY by short EF identifier is not allowed")
        if ins in (0xB1, 0xB2, 0xB3, 0xCB, 0xCA) and apdu[0] & 0x80 == 0:
            raise ForbiddenFileError(f"INS {ins:02X} is not used by this terminal")

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        """Transmit one APDU after the allow-list check; follows 61xx/6Cxx."""
        self._check_allowed(apdu)
        data, sw = self._transport.transmit(apdu)
        if sw >> 8 == 0x6C:  # wrong Le: the card says how many bytes it has
            data, sw = self._transport.transmit(apdu[:-1] + bytes([sw & 0xFF]))
        collected = data
        while sw >> 8 == 0x61:  # more data waiting: GET RESPONSE
            more, sw = self._transport.transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
            collected += more
        return collected, sw

    def _select_application(self, aid: bytes) -> None:
        if self._aid == aid:
            return
        self._aid = None
        _, sw = self._send(bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid)
        if sw == SW_NOT_FOUND:
            raise NotMyNumberCardError(f"application {aid.hex().upper()} not found")
        if sw != SW_OK:
            raise CardProtocolError("SELECT application", sw=sw)
        self._aid = aid

    def _select_file(self, aid: bytes, ef: int) -> None:
        if (aid, ef) not in ALLOWED_FILES:
            raise ForbiddenFileError(f"EF {ef:04X} of {aid.hex().upper()} is not on the allow-list")
        self._select_application(aid)
        _, sw = self._send(bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + ef.to_bytes(2, "big"))
        if sw == SW_NOT_FOUND:
            raise NotMyNumberCardError(f"EF {ef:04X} not found")
        if sw != SW_OK:
            raise CardProtocolError(f"SELECT EF {ef:04X}", sw=sw)

    def _read_chunk(self, offset: int, length: int) -> bytes:
        if offset > _MAX_OFFSET:
            raise CardProtocolError("the file is larger than READ BINARY can address")
        le = 0 if length >= _CHUNK else length
        data, sw = self._send(bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le]))
        if sw == SW_SECURITY:
            raise CardProtocolError("READ BINARY: security status not satisfied", sw=sw)
        if sw not in (SW_OK, SW_EOF):
            raise CardProtocolError("READ BINARY", sw=sw)
        return data

    def _read_tlv_file(self) -> bytes:
        """Read the selected EF whose content is one TLV (a DER certificate or a template)."""
        head = self._read_chunk(0, _CHUNK)
        if len(head) < 4:
            raise CardProtocolError("the file is too short to hold a TLV")
        _, length, size = read_header(head)
        total = size + length
        content = bytearray(head[:total])
        while len(content) < total:
            chunk = self._read_chunk(len(content), min(_CHUNK, total - len(content)))
            if not chunk:
                raise CardProtocolError("READ BINARY returned no data before the end of the TLV")
            content += chunk
        return bytes(content[:total])

    # -- JPKI ---------------------------------------------------------------------------------
    def check_jpki(self) -> None:
        """Confirm this is a My Number card: the JPKI AP answers and holds its token."""
        self._select_file(JPKI_AID, EF_TOKEN)
        token = self._read_chunk(0, len(JPKI_TOKEN))
        if token != JPKI_TOKEN:
            raise NotMyNumberCardError("the JPKI token does not match")

    def read_auth_certificate(self) -> bytes:
        """The user-authentication certificate (DER). No PIN is needed."""
        self._select_file(JPKI_AID, EF_AUTH_CERT)
        return self._read_certificate()

    def read_ca_certificate(self) -> bytes:
        """The certificate of the CA that issued the authentication certificate (DER)."""
        self._select_file(JPKI_AID, EF_AUTH_CA)
        return self._read_certificate()

    def _read_certificate(self) -> bytes:
        der = self._read_tlv_file()
        if der[0] != 0x30:
            raise CardProtocolError("the certificate file does not hold a DER SEQUENCE")
        return der

    def auth_pin_tries_left(self) -> int:
        """Tries left for the authentication PIN (0 when blocked). Does not use up a try."""
        self._select_file(JPKI_AID, EF_AUTH_PIN)
        return self._tries_left(_PIN_TRIES)

    def _tries_left(self, maximum: int) -> int:
        _, sw = self._send(bytes([0x00, 0x20, 0x00, 0x80]))
        if sw >> 4 == 0x63C:
            return sw & 0x0F
        if sw in (SW_BLOCKED, SW_BLOCKED_ALT):
            return 0
        if sw == SW_OK:  # already verified in this session: the counter is full
            return maximum
        raise CardProtocolError("VERIFY (status)", sw=sw)

    def verify_auth_pin(self, pin: str) -> None:
        """Verify the 4-digit authentication PIN; raises ``PinWrongError``/``PinBlockedError``."""
        _check_pin(pin)
        self._select_file(JPKI_AID, EF_AUTH_PIN)
        self._verify(pin.encode("ascii"), PinWrongError, PinBlockedError)

    def sign_challenge(self, nonce: bytes) -> bytes:
        """RSA PKCS#1 v1.5 signature over SHA-256(``nonce``); the auth PIN must be verified."""
        digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(nonce).digest()
        self._select_file(JPKI_AID, EF_AUTH_KEY)
        apdu = bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00"
        signature, sw = self._send(apdu)
        if sw in (SW_BLOCKED, SW_BLOCKED_ALT):
            raise PinBlockedError()
        if sw == SW_SECURITY:
            raise CardProtocolError("SIGN before the PIN was verified", sw=sw)
        if sw != SW_OK or not signature:
            raise CardProtocolError("SIGN", sw=sw)
        return signature

    def authenticate(self, pin: str, nonce: bytes) -> bytes:
        """Verify the PIN, then sign the challenge: the PIN path of a card check."""
        self.verify_auth_pin(pin)
        return self.sign_challenge(nonce)

    # -- 券面事項入力補助AP ---------------------------------------------------------------------
    def read_basic_facts(self, pin: str) -> BasicFacts:
        """The four basic facts, after the 入力補助 PIN (the same digits as the auth PIN)."""
        _check_pin(pin)
        self._select_file(KENKAKU_AID, EF_KENKAKU_PIN)
        self._verify(pin.encode("ascii"), PinWrongError, PinBlockedError)
        self._select_file(KENKAKU_AID, EF_BASIC_FACTS)
        fields = parse_template(self._read_tlv_file(), 0xFF20)
        try:
            name = fields[0xDF22].decode("utf-8")
            address = fields[0xDF23].decode("utf-8")
            birth_raw = fields[0xDF24].decode("ascii")
            sex = fields[0xDF25].decode("ascii")
        except (KeyError, UnicodeDecodeError) as exc:
            raise CardProtocolError(f"the four-facts file is malformed: {exc!r}") from exc
        try:
            birth_date = dt.datetime.strptime(birth_raw, "%Y%m%d").date()
        except ValueError as exc:
            raise CardProtocolError("the birth date is not YYYYMMDD") from exc
        if sex not in {"1", "2", "3"}:
            raise CardProtocolError("the sex code is not 1, 2 or 3")
        return BasicFacts(name=name, address=address, birth_date=birth_date, sex=sex)

    # -- 券面AP --------------------------------------------------------------------------------
    def collation_b_tries_left(self) -> int:
        self._select_file(KENMEN_AID, EF_COLLATION_B)
        return self._tries_left(10)

    def verify_collation_b(self, code: str) -> None:
        """Verify 照合番号B (14 digits, read by OCR from the card front)."""
        if len(code) != 14 or not code.isascii() or not code.isdigit():
            raise CollationBFormatError()
        self._select_file(KENMEN_AID, EF_COLLATION_B)
        self._verify(code.encode("ascii"), CollationBWrongError, CollationBLockedError)

    def read_face_photo(self) -> bytes:
        """The card-face photo (JPEG 2000 bytes); 照合番号B must be verified in this session."""
        self._select_file(KENMEN_AID, EF_FACE)
        fields = parse_template(self._read_tlv_file(), 0xFF40)
        photo = fields.get(0xDF43)
        if not photo:
            raise CardProtocolError("the card-face file holds no photo")
        return photo

    # -- shared -------------------------------------------------------------------------------
    def _verify(
        self,
        secret: bytes,
        wrong: type[PinWrongError] | type[CollationBWrongError],
        blocked: type[CardError],
    ) -> None:
        _, sw = self._send(bytes([0x00, 0x20, 0x00, 0x80, len(secret)]) + secret)
        if sw == SW_OK:
            return
        if sw in (SW_BLOCKED, SW_BLOCKED_ALT) or sw == 0x63C0:
            raise blocked()
        if sw >> 4 == 0x63C:
            raise wrong(sw & 0x0F)
        raise CardProtocolError("VERIFY", sw=sw)


def _check_pin(pin: str) -> None:
    if len(pin) != 4 or not pin.isascii() or not pin.isdigit():
        raise PinFormatError()
