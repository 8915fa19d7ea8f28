"""A virtual My Number card that answers the real APDUs (ISO 7816-4, short length only).

Applications and files (``domain.md``, "Card interface")::

    JPKI AP           D3 92 F0 00 26 01 00 00 00 01
        EF 000A  user-authentication certificate (DER)      free read
        EF 000B  its CA certificate (DER)                   free read
        EF 0017  authentication private key                 SIGN (80 2A) after PIN 0018
        EF 0018  authentication PIN (4 digits, 3 tries)      VERIFY
        EF 0006  token "JPKIAPICCTOKEN2"                    free read
    券面事項入力補助AP D3 92 10 00 31 00 01 01 04 08
        EF 0011  PIN (4 digits, 3 tries; same value as the auth PIN, separate counter)
        EF 0001  My Number — NEVER to be selected by our terminal: doing so is recorded in
                 ``card.violations`` and answered ``69 82``
        EF 0002  the four basic facts                       READ after PIN 0011
    券面AP            D3 92 10 00 31 00 01 01 04 02
        EF 0012  照合番号B (14 ASCII digits, 10 tries)       VERIFY
        EF 0002  card-face data incl. the photo             READ after 照合番号B

That is today's card (:data:`CURRENT_CARD`, RSA-2048). The 2026 card (:data:`CARD_2026`) has two
applications instead of four and an ECDSA P-384 key; its AIDs and EF numbers are NOT public, so
the ones below are this testbed's placeholders (``docs/card.md``, "Card generations")::

    認証AP (仮称)      F0 53 48 4B 32 30 32 36 01   (placeholder)
        EF 0101  user-authentication certificate (DER)      free read
        EF 0102  its CA certificate (DER)                   free read
        EF 0103  authentication private key (P-384)         PSO: COMPUTE DIGITAL SIGNATURE after PIN
        EF 0104  the one 4-digit PIN (3 tries): user authentication AND the four facts
        EF 0111  the four basic facts                       READ after PIN 0104
        EF 0112  My Number — never to be selected (recorded in ``card.violations``)
    券面等AP (仮称)    F0 53 48 4B 32 30 32 36 02   (placeholder)
        EF 0201  照合番号B (14 ASCII digits, 10 tries)       VERIFY
        EF 0202  card-face data incl. the photo             READ after 照合番号B

Signing on the 2026 card is ISO 7816-8 PSO: COMPUTE DIGITAL SIGNATURE, ``00 2A 9E 9A 30``
+ the 48-byte SHA-384 hash of the data + ``00``: the card answers the plain 96-byte ``r || s``
(BSI TR-03111 form); the terminal DER-encodes it. A smartphone (:data:`SMARTPHONE`), read over
NFC through a PC/SC reader, answers with its own ATR and carries the 2026 認証AP only.

Four basic facts (入力補助AP EF 0002), BER-TLV like the real card::

    FF 20 L                      constructed template
       DF 21 L  header           opaque bytes (we put ``01``)
       DF 22 L  name             UTF-8
       DF 23 L  address          UTF-8
       DF 24 08 birth date       ASCII ``YYYYMMDD``
       DF 25 01 sex              ASCII ``1`` male, ``2`` female, ``3`` unset

Card-face data (券面AP EF 0002, our layout)::

    FF 40 L                      constructed template
       DF 41 01 format version   ``01``
       DF 42 08 card expiry      ASCII ``YYYYMMDD`` (present when known)
       DF 43 L  photo            JPEG 2000 bytes (absent when the card has no photo)

Lengths are BER: ``< 80`` one byte, ``81 xx``, ``82 xx xx``. READ BINARY takes a 15-bit offset
(``P1`` bit 8 clear); reading past the end returns the remaining bytes with ``62 82``.

Status words: ``90 00`` ok · ``63 Cx`` wrong PIN, x tries left · ``69 84`` blocked ·
``69 82`` security status not satisfied · ``69 86`` no current EF / wrong EF for the command ·
``6A 82`` file or application not found · ``6A 86`` wrong P1/P2 · ``6B 00`` offset beyond the EF ·
``67 00`` wrong length · ``6D 00`` unknown INS · ``6E 00`` unknown CLA.

Retry counters live in :class:`CardState` and persist across power cycles (sessions) of the same
emulator object; what is selected and verified is per session and cleared at power-on/reset.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from testbed.pki import CardPrivateKey, TestCA

__all__ = [
    "CARD_2026",
    "CARD_2026_ATR",
    "CURRENT_CARD",
    "FOREIGN_CARD_ATR",
    "JPKI_AID",
    "KENKAKU_AID",
    "KENMEN_AID",
    "MY_NUMBER_CARD_ATR",
    "SMARTPHONE",
    "SMARTPHONE_ATR",
    "BasicFactsRecord",
    "CardLayout",
    "CardProfile",
    "CardState",
    "CardViolationError",
    "ForeignCardEmulator",
    "MyNumberCardEmulator",
    "assert_no_violations",
    "build_card",
    "encode_tlv",
    "sample_photo_jp2",
]

MY_NUMBER_CARD_ATR = bytes.fromhex("3BE000FF8131FE4514")
#: A contactless storage card (MIFARE Classic 1K as PC/SC reports it): not a My Number card.
FOREIGN_CARD_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")

JPKI_AID = bytes.fromhex("D392F000260100000001")
KENKAKU_AID = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP
KENMEN_AID = bytes.fromhex("D3921000310001010402")  # 券面AP

EF_AUTH_CERT = 0x000A
EF_AUTH_CA = 0x000B
EF_AUTH_KEY = 0x0017
EF_AUTH_PIN = 0x0018
EF_TOKEN = 0x0006
EF_KENKAKU_PIN = 0x0011
EF_MY_NUMBER = 0x0001
EF_BASIC_FACTS = 0x0002
EF_COLLATION_B = 0x0012
EF_FACE = 0x0002

JPKI_TOKEN = b"JPKIAPICCTOKEN2"

#: A made-up ATR for the 2026 card (its real one is not public; the terminal never looks at it).
CARD_2026_ATR = bytes.fromhex("3B88800153484B32303236015E")
#: What a PC/SC reader reports for an ISO 14443-4 type A device without historical bytes (the
#: pseudo-ATR of PC/SC part 3), which is how a phone presented over NFC shows up.
SMARTPHONE_ATR = bytes.fromhex("3B80800101")


@dataclass(frozen=True)
class CardLayout:
    """Where one card generation keeps its applications and files, and how it signs."""

    name: str
    atr: bytes
    auth_aid: bytes  # user-authentication certificate, key and PIN
    facts_aid: bytes  # the four facts (and the My Number EF, never selected)
    face_aid: bytes | None  # 照合番号B and the card face; None: not on this device
    ef_auth_cert: int
    ef_auth_ca: int
    ef_auth_key: int
    ef_auth_pin: int
    ef_facts_pin: int  # the same (AID, EF) as the auth PIN: one PIN for both
    ef_basic_facts: int
    ef_my_number: int
    ef_collation_b: int
    ef_face: int
    token_ef: int | None  # a fixed token file (today's JPKI AP), or none
    signature: Literal["rsa_pkcs1v15_sha256", "ecdsa_p384_sha384"]

    @property
    def one_pin(self) -> bool:
        """True when the four facts are behind the authentication PIN itself (the 2026 card)."""
        return (self.facts_aid, self.ef_facts_pin) == (self.auth_aid, self.ef_auth_pin)


PIN_TRIES = 3
COLLATION_B_TRIES = 10

#: Today's card (since 2016): four applications, RSA-2048, the proprietary ``80 2A`` SIGN.
CURRENT_CARD = CardLayout(
    name="current",
    atr=MY_NUMBER_CARD_ATR,
    auth_aid=JPKI_AID,
    facts_aid=KENKAKU_AID,
    face_aid=KENMEN_AID,
    ef_auth_cert=EF_AUTH_CERT,
    ef_auth_ca=EF_AUTH_CA,
    ef_auth_key=EF_AUTH_KEY,
    ef_auth_pin=EF_AUTH_PIN,
    ef_facts_pin=EF_KENKAKU_PIN,
    ef_basic_facts=EF_BASIC_FACTS,
    ef_my_number=EF_MY_NUMBER,
    ef_collation_b=EF_COLLATION_B,
    ef_face=EF_FACE,
    token_ef=EF_TOKEN,
    signature="rsa_pkcs1v15_sha256",
)
#: The 2026 card: two applications (placeholder AIDs and EFs), ECDSA P-384, ISO PSO CDS.
CARD_2026 = CardLayout(
    name="2026",
    atr=CARD_2026_ATR,
    auth_aid=bytes.fromhex("F053484B3230323601"),
    facts_aid=bytes.fromhex("F053484B3230323601"),
    face_aid=bytes.fromhex("F053484B3230323602"),
    ef_auth_cert=0x0101,
    ef_auth_ca=0x0102,
    ef_auth_key=0x0103,
    ef_auth_pin=0x0104,
    ef_facts_pin=0x0104,
    ef_basic_facts=0x0111,
    ef_my_number=0x0112,
    ef_collation_b=0x0201,
    ef_face=0x0202,
    token_ef=None,
    signature="ecdsa_p384_sha384",
)
#: Smartphone JPKI read over NFC: its own ATR, the 2026 認証AP, no card face.
SMARTPHONE = dataclasses.replace(CARD_2026, name="smartphone", atr=SMARTPHONE_ATR, face_aid=None)

SW_OK = 0x9000
SW_EOF = 0x6282
SW_WRONG_LENGTH = 0x6700
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY = 0x6982
SW_BLOCKED = 0x6984
SW_NO_CURRENT_EF = 0x6986
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_WRONG_OFFSET = 0x6B00
SW_UNKNOWN_INS = 0x6D00
SW_UNKNOWN_CLA = 0x6E00


class CardViolationError(AssertionError):
    """Raised by :func:`assert_no_violations` when a terminal touched a forbidden file."""


@dataclass(frozen=True)
class BasicFactsRecord:
    """The four basic facts (基本4情報) as the card stores them."""

    name: str
    address: str
    birth_date: dt.date
    sex: str  # "1" male, "2" female, "3" unset

    def __post_init__(self) -> None:
        if self.sex not in {"1", "2", "3"}:
            raise ValueError(f"sex must be '1', '2' or '3', not {self.sex!r}")


@dataclass
class CardProfile:
    """What is written on (and into) one card when it is issued."""

    certificate_der: bytes
    ca_certificate_der: bytes
    private_key: CardPrivateKey
    pin: str
    facts: BasicFactsRecord
    collation_b: str
    photo_jp2: bytes | None = None
    card_expiry: dt.date | None = None
    #: Content of the My Number EF. Random digits built at runtime unless a test sets it; the
    #: terminal must never read it, so nothing should ever see this value.
    my_number: str = field(default_factory=lambda: "".join(secrets.choice("0123456789") for _ in range(12)))

    def __post_init__(self) -> None:
        if len(self.pin) != 4 or not self.pin.isdigit():
            raise ValueError("the PIN has 4 digits")
        if len(self.collation_b) != 14 or not self.collation_b.isdigit():
            raise ValueError("照合番号B has 14 digits")


@dataclass
class CardState:
    """Retry counters: they survive power cycles, like the card's EEPROM."""

    auth_pin_tries_left: int = PIN_TRIES
    kenkaku_pin_tries_left: int = PIN_TRIES
    collation_b_tries_left: int = COLLATION_B_TRIES


