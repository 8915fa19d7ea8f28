"""How digests and serial numbers are stored.

The project's privacy checks (and any auditor's) scan database dumps and logs for 12-digit numbers
with a valid My Number check digit. A hex digest holds runs of 12 digits often enough to trip such
a scan (a 64-hex SHA-256 does about once in a few hundred), so digests are stored base64url
(digits are 10 of 64 symbols: a 12-digit run is ~1e-10) and serial numbers as colon-separated hex
bytes (runs of at most 2 digits).
"""

from __future__ import annotations

import base64
import hashlib


def b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sha256_text(data: bytes) -> str:
    """SHA-256 as stored (base64url, 43 characters)."""
    return b64(hashlib.sha256(data).digest())


def from_hex(hex_digest: str) -> str:
    """A hex digest (as on the wire) in its stored form; ValueError when it is not hex."""
    return b64(bytes.fromhex(hex_digest.strip()))


def serial_text(serial: int) -> str:
    """A certificate serial as stored: ``10:00:ab``."""
    length = max(1, (serial.bit_length() + 7) // 8)
    return ":".join(f"{b:02x}" for b in serial.to_bytes(length, "big"))
