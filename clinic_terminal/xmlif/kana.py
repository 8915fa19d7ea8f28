"""Full-width → half-width katakana for ``NameKana`` (ガ → ｶﾞ, パ → ﾊﾟ, ヴ → ｳﾞ)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_DAKUTEN = "\u3099"  # combining voiced sound mark
_HANDAKUTEN = "\u309a"  # combining semi-voiced sound mark
_HALF_DAKUTEN = "\uff9e"
_HALF_HANDAKUTEN = "\uff9f"

# small/old katakana that have no half-width form: nearest half-width letter
_NO_HALF_FORM = {"ヰ": "ｲ", "ヱ": "ｴ", "ヮ": "ﾜ", "ヵ": "ｶ", "ヶ": "ｹ", "゛": "ﾞ", "゜": "ﾟ"}


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    """Full-width katakana (and marks) → half-width, built from the Unicode tables."""
    table: dict[str, str] = dict(_NO_HALF_FORM)
    for code in range(0xFF61, 0xFFA0):
        half = chr(code)
        full = unicodedata.normalize("NFKC", half)
        if len(full) == 1 and full not in table:
            table[full] = half
    table["\u3000"] = " "
    return table


def to_halfwidth_kana(text: str) -> str:
    """Half-width katakana for ``NameKana``: hiragana and full-width katakana (incl. voiced and
    semi-voiced letters) become half-width; full-width ASCII becomes ASCII; a full-width space
    becomes a space. Any other character passes through unchanged."""
    table = _table()
    out: list[str] = []
    for ch in text:
        if "\u3041" <= ch <= "\u3096":  # hiragana → katakana
            ch = chr(ord(ch) + 0x60)
        if ch in table:
            out.append(table[ch])
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        if len(decomposed) == 2 and decomposed[1] in (_DAKUTEN, _HANDAKUTEN) and decomposed[0] in table:
            out.append(table[decomposed[0]])
            out.append(_HALF_DAKUTEN if decomposed[1] == _DAKUTEN else _HALF_HANDAKUTEN)
            continue
        if "\uff01" <= ch <= "\uff5e":  # full-width ASCII
            out.append(chr(ord(ch) - 0xFEE0))
            continue
        out.append(ch)
    return "".join(out)
