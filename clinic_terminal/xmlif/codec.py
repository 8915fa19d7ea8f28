"""Character encodings of the folder interface.

Requests are read in the encoding their XML declaration names (UTF-8 when there is none).
"Shift_JIS" is read as **CP932** (Windows-31J), which is what Windows clinic software means by it
(NEC/IBM extensions such as ①, ﾊﾝｶｸ, 髙). Results are written with JIS X 0208/0201 bytes only: a
name or address outside JIS X 0208 gets a marked substitute (render.py), and any other character
outside it (髙 or 𠮷 in an attribute, ① in a message) is written as a numeric character reference
(``&#134071;``): every XML reader turns it back into the same character, so nothing is lost or
replaced by ``?``/``●``. In UTF-8 results every character is written as itself.
"""

from __future__ import annotations

import re

from clinic_terminal.xmlif.model import XmlEncoding
from schemas.charset import outside_jis_x0208

_DECLARATION = re.compile(rb"^\s*<\?xml\s[^>]*?\?>", re.DOTALL)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")

# declared name (lower case) → Python codec
_CODECS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "cp932": "cp932",
    "ms932": "cp932",
}

DECLARED_NAME: dict[XmlEncoding, str] = {"utf-8": "UTF-8", "shift_jis": "Shift_JIS"}
CHARACTER_CODE_IDENTIFIER: dict[XmlEncoding, str] = {"utf-8": "0", "shift_jis": "1"}


class EncodingProblemError(ValueError):
    """The request's bytes cannot be read as text in the encoding it declares."""


def decode_request(data: bytes) -> str:
    """The request as text, without its XML declaration (lxml takes such text as is)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    declared = "utf-8"
    match = _DECLARATION.match(data)
    if match:
        enc = _ENCODING.search(match.group(0))
        if enc:
            declared = enc.group(1).decode("ascii").lower()
        data = data[match.end() :]
    codec = _CODECS.get(declared)
    if codec is None:
        raise EncodingProblemError(f"unsupported encoding {declared!r} (UTF-8 or Shift_JIS expected)")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise EncodingProblemError(
            f"the bytes are not valid {declared} (declared encoding) at offset {exc.start}"
        ) from exc


def encode_document(body: str, encoding: XmlEncoding) -> bytes:
    """Declaration + serialised document (``body`` has no declaration) in ``encoding``."""
    declaration = f'<?xml version="1.0" encoding="{DECLARED_NAME[encoding]}" standalone="no"?>\n'
    if encoding == "utf-8":
        return (declaration + body).encode("utf-8")
    return escape_outside_jis_x0208(declaration + body).encode("cp932")


def escape_outside_jis_x0208(text: str) -> str:
    """``text`` with every character outside JIS X 0208/0201 as a numeric character reference:
    the bytes of a Shift_JIS result are then valid in strict Shift_JIS and in CP932 alike.
    (Only text and attribute values hold non-ASCII characters, where a reference is valid.)"""
    outside = outside_jis_x0208(text)
    if not outside:
        return text
    return text.translate({ord(c): f"&#{ord(c)};" for c in outside})
