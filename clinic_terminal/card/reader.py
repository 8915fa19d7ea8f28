"""Reading a My Number card (either generation) or a smartphone over any :class:`CardTransport`.

Which card it is comes from which user-authentication application answers SELECT
(:mod:`~clinic_terminal.card.applications`), never from the ATR. Only the files this terminal
needs are reachable: every SELECT is checked against :data:`ALLOWED_FILES` *before* it is sent,
so no My Number EF can ever be selected, and READ BINARY by short EF identifier (which would
bypass SELECT) is refused too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Final

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from clinic_terminal.card.applications import (
    ALLOWED_APPLICATIONS,
    ALLOWED_FILES,
    CURRENT_CARD,
    KNOWN_APPLICATIONS,
    CardApplications,
    Generation,
)
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

__all__ = [
    "ALLOWED_APPLICATIONS",
    "ALLOWED_FILES",
    "JPKI_AID",
    "KENKAKU_AID",
    "KENMEN_AID",
    "SHA256_DIGEST_INFO_PREFIX",
    "MyNumberCard",
]

JPKI_AID: Final = CURRENT_CARD.auth_aid
KENKAKU_AID: Final = CURRENT_CARD.facts_aid  # 券面事項入力補助AP
KENMEN_AID: Final = CURRENT_CARD.face_aid  # 券面AP

#: DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO_PREFIX: Final = bytes.fromhex("3031300d060960864801650304020105000420")
_P384_FIELD_BYTES: Final = 48

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

    One object per card session (per connected transport); it finds out which generation the
    card is at its first command (:meth:`applications`) and remembers which application is
    selected to avoid needless SELECTs.
    """

    def __init__(self, transport: CardTransport) -> None:
        self._transport = transport
        self._aid: bytes | None = None
        self._applications: CardApplications | None = None

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

    def _try_select_application(self, aid: bytes) -> bool:
        """SELECT ``aid``: True when selected, False when the card has no such application."""
        if self._aid == aid:
            return True
        self._aid = None
        _, sw = self._send(bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid)
        if sw == SW_NOT_FOUND:
            return False
        if sw != SW_OK:
            raise CardProtocolError("SELECT application", sw=sw)
        self._aid = aid
        return True

    def _select_application(self, aid: bytes) -> None:
        if not self._try_select_application(aid):
            raise NotMyNumberCardError(f"application {aid.hex().upper()} not found")

    def applications(self) -> CardApplications:
        """The layout of this card: the first known user-authentication application that answers
        SELECT (``not_my_number_card`` when none does). Decided once per session."""
        if self._applications is None:
            for candidate in KNOWN_APPLICATIONS:
                if self._try_select_application(candidate.auth_aid):
                    self._applications = candidate
                    break
            else:
                raise NotMyNumberCardError("no known user-authentication application answers")
        return self._applications

    @property
    def generation(self) -> Generation:
        """``current`` (RSA-2048 JPKI AP) or ``2026`` (the 2026 card or a smartphone, ECDSA P-384)."""
        return self.applications().generation

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
        """Confirm this is a My Number card (or a smartphone): a known user-authentication
        application answers and, where it has one (today's JPKI AP), holds its token."""
        apps = self.applications()
        if apps.token is None:
            return
        ef, expected = apps.token
        self._select_file(apps.auth_aid, ef)
        if self._read_chunk(0, len(expected)) != expected:
            raise NotMyNumberCardError("the JPKI token does not match")

    def read_auth_certificate(self) -> bytes:
        """The user-authentication certificate (DER). No PIN is needed."""
        apps = self.applications()
        self._select_file(apps.auth_aid, apps.ef_auth_cert)
        return self._read_certificate()

    def read_ca_certificate(self) -> bytes:
        """The certificate of the CA that issued the authentication certificate (DER)."""
        apps = self.applications()
        self._select_file(apps.auth_aid, apps.ef_auth_ca)
        return self._read_certificate()

    def _read_certificate(self) -> bytes:
        der = self._read_tlv_file()
        if der[0] != 0x30:
            raise CardProtocolError("the certificate file does not hold a DER SEQUENCE")
        return der

    def auth_pin_tries_left(self) -> int:
        """Tries left for the authentication PIN (0 when blocked). Does not use up a try."""
        apps = self.applications()
        self._select_file(apps.auth_aid, apps.ef_auth_pin)
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
        apps = self.applications()
        self._select_file(apps.auth_aid, apps.ef_auth_pin)
        self._verify(pin.encode("ascii"), PinWrongError, PinBlockedError)

    def sign_challenge(self, nonce: bytes) -> bytes:
        """The card's signature over ``nonce`` as the server checks it (``contract.md``, "Card
        signatures"); the auth PIN must be verified.

        Today's card: ``80 2A 00 80`` + the SHA-256 DigestInfo → RSA PKCS#1 v1.5 signature.
        2026 card / smartphone: ``00 2A 9E 9A`` (PSO: COMPUTE DIGITAL SIGNATURE) + SHA-384(``nonce``)
        → the plain ``r || s``, returned DER-encoded.
        """
        apps = self.applications()
        if apps.signature == "rsa_pkcs1v15_sha256":
            data = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(nonce).digest()
            header = bytes([0x80, 0x2A, 0x00, 0x80])
        else:
            data = hashlib.sha384(nonce).digest()
            header = bytes([0x00, 0x2A, 0x9E, 0x9A])
        self._select_file(apps.auth_aid, apps.ef_auth_key)
        signature, sw = self._send(header + bytes([len(data)]) + data + b"\x00")
        if sw in (SW_BLOCKED, SW_BLOCKED_ALT):
            raise PinBlockedError()
        if sw == SW_SECURITY:
            raise CardProtocolError("SIGN before the PIN was verified", sw=sw)
        if sw != SW_OK or not signature:
            raise CardProtocolError("SIGN", sw=sw)
        if apps.signature == "rsa_pkcs1v15_sha256":
            return signature
        if len(signature) != 2 * _P384_FIELD_BYTES:
            raise CardProtocolError(f"an ECDSA P-384 signature has 96 bytes, not {len(signature)}")
        r = int.from_bytes(signature[:_P384_FIELD_BYTES], "big")
        s = int.from_bytes(signature[_P384_FIELD_BYTES:], "big")
        return encode_dss_signature(r, s)

    def authenticate(self, pin: str, nonce: bytes) -> bytes:
        """Verify the PIN, then sign the challenge: the PIN path of a card check."""
        self.verify_auth_pin(pin)
        return self.sign_challenge(nonce)

    # -- 券面事項入力補助AP ---------------------------------------------------------------------
    def read_basic_facts(self, pin: str) -> BasicFacts:
        """The four basic facts, after the 入力補助 PIN (the same digits as the auth PIN; on the
        2026 card the auth PIN itself)."""
        _check_pin(pin)
        apps = self.applications()
        self._select_file(apps.facts_aid, apps.ef_facts_pin)
        self._verify(pin.encode("ascii"), PinWrongError, PinBlockedError)
        self._select_file(apps.facts_aid, apps.ef_basic_facts)
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
        apps = self.applications()
        self._select_file(apps.face_aid, apps.ef_collation_b)
        return self._tries_left(10)

    def verify_collation_b(self, code: str) -> None:
        """Verify 照合番号B (14 digits, read by OCR from the card front)."""
        if len(code) != 14 or not code.isascii() or not code.isdigit():
            raise CollationBFormatError()
        apps = self.applications()
        self._select_file(apps.face_aid, apps.ef_collation_b)
        self._verify(code.encode("ascii"), CollationBWrongError, CollationBLockedError)

    def read_face_photo(self) -> bytes:
        """The card-face photo (JPEG 2000 bytes); 照合番号B must be verified in this session."""
        apps = self.applications()
        self._select_file(apps.face_aid, apps.ef_face)
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
