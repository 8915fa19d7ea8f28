"""schemas/charset.py: the JIS X 0208 repertoire (not CP932's) and the documented substitutes."""

from __future__ import annotations

import unicodedata

import pytest

from schemas.charset import GETA, describe, outside_jis_x0208, substitute, to_jis_x0208


@pytest.mark.parametrize("char", ["髙", "﨑", "𠮷", "\ue000", "①", "德", "琇", "\U000e0100", "𩸽"])
def test_cp932_extensions_private_use_and_beyond_the_bmp_are_outside(char: str) -> None:
    assert outside_jis_x0208(f"山{char}田") == [char]


@pytest.mark.parametrize("text", ["高橋 崎 吉田", "凜熙", "ﾔﾏﾀﾞ", "ABC-123 ¥", "〜～∥‖－−￠￡￢", "　"])
def test_jis_x0208_and_0201_in_either_unicode_mapping_are_inside(text: str) -> None:
    assert outside_jis_x0208(text) == []


def test_each_character_is_named_once_by_code_point() -> None:
    outside = outside_jis_x0208("髙髙𠮷\ue000")
    assert describe(outside) == "U+9AD9 髙、U+20BB7 𠮷、U+E000 (私用領域の外字)"


def test_substitutes_follow_the_table_then_nfkc_then_geta() -> None:
    assert [substitute(c) for c in ("髙", "﨑", "𠮷", "德")] == ["高", "崎", "吉", "徳"]
    assert substitute("\uf929") == "朗"  # a compatibility ideograph: its NFKC form
    assert substitute("\ue000") == GETA == "〓"
    assert substitute("\U000e0100") == ""  # a variation selector: the base character stays
    assert to_jis_x0208("髙橋") == ("高橋", True)
    assert to_jis_x0208("高橋") == ("高橋", False)


def test_nfkc_keeps_the_unified_ideograph_u_fa11_but_maps_compatibility_ideographs() -> None:
    # why the stored name is never NFKC'd, and why comparing normalised forms is still safe for 﨑
    assert unicodedata.normalize("NFKC", "﨑") == "﨑"
    assert unicodedata.normalize("NFKC", "\uf929") == "朗"