class _Secret(Enum):
    AUTH_PIN = "auth_pin"
    KENKAKU_PIN = "kenkaku_pin"
    COLLATION_B = "collation_b"


@dataclass
class _Session:
    """Per power-on state: current application and file, what was verified."""

    aid: bytes | None = None
    ef: int | None = None
    verified: set[_Secret] = field(default_factory=set)


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return bytes([0x82]) + length.to_bytes(2, "big")
    raise ValueError("TLV value too long")


def encode_tlv(tag: int, value: bytes) -> bytes:
    """BER-TLV with a 1- or 2-byte tag (``0xDF22`` → ``DF 22``)."""
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return tag_bytes + _encode_length(len(value)) + value


def _basic_facts_ef(facts: BasicFactsRecord) -> bytes:
    body = (
        encode_tlv(0xDF21, b"\x01")
        + encode_tlv(0xDF22, facts.name.encode("utf-8"))
        + encode_tlv(0xDF23, facts.address.encode("utf-8"))
        + encode_tlv(0xDF24, facts.birth_date.strftime("%Y%m%d").encode("ascii"))
        + encode_tlv(0xDF25, facts.sex.encode("ascii"))
    )
    return encode_tlv(0xFF20, body)


def _face_ef(photo: bytes | None, expiry: dt.date | None) -> bytes:
    body = encode_tlv(0xDF41, b"\x01")
    if expiry is not None:
        body += encode_tlv(0xDF42, expiry.strftime("%Y%m%d").encode("ascii"))
    if photo is not None:
        body += encode_tlv(0xDF43, photo)
    return encode_tlv(0xFF40, body)


