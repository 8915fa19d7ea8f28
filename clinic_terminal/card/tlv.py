"""Minimal BER-TLV decoding for the card's data files (tags up to 2 bytes, lengths up to 82 xx xx)."""

from __future__ import annotations

from clinic_terminal.card.errors import CardProtocolError


def read_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """``(tag, length, header size)`` of the TLV at ``offset``; raises if truncated or malformed."""
    try:
        tag = data[offset]
        pos = offset + 1
        if tag & 0x1F == 0x1F:
            tag = (tag << 8) | data[pos]
            if data[pos] & 0x80:
                raise CardProtocolError("TLV tags longer than 2 bytes are not expected")
            pos += 1
        first = data[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif first == 0x81:
            length = data[pos]
            pos += 1
        elif first == 0x82:
            length = int.from_bytes(data[pos : pos + 2], "big")
            if pos + 2 > len(data):
                raise IndexError
            pos += 2
        else:
            raise CardProtocolError(f"unsupported TLV length byte {first:02X}")
    except IndexError as exc:
        raise CardProtocolError("truncated TLV header") from exc
    return tag, length, pos - offset


def parse_children(data: bytes) -> dict[int, bytes]:
    """The primitive children of a constructed value, tag → value (the first of repeated tags)."""
    children: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        tag, length, size = read_header(data, offset)
        start = offset + size
        end = start + length
        if end > len(data):
            raise CardProtocolError(f"TLV {tag:X} runs past the end of its template")
        children.setdefault(tag, data[start:end])
        offset = end
    return children


def parse_template(data: bytes, expected_tag: int) -> dict[int, bytes]:
    """Decode ``expected_tag``'s template (the whole EF content) into its children."""
    tag, length, size = read_header(data)
    if tag != expected_tag:
        raise CardProtocolError(f"expected TLV tag {expected_tag:X}, found {tag:X}")
    if size + length > len(data):
        raise CardProtocolError("the TLV template is truncated")
    return parse_children(data[size : size + length])
