"""Full-width → half-width katakana for ``NameKana`` (ガ → ｶﾞ, パ → ﾊﾟ, ヴ → ｳﾞ), by ``jaconv``.

``jaconv`` converts what has a half-width form; the few letters that have none (ヰヱヮヵヶ, ヷヸヹヺ)
and the stand-alone and combining sound marks get their nearest half-width spelling from the
small table below first.
"""

from __future__ import annotations

import jaconv

# katakana without a half-width form: nearest half-width letters (ヷ = ワ + ゛ …)
_NO_HALF_FORM = str.maketrans({
    "ヰ": "ｲ", "ヱ": "ｴ", "ヮ": "ﾜ", "ヵ": "ｶ", "ヶ": "ｹ",
    "ヷ": "ﾜﾞ", "ヸ": "ｲﾞ", "ヹ": "ｴﾞ", "ヺ": "ｦﾞ",
    "゛": "ﾞ", "゜": "ﾟ", "\u3099": "ﾞ", "\u309a": "ﾟ",  # stand-alone and combining (semi-)voiced marks
})


def to_halfwidth_kana(text: str) -> str:
    """Half-width katakana for ``NameKana``: hiragana and full-width katakana (incl. voiced and
    semi-voiced letters) become half-width; full-width ASCII becomes ASCII; a full-width space
    becomes a space. Any other character passes through unchanged."""
    katakana = jaconv.hira2kata(text, ignore="ゝゞ").translate(_NO_HALF_FORM)  # ゝゞ have no katakana form here
    return str(jaconv.z2h(katakana, kana=True, ascii=True, digit=True))
