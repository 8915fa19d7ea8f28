"""The card applications this terminal knows, one row per card generation (``docs/card.md``,
"Card generations").

A card is told apart by which user-authentication application answers SELECT, never by its ATR:
the same application is on a 2026 card and on a smartphone held to a contactless reader, and a
reader may report any ATR for either. The rows are tried in order; today's card comes first
because almost every card in use is one (a 2026 card costs one extra SELECT, answered ``6A 82``).

The 2026 row's AIDs and EF numbers are placeholders: J-LIS has not published the new card's
application layout (only that its four applications become two, 認証AP and 券面等AP, and that its
keys are ECDSA P-384 with SHA-384). When it does, only this table changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ALLOWED_APPLICATIONS",
    "ALLOWED_FILES",
    "CARD_2026",
    "CURRENT_CARD",
    "KNOWN_APPLICATIONS",
    "CardApplications",
    "Generation",
    "SignatureScheme",
]

Generation = Literal["current", "2026"]
#: ``rsa_pkcs1v15_sha256``: ``80 2A 00 80`` + SHA-256 DigestInfo, the card pads and answers the
#: RSA signature. ``ecdsa_p384_sha384``: ISO 7816-8 PSO: COMPUTE DIGITAL SIGNATURE ``00 2A 9E 9A``
#: + the SHA-384 hash, the card answers the plain ``r || s`` and the terminal DER-encodes it.
SignatureScheme = Literal["rsa_pkcs1v15_sha256", "ecdsa_p384_sha384"]


@dataclass(frozen=True)
class CardApplications:
    """Where one card generation keeps what this terminal reads, and how it signs."""

    generation: Generation
    auth_aid: bytes  # user-authentication certificate, key and PIN
    facts_aid: bytes  # the four facts (券面事項入力補助)
    face_aid: bytes  # 照合番号B and the card-face photo
    ef_auth_cert: int
    ef_auth_ca: int
    ef_auth_key: int
    ef_auth_pin: int
    ef_facts_pin: int
    ef_basic_facts: int
    ef_collation_b: int
    ef_face: int
    #: A fixed token file that confirms the application (today's JPKI AP), or none.
    token: tuple[int, bytes] | None
    signature: SignatureScheme

    @property
    def files(self) -> frozenset[tuple[bytes, int]]:
        """Every (application, EF) this terminal may select on such a card."""
        pairs = {
            (self.auth_aid, self.ef_auth_cert),
            (self.auth_aid, self.ef_auth_ca),
            (self.auth_aid, self.ef_auth_key),
            (self.auth_aid, self.ef_auth_pin),
            (self.facts_aid, self.ef_facts_pin),
            (self.facts_aid, self.ef_basic_facts),
            (self.face_aid, self.ef_collation_b),
            (self.face_aid, self.ef_face),
        }
        if self.token is not None:
            pairs.add((self.auth_aid, self.token[0]))
        return frozenset(pairs)


#: Today's card (since 2016): JPKI AP, 券面事項入力補助AP, 券面AP; RSA-2048. Public values
#: (OpenSC ``card-jpki.c`` and every JPKI reader since).
CURRENT_CARD: Final = CardApplications(
    generation="current",
    auth_aid=bytes.fromhex("D392F000260100000001"),
    facts_aid=bytes.fromhex("D3921000310001010408"),
    face_aid=bytes.fromhex("D3921000310001010402"),
    ef_auth_cert=0x000A,
    ef_auth_ca=0x000B,
    ef_auth_key=0x0017,
    ef_auth_pin=0x0018,
    ef_facts_pin=0x0011,
    ef_basic_facts=0x0002,
    ef_collation_b=0x0012,
    ef_face=0x0002,
    token=(0x0006, b"JPKIAPICCTOKEN2"),
    signature="rsa_pkcs1v15_sha256",
)

#: The 2026 card and smartphone JPKI: 認証AP (certificate, key, the one 4-digit PIN, the four
#: facts) and 券面等AP (照合番号B, card face); ECDSA P-384. PLACEHOLDER AIDs and EFs (``F0``:
#: an unregistered proprietary RID, so they can never collide with a real application).
CARD_2026: Final = CardApplications(
    generation="2026",
    auth_aid=bytes.fromhex("F053484B3230323601"),
    facts_aid=bytes.fromhex("F053484B3230323601"),
    face_aid=bytes.fromhex("F053484B3230323602"),
    ef_auth_cert=0x0101,
    ef_auth_ca=0x0102,
    ef_auth_key=0x0103,
    ef_auth_pin=0x0104,
    ef_facts_pin=0x0104,
    ef_basic_facts=0x0111,
    ef_collation_b=0x0201,
    ef_face=0x0202,
    token=None,
    signature="ecdsa_p384_sha384",
)

#: Tried in this order by SELECT of each ``auth_aid``.
KNOWN_APPLICATIONS: Final[tuple[CardApplications, ...]] = (CURRENT_CARD, CARD_2026)

#: The only (application, EF) pairs this terminal may select. No My Number EF is here.
ALLOWED_FILES: Final[frozenset[tuple[bytes, int]]] = frozenset().union(*(a.files for a in KNOWN_APPLICATIONS))
ALLOWED_APPLICATIONS: Final[frozenset[bytes]] = frozenset(aid for aid, _ in ALLOWED_FILES)