def sample_photo_jp2(width: int = 90, height: int = 110, *, shade: int = 128) -> bytes:
    """A small greyscale JPEG 2000 image (a gradient), the format of the card-face photo."""
    from PIL import Image  # pillow is a project dependency; imported lazily to keep startup fast

    image = Image.new("L", (width, height))
    image.putdata([(shade + x + y) % 256 for y in range(height) for x in range(width)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG2000")
    return buffer.getvalue()


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _ecdsa_sign_hash(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """ECDSA over a SHA-384 hash the terminal computed; the plain ``r || s`` (48 + 48 bytes)."""
    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA384()))))
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def _pkcs1_v15_sign_raw(key: rsa.RSAPrivateKey, digest_info: bytes) -> bytes | None:
    """EMSA-PKCS1-v1_5 type-1 padding of ``digest_info`` then the raw RSA private operation."""
    numbers = key.private_numbers()
    public = numbers.public_numbers
    k = (public.n.bit_length() + 7) // 8
    if len(digest_info) > k - 11:
        return None
    encoded = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info)) + b"\x00" + digest_info
    m = int.from_bytes(encoded, "big")
    # CRT: the same result as pow(m, d, n), about 3x faster.
    m1 = pow(m, numbers.dmp1, numbers.p)
    m2 = pow(m, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (m1 - m2)) % numbers.p
    return (m2 + h * numbers.q).to_bytes(k, "big")


