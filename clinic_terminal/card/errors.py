"""Card errors: a stable ``code`` for the terminal's screens and logs, and a bilingual message.

Backend exceptions (pyscard, emulator) are translated into these at the transport boundary, so
nothing above the transport needs to know which backend is in use.
"""

from __future__ import annotations

from typing import ClassVar


class CardError(Exception):
    """Base class. ``code`` is stable; ``message_ja``/``message_en`` are for people."""

    code: ClassVar[str] = "card_error"
    message_ja: ClassVar[str] = "カードの読み取りでエラーが発生しました。"
    message_en: ClassVar[str] = "The card could not be read."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        text = f"{self.message_ja} / {self.message_en}"
        super().__init__(f"{text} ({detail})" if detail else text)


class NoReaderError(CardError):
    code = "no_reader"
    message_ja = "カードリーダーが見つかりません。"
    message_en = "No card reader was found."


class NoCardError(CardError):
    code = "no_card"
    message_ja = "カードが置かれていません。"
    message_en = "No card is on the reader."


class CardRemovedError(CardError):
    code = "card_removed"
    message_ja = "読み取り中にカードが取り外されました。もう一度置いてください。"
    message_en = "The card was removed while it was being read. Please place it again."


class NotMyNumberCardError(CardError):
    code = "not_my_number_card"
    message_ja = "マイナンバーカードではありません。"
    message_en = "This is not a My Number card."


class PinFormatError(CardError):
    code = "pin_format"
    message_ja = "暗証番号は数字4桁です。"
    message_en = "The PIN has 4 digits."


class PinWrongError(CardError):
    code = "pin_wrong"
    message_ja = "暗証番号が違います。"
    message_en = "The PIN is wrong."

    def __init__(self, tries_left: int, detail: str | None = None) -> None:
        self.tries_left = tries_left
        super().__init__(detail or f"あと{tries_left}回 / {tries_left} tries left")


class PinBlockedError(CardError):
    code = "pin_blocked"
    message_ja = "暗証番号がロックされています。市区町村の窓口で解除してください。"
    message_en = "The PIN is blocked. It can be reset at the municipal office."


class CollationBWrongError(CardError):
    code = "collation_b_wrong"
    message_ja = "照合番号Bが違います。"
    message_en = "Collation number B is wrong."

    def __init__(self, tries_left: int, detail: str | None = None) -> None:
        self.tries_left = tries_left
        super().__init__(detail or f"あと{tries_left}回 / {tries_left} tries left")


class CollationBLockedError(CardError):
    code = "collation_b_locked"
    message_ja = "照合番号Bがロックされています。暗証番号で確認してください。"
    message_en = "Collation number B is locked. Please use the PIN instead."


class CollationBFormatError(CardError):
    code = "collation_b_format"
    message_ja = "照合番号Bは数字14桁です。"
    message_en = "Collation number B has 14 digits."


class ForbiddenFileError(CardError):
    """Raised before anything is sent: the code tried to reach a file outside the allow-list."""

    code = "forbidden_file"
    message_ja = "このファイルは読み取りが許可されていません。"
    message_en = "This card file may not be accessed."


class CardProtocolError(CardError):
    """The card answered something the terminal does not expect."""

    code = "card_protocol"
    message_ja = "カードが想定外の応答をしました。"
    message_en = "The card gave an unexpected answer."

    def __init__(self, detail: str | None = None, *, sw: int | None = None) -> None:
        self.sw = sw
        if sw is not None:
            detail = f"{detail or 'status'}: SW {sw:04X}"
        super().__init__(detail)
