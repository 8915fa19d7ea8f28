"""Demo mode: a virtual My Number card in process (no PC/SC) loaded from a profile folder.

A profile folder holds what was written into one test card::

    profile.json     {"pin": "1234", "collation_b": "14 digits", "card_expiry": "YYYY-MM-DD"|null,
                      "facts": {"name", "address", "birth_date": "YYYY-MM-DD", "sex": "1"|"2"|"3"},
                      "generation": "current" | "2026" | "smartphone" (absent: "current")}
    certificate.der  the user-authentication certificate
    ca.der           its CA certificate
    key.pem          the card's authentication private key (PKCS#8, unencrypted: test keys only):
                     RSA-2048 for today's card, ECDSA P-384 for the 2026 card and a smartphone
    photo.jp2        the card-face photo (optional; without it there is no 顔認証)

The emulator is ``testbed.card_emulator``; the terminal itself does not import ``testbed``:
``clinic_terminal.kiosk.wiring`` loads this module only for ``clinic-terminal kiosk --demo-card``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clinic_terminal.card.inprocess import EmulatedCard, InProcessReader, InProcessTransport
from testbed.card_emulator import (
    CARD_2026,
    CURRENT_CARD,
    SMARTPHONE,
    BasicFactsRecord,
    CardLayout,
    CardProfile,
    MyNumberCardEmulator,
    build_card,
)
from testbed.pki import CardPrivateKey, TestCA

#: the card generations a profile folder may hold (``profile.json``'s ``generation``)
GENERATIONS: dict[str, CardLayout] = {layout.name: layout for layout in (CURRENT_CARD, CARD_2026, SMARTPHONE)}


@dataclass
class DemoCard:
    """A virtual card that sits on an in-process reader; ``connect`` puts it back if removed."""

    card: EmulatedCard
    reader: InProcessReader
    collation_b: str
    has_photo: bool

    def connect(self) -> InProcessTransport:
        if self.reader.card is None:
            self.reader.insert(self.card)
        return self.reader.connect()


def write_profile(folder: Path, profile: CardProfile, layout: CardLayout = CURRENT_CARD) -> Path:
    """Save a testbed ``CardProfile`` of the card generation ``layout`` as a demo profile folder
    (tests and docs use this)."""
    folder.mkdir(parents=True, exist_ok=True)
    facts = profile.facts
    meta: dict[str, Any] = {
        "generation": layout.name,
        "pin": profile.pin,
        "collation_b": profile.collation_b,
        "card_expiry": profile.card_expiry.isoformat() if profile.card_expiry else None,
        "facts": {"name": facts.name, "address": facts.address, "birth_date": facts.birth_date.isoformat(),
                  "sex": facts.sex},
    }
    (folder / "profile.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "certificate.der").write_bytes(profile.certificate_der)
    (folder / "ca.der").write_bytes(profile.ca_certificate_der)
    (folder / "key.pem").write_bytes(profile.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    if profile.photo_jp2:
        (folder / "photo.jp2").write_bytes(profile.photo_jp2)
    return folder


def load_demo_card(folder: Path) -> DemoCard:
    """Build the emulated card of a profile folder and place it on a fresh in-process reader."""
    meta = json.loads((folder / "profile.json").read_text(encoding="utf-8"))
    generation = str(meta.get("generation", CURRENT_CARD.name))
    layout = GENERATIONS.get(generation)
    if layout is None:
        raise ValueError(f"{folder / 'profile.json'}: unknown card generation {generation!r}")
    key = serialization.load_pem_private_key((folder / "key.pem").read_bytes(), password=None)
    wants_ec = layout.signature == "ecdsa_p384_sha384"
    ec_ok = wants_ec and isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
    if not (ec_ok or (not wants_ec and isinstance(key, rsa.RSAPrivateKey))):
        raise ValueError(f"{folder / 'key.pem'}: not the {'ECDSA P-384' if wants_ec else 'RSA'} key of a "
                         f"{generation} card")
    card_key = cast(CardPrivateKey, key)  # the type just checked
    photo_path = folder / "photo.jp2"
    facts = meta["facts"]
    expiry = meta.get("card_expiry")
    profile = CardProfile(
        certificate_der=(folder / "certificate.der").read_bytes(),
        ca_certificate_der=(folder / "ca.der").read_bytes(),
        private_key=card_key,
        pin=str(meta["pin"]),
        facts=BasicFactsRecord(name=facts["name"], address=facts["address"],
                               birth_date=dt.date.fromisoformat(facts["birth_date"]), sex=str(facts["sex"])),
        collation_b=str(meta["collation_b"]),
        photo_jp2=photo_path.read_bytes() if photo_path.exists() else None,
        card_expiry=dt.date.fromisoformat(expiry) if expiry else None,
    )
    reader = InProcessReader("Demo reader 00 00")
    card = MyNumberCardEmulator(profile, layout=layout)
    reader.insert(card)
    return DemoCard(card=card, reader=reader, collation_b=profile.collation_b, has_photo=photo_path.exists())


def make_demo(folder: Path, *, pin: str = "1234", photo: Path | None = None) -> tuple[Path, Path]:
    """A demo card profile in ``folder/card`` and the trust anchor its CA needs (``folder/jpki-root.pem``).

    The card holds the four facts of ``tests/factories.person()`` (山田 太郎), so a server loaded with
    that row links it at first use. ``photo`` (any image Pillow reads) becomes the card-face photo.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca = TestCA.create(common_name="JPKI Demo User Authentication CA")
    anchor = ca.write_trust_anchor(folder / "jpki-root.pem")
    photo_jp2 = None
    if photo is not None:
        import io

        from PIL import Image

        with Image.open(photo) as image:
            buffer = io.BytesIO()
            image.convert("L").save(buffer, "JPEG2000")
            photo_jp2 = buffer.getvalue()
    facts = BasicFactsRecord(name="山田 太郎", address="東京都千代田区霞が関1-2-2", birth_date=dt.date(1980, 4, 1),
                             sex="1")
    card = build_card(ca, pin=pin, facts=facts, photo_jp2=photo_jp2)
    return write_profile(folder / "card", card.profile), anchor


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.kiosk_demo FOLDER [--photo IMAGE]``: make a demo card."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m testbed.kiosk_demo", description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--photo", type=Path, help="card-face photo (enables 顔認証 in demo mode)")
    parser.add_argument("--pin", default="1234")
    args = parser.parse_args(argv)
    profile, anchor = make_demo(args.folder, pin=args.pin, photo=args.photo)
    print(f"card profile: {profile}\ntrust anchor (SHIKAKU_TRUST_ANCHORS): {anchor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
