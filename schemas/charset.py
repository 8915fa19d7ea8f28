"""Which characters the clinics' Shift_JIS software can show: JIS X 0208 (and JIS X 0201).

The most common trouble report from clinics is 「●」 in place of a name: a character outside
JIS X 0208 (外字, 旧字, 異体字) that the clinic's software cannot draw. The loader and the server
warn about such characters in names and addresses at upload (docs/uploads.md), and the XML folder
interface writes a documented substitute for each in its Shift_JIS files (docs/xml-interface.md).
Both use the one repertoire below.

The repertoire is **JIS X 0208 plus JIS X 0201** (ASCII/roman and half-width katakana), i.e. what
Shift_JIS proper carries. It is read from Python's ``shift_jis`` codec (JIS X 0201 + JIS X 0208,
including 凜 and 熙 of the 1990 edition), **not** from ``cp932``: CP932 adds the NEC row 13
(①, ㈱ …), the NEC-selected and IBM extensions (髙 U+9AD9, 﨑 U+FA11, 德 …) and the user-defined
area mapped to the private-use area (U+E000…) — none of them JIS X 0208, and exactly the ones
that come out as 「●」. ``euc_jp`` would add JIS X 0212 (hojo kanji) and is wrong for the same
reason. The JIS X 0208 characters that CP932 maps to other code points than ``shift_jis`` does
(～ U+FF5E for 〜 U+301C, ∥ U+2225, － U+FF0D, ￠ ￡ ￢) are the same JIS characters and count as
inside: every double-byte code of the JIS X 0208 rows, decoded either way, is in the set.
"""

from __future__ import annotations

import unicodedata
from functools import cache

GETA = "〓"  # the traditional JIS substitute mark (げた, JIS X 0208 row 2 cell 14)

# 旧字/異体字 outside JIS X 0208 → the 新字 a clinic would write (all in JIS X 0208). A character
# not listed here whose NFKC form is one JIS X 0208 character (a CJK compatibility ideograph
# such as 朗 U+F929 → 朗) is written as that form; any other as 〓.
SUBSTITUTES: dict[str, str] = {
    "髙": "高",  # U+9AD9 はしご高
    "﨑": "崎",  # U+FA11 たつさき
    "𠮷": "吉",  # U+20BB7 つちよし
    "𡈽": "土",  # U+2123D
    "德": "徳",  # U+5FB7
    "濵": "浜",  # U+6FF5
    "昻": "昂",  # U+663B
    "栁": "柳",  # U+6801
    "瀨": "瀬",  # U+7028
    "淸": "清",  # U+6DF8
    "靑": "青",  # U+9751
    "黑": "黒",  # U+9ED1
    "曻": "昇",  # U+66FB
    "巢": "巣",  # U+5DE2
    "卽": "即",  # U+537D
    "鷗": "鴎",  # U+9DD7
    "琇": "秀",  # U+7407
    "彅": "薙",  # U+5F45 (草彅)
    "﨔": "欅",  # U+FA14
    "﨟": "臈",  # U+FA1F
}


def _is_variation_selector(char: str) -> bool:
    cp = ord(char)
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


@cache
def _repertoire() -> frozenset[str]:
    """Every character of JIS X 0201 and JIS X 0208 (both Unicode mappings), built once."""
    chars: set[str] = {chr(cp) for cp in range(0x20, 0x7F)} | {"¥", "‾"}
    chars.update(bytes([b]).decode("shift_jis") for b in range(0xA1, 0xE0))  # half-width kana
    leads = [*range(0x81, 0xA0), *range(0xE0, 0xF0)]
    trails = [*range(0x40, 0x7F), *range(0x80, 0xFD)]
    for lead in leads:
        for trail in trails:
            code = bytes([lead, trail])
            try:
                chars.add(code.decode("shift_jis"))  # only JIS X 0208 codes decode
            except UnicodeDecodeError:
                continue
            chars.add(code.decode("cp932"))  # the same JIS code as CP932 maps it (～ ∥ － ￠ …)
    return frozenset(chars)


def outside_jis_x0208(text: str) -> list[str]:
    """The distinct characters of ``text`` outside JIS X 0208/0201, in order of appearance."""
    if text.isascii():
        return []
    try:
        text.encode("shift_jis")  # the common case, decided in C
    except UnicodeEncodeError:
        pass
    else:
        return []
    inside = _repertoire()
    seen: dict[str, None] = {}
    for char in text:
        if char not in inside and char not in seen and char not in "\t\r\n":
            seen[char] = None
    return list(seen)


def describe(chars: list[str]) -> str:
    """「U+9AD9 髙、U+E000 (私用領域の外字)」: code points first (a glyph may not render)."""
    parts = []
    for char in chars:
        cp = ord(char)
        private = 0xE000 <= cp <= 0xF8FF or cp >= 0xF0000
        shown = "(私用領域の外字)" if private else ("(異体字セレクタ)" if _is_variation_selector(char) else char)
        parts.append(f"U+{cp:04X} {shown}")
    return "、".join(parts)


def substitute(char: str) -> str:
    """The JIS X 0208 text written in place of ``char`` (outside JIS X 0208) in Shift_JIS files:
    the table's 新字, else a compatibility ideograph's NFKC form, else 〓; a variation selector
    is dropped (the base character is written)."""
    if _is_variation_selector(char):
        return ""
    if char in SUBSTITUTES:
        return SUBSTITUTES[char]
    folded = unicodedata.normalize("NFKC", char)
    if folded != char and folded and not outside_jis_x0208(folded):
        return folded
    return GETA


def to_jis_x0208(text: str) -> tuple[str, bool]:
    """``text`` with each character outside JIS X 0208 substituted, and whether any was."""
    outside = outside_jis_x0208(text)
    if not outside:
        return text, False
    table = {ord(c): substitute(c) for c in outside}
    return text.translate(table), True