@dataclass(frozen=True)
class _Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le field; 0 in the field means 256


def _parse_apdu(apdu: bytes) -> _Apdu | None:
    """Short APDUs only (cases 1-4); ``None`` when the length bytes are inconsistent."""
    if len(apdu) < 4:
        return None
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    body = apdu[4:]
    if not body:
        return _Apdu(cla, ins, p1, p2, b"", None)
    if len(body) == 1:
        return _Apdu(cla, ins, p1, p2, b"", body[0] or 256)
    lc = body[0]
    if lc == 0:
        return None  # extended length: not supported
    if len(body) == 1 + lc:
        return _Apdu(cla, ins, p1, p2, body[1:], None)
    if len(body) == 2 + lc:
        return _Apdu(cla, ins, p1, p2, body[1 : 1 + lc], body[-1] or 256)
    return None


class MyNumberCardEmulator:
    """An emulated My Number card. Thread-safe: the vpcd bridge calls it from its own thread."""

    def __init__(
        self,
        profile: CardProfile,
        state: CardState | None = None,
        *,
        layout: CardLayout = CURRENT_CARD,
        atr: bytes | None = None,
    ) -> None:
        key = profile.private_key
        wants_ec = layout.signature == "ecdsa_p384_sha384"
        if wants_ec != isinstance(key, ec.EllipticCurvePrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP384R1)
        ):
            raise ValueError(f"the {layout.name} layout signs with {layout.signature}: another key type was given")
        self.profile = profile
        self.layout = layout
        self.state = state if state is not None else CardState()
        self._atr = atr if atr is not None else layout.atr
        self.violations: list[str] = []
        #: Every C-APDU received, in order (for tests that assert what the terminal sent).
        self.command_log: list[bytes] = []
        self._session = _Session()
        self._lock = threading.Lock()
        auth, facts = layout.auth_aid, layout.facts_aid
        facts_secret = _Secret.AUTH_PIN if layout.one_pin else _Secret.KENKAKU_PIN
        self._binary: dict[tuple[bytes, int], bytes] = {
            (auth, layout.ef_auth_cert): profile.certificate_der,
            (auth, layout.ef_auth_ca): profile.ca_certificate_der,
            (facts, layout.ef_basic_facts): _basic_facts_ef(profile.facts),
        }
        self._read_guard: dict[tuple[bytes, int], _Secret] = {(facts, layout.ef_basic_facts): facts_secret}
        self._secrets: dict[tuple[bytes, int], _Secret] = {
            (facts, layout.ef_facts_pin): facts_secret,
            (auth, layout.ef_auth_pin): _Secret.AUTH_PIN,
        }
        if layout.token_ef is not None:
            self._binary[(auth, layout.token_ef)] = JPKI_TOKEN
        if layout.face_aid is not None:
            face = (layout.face_aid, layout.ef_face)
            self._binary[face] = _face_ef(profile.photo_jp2, profile.card_expiry)
            self._read_guard[face] = _Secret.COLLATION_B
            self._secrets[(layout.face_aid, layout.ef_collation_b)] = _Secret.COLLATION_B
        self._applications = {auth, facts} | ({layout.face_aid} if layout.face_aid is not None else set())
        self._key_ef = (auth, layout.ef_auth_key)
        self._my_number_ef = (facts, layout.ef_my_number)
        self._files: set[tuple[bytes, int]] = (
            set(self._binary) | set(self._secrets) | {self._key_ef, self._my_number_ef}
        )
        self._sign_command = (0x80, 0x2A) if layout.signature == "rsa_pkcs1v15_sha256" else (0x00, 0x2A)

    # -- power -------------------------------------------------------------------------------
    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> None:
        """A new session: nothing selected, nothing verified. Retry counters are kept."""
        with self._lock:
            self._session = _Session()

    def power_off(self) -> None:
        self.power_on()

    def reset(self) -> None:
        self.power_on()

    # -- secrets -----------------------------------------------------------------------------
    def _secret_value(self, secret: _Secret) -> str:
        if secret is _Secret.COLLATION_B:
            return self.profile.collation_b
        return self.profile.pin

    def _tries(self, secret: _Secret) -> int:
        return int(getattr(self.state, f"{secret.value}_tries_left"))

    def _set_tries(self, secret: _Secret, value: int) -> None:
        setattr(self.state, f"{secret.value}_tries_left", value)

    def _max_tries(self, secret: _Secret) -> int:
        return COLLATION_B_TRIES if secret is _Secret.COLLATION_B else PIN_TRIES

    # -- APDU dispatch -----------------------------------------------------------------------
    def process_apdu(self, apdu: bytes) -> bytes:
        """One C-APDU in, one R-APDU (data + SW1 SW2) out."""
        with self._lock:
            self.command_log.append(bytes(apdu))
            command = _parse_apdu(apdu)
            if command is None:
                return _sw(SW_WRONG_LENGTH)
            if command.cla not in (0x00, 0x80):
                return _sw(SW_UNKNOWN_CLA)
            handlers: dict[tuple[int, int], Callable[[_Apdu], bytes]] = {
                (0x00, 0xA4): self._select,
                (0x00, 0xB0): self._read_binary,
                (0x00, 0x20): self._verify,
                self._sign_command: self._sign,
            }
            handler = handlers.get((command.cla, command.ins))
            if handler is None:
                if command.ins in {ins for _, ins in handlers}:
                    return _sw(SW_UNKNOWN_CLA)
                return _sw(SW_UNKNOWN_INS)
            return handler(command)

    def _select(self, command: _Apdu) -> bytes:
        if command.p1 == 0x04 and command.p2 == 0x0C:
            if command.data not in self._applications:
                return _sw(SW_NOT_FOUND)
            self._session.aid = command.data
            self._session.ef = None
            return _sw(SW_OK)
        if command.p1 == 0x02 and command.p2 == 0x0C:
            if len(command.data) != 2:
                return _sw(SW_WRONG_LENGTH)
            ef = int.from_bytes(command.data, "big")
            aid = self._session.aid
            if aid is None:
                return _sw(SW_NOT_FOUND)
            if (aid, ef) == self._my_number_ef:
                self.violations.append(f"SELECT of the My Number EF: {command.data.hex(' ').upper()}")
                return _sw(SW_SECURITY)
            if (aid, ef) not in self._files:
                return _sw(SW_NOT_FOUND)
            self._session.ef = ef
            return _sw(SW_OK)
        return _sw(SW_WRONG_P1P2)

    def _current(self) -> tuple[bytes, int] | None:
        if self._session.aid is None or self._session.ef is None:
            return None
        return (self._session.aid, self._session.ef)

    def _read_binary(self, command: _Apdu) -> bytes:
        if command.data:
            return _sw(SW_WRONG_LENGTH)
        if command.le is None:
            return _sw(SW_WRONG_LENGTH)
        if command.p1 & 0x80:
            return _sw(SW_WRONG_P1P2)  # short-EF-identifier addressing: not offered
        current = self._current()
        if current is None:
            return _sw(SW_NO_CURRENT_EF)
        content = self._binary.get(current)
        if content is None:
            return _sw(SW_INCOMPATIBLE_FILE)  # key and PIN EFs are not readable
        guard = self._read_guard.get(current)
        if guard is not None and guard not in self._session.verified:
            return _sw(SW_SECURITY)
        offset = (command.p1 << 8) | command.p2
        if offset > len(content):
            return _sw(SW_WRONG_OFFSET)
        chunk = content[offset : offset + command.le]
        return chunk + _sw(SW_OK if len(chunk) == command.le else SW_EOF)

    def _verify(self, command: _Apdu) -> bytes:
        if command.p1 != 0x00 or command.p2 != 0x80:
            return _sw(SW_WRONG_P1P2)
        current = self._current()
        secret = self._secrets.get(current) if current is not None else None
        if secret is None:
            return _sw(SW_NO_CURRENT_EF)
        tries = self._tries(secret)
        if tries <= 0:
            return _sw(SW_BLOCKED)
        if not command.data:
            if secret in self._session.verified:
                return _sw(SW_OK)
            return _sw(0x63C0 | tries)
        if secrets.compare_digest(command.data, self._secret_value(secret).encode("ascii")):
            self._set_tries(secret, self._max_tries(secret))
            self._session.verified.add(secret)
            return _sw(SW_OK)
        tries -= 1
        self._set_tries(secret, tries)
        self._session.verified.discard(secret)
        return _sw(0x63C0 | tries)

    def _sign(self, command: _Apdu) -> bytes:
        """Today's card: ``80 2A 00 80`` + DigestInfo → PKCS#1 v1.5 signature. The 2026 card:
        ``00 2A 9E 9A`` + the 48-byte SHA-384 hash → plain ``r || s``."""
        ecdsa = self.layout.signature == "ecdsa_p384_sha384"
        if (command.p1, command.p2) != ((0x9E, 0x9A) if ecdsa else (0x00, 0x80)):
            return _sw(SW_WRONG_P1P2)
        if self._current() != self._key_ef:
            return _sw(SW_NO_CURRENT_EF)
        if self.state.auth_pin_tries_left <= 0:
            return _sw(SW_BLOCKED)
        if _Secret.AUTH_PIN not in self._session.verified:
            return _sw(SW_SECURITY)
        if not command.data:
            return _sw(SW_WRONG_LENGTH)
        key = self.profile.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if len(command.data) != 48:
                return _sw(SW_WRONG_LENGTH)  # a SHA-384 hash, nothing else
            return _ecdsa_sign_hash(key, command.data) + _sw(SW_OK)
        signature = _pkcs1_v15_sign_raw(key, command.data)
        if signature is None:
            return _sw(SW_WRONG_LENGTH)
        return signature + _sw(SW_OK)


