from __future__ import annotations

import pytest

from clinic_terminal.xmlif.codec import EncodingProblemError, decode_request, encode_document
from clinic_terminal.xmlif.kana import to_halfwidth_kana


@pytest.mark.parametrize(
    ("full", "half"),
    [
        ("ガ", "ｶﾞ"),
        ("パピプペポ", "ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ"),
        ("ヴ", "ｳﾞ"),
        ("ヤマダ　タロウ", "ﾔﾏﾀﾞ ﾀﾛｳ"),
        ("キョウコ", "ｷｮｳｺ"),
        ("ゆうこ", "ﾕｳｺ"),  # hiragana too
        ("ヲーイ・ン", "ｦｰｲ･ﾝ"),
        ("ヶヵヰヱ", "ｹｶｲｴ"),
        ("ﾊﾝｶｸ", "ﾊﾝｶｸ"),  # already half-width
        ("ＡＢＣ１", "ABC1"),
        ("漢字", "漢字"),  # not kana: unchanged
    ],
)
def test_halfwidth_kana(full: str, half: str) -> None:
    assert to_halfwidth_kana(full) == half


def test_declared_encoding_is_used_and_shift_jis_means_cp932() -> None:
    text = '<?xml version="1.0" encoding="Shift_JIS"?><a>①髙～</a>'
    assert decode_request(text.encode("cp932")) == "<a>①髙～</a>"
    assert decode_request(b"\xef\xbb\xbf<a>x</a>") == "<a>x</a>"  # BOM, no declaration: UTF-8
    with pytest.raises(EncodingProblemError, match="unsupported encoding"):
        decode_request(b'<?xml version="1.0" encoding="ISO-2022-JP"?><a/>')


def test_out_of_jis_x0208_characters_become_references_never_lost() -> None:
    body = "<a>𠮷野家 葛\U000e0100 髙 ① 〜～</a>"
    sjis = encode_document(body, "shift_jis")
    # outside JIS X 0208 (CP932's extensions too): references, so the bytes are strict Shift_JIS
    assert b"&#134071;" in sjis and b"&#917760;" in sjis and b"&#39641;" in sjis and b"&#9312;" in sjis
    assert "髙".encode("cp932") not in sjis
    assert sjis.decode("shift_jis").endswith("〜〜</a>")  # both mappings of the JIS wave dash are JIS
    assert encode_document(body, "utf-8").decode("utf-8").endswith(body)
