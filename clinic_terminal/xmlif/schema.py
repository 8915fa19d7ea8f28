"""The XSDs of the result files (``xsd/``) and validation against them (lxml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

from clinic_terminal.xmlif.codec import decode_request

XSD_DIR = Path(__file__).parent / "xsd"
FAMILIES = (
    "OQSsiquc01res", "OQSmuquc01res", "OQSmuquc02res", "OQSsiimm01res",
    "OQSmutic01res", "OQSmutic02res", "OQSsimed01res", "OQSsichk01res", "OQSsiprc01res",
)


@cache
def schema(family: str) -> etree.XMLSchema:
    if family not in FAMILIES:
        raise ValueError(f"no XSD for {family!r}")
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"{family}.xsd")))


def family_of(file_name: str) -> str:
    """``OQSsiquc01res_face_…xml`` → ``OQSsiquc01res``."""
    return file_name.split("_", 1)[0]


def validation_errors(family: str, document: bytes) -> list[str]:
    """Why ``document`` does not validate against the family's XSD (empty when it does)."""
    xsd = schema(family)
    text = decode_request(document)  # CP932 for "Shift_JIS", as the terminal writes it
    doc = etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True))
    if xsd.validate(doc):
        return []
    return str(xsd.error_log).splitlines()