class ForeignCardEmulator:
    """A card that is not a My Number card: other ATR, no JPKI application."""

    def __init__(self, atr: bytes = FOREIGN_CARD_ATR) -> None:
        self._atr = atr
        self.violations: list[str] = []
        self.command_log: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> None:
        """Nothing to reset."""

    def power_off(self) -> None:
        """Nothing to reset."""

    def reset(self) -> None:
        """Nothing to reset."""

    def process_apdu(self, apdu: bytes) -> bytes:
        self.command_log.append(bytes(apdu))
        if len(apdu) >= 2 and apdu[1] == 0xA4:
            return _sw(SW_NOT_FOUND)
        return _sw(SW_UNKNOWN_INS)


def assert_no_violations(*cards: MyNumberCardEmulator | ForeignCardEmulator) -> None:
    """Raise :class:`CardViolationError` if any card saw a forbidden command."""
    found = [v for card in cards for v in card.violations]
    if found:
        raise CardViolationError("the terminal touched a forbidden card file: " + "; ".join(found))


def build_card(
    ca: TestCA,
    *,
    pin: str = "1234",
    facts: BasicFactsRecord | None = None,
    collation_b: str = "55040120341234",
    photo_jp2: bytes | None = None,
    not_before: dt.date | dt.datetime = dt.date(2024, 1, 1),
    not_after: dt.date | dt.datetime = dt.date(2034, 1, 1),
    key_index: int | None = None,
    state: CardState | None = None,
    layout: CardLayout = CURRENT_CARD,
    atr: bytes | None = None,
) -> MyNumberCardEmulator:
    """A card whose authentication certificate ``ca`` issues now (a convenience for tests).

    ``layout`` is the card generation (:data:`CURRENT_CARD`, :data:`CARD_2026`,
    :data:`SMARTPHONE`); the 2026 ones need an ECDSA P-384 ``ca`` (``TestCA.create_ecdsa()``).
    ``atr`` overrides the layout's ATR (tests that prove the terminal never relies on it).
    """
    issued = ca.issue_auth_certificate(key_index=key_index, not_before=not_before, not_after=not_after)
    profile = CardProfile(
        certificate_der=issued.der,
        ca_certificate_der=ca.der,
        private_key=issued.private_key,
        pin=pin,
        facts=facts
        or BasicFactsRecord(
            name="試験 太郎",
            address="東京都千代田区霞が関一丁目2番2号",
            birth_date=dt.date(1980, 4, 1),
            sex="1",
        ),
        collation_b=collation_b,
        photo_jp2=photo_jp2,
        card_expiry=not_after.date() if isinstance(not_after, dt.datetime) else not_after,
    )
    return MyNumberCardEmulator(profile, state, layout=layout, atr=atr)
