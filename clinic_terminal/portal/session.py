"""The patient's own side as a plain service: the card on the reader, the PIN once, then
every screen's data from ``/v1/me/*``, each call with a fresh challenge signed by the card.

The PIN is an argument of :meth:`MySession.submit_pin` only: it goes to the card's VERIFY and is
dropped. The card itself keeps "PIN verified" for as long as it stays powered in this one
connection, so each later call signs its own fresh challenge without the PIN being kept anywhere
(not in memory, not on disk, not in the browser). The connection — and with it the card's
verified state — ends when the card is pulled (:meth:`card_removed`), at 「終了」 (:meth:`end`),
after ``idle_timeout`` without a tap, or when any call fails on the card; the next use asks the
PIN again. docs/patient.md "The patient's screens" says the same for users.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from clinic_terminal.card.errors import CardError, PinBlockedError, PinFormatError, PinWrongError
from clinic_terminal.card.opening import OpenedCard, open_card
from clinic_terminal.card.transport import CardTransport
from clinic_terminal.client import CardProofBody, ServerError
from clinic_terminal.kiosk import messages as msg
from schemas.card import Challenge

logger = logging.getLogger(__name__)

T = TypeVar("T")
Screen = Literal["place_card", "pin", "menu", "error"]

#: What the patient reads when the central server refuses (the kiosk's wording where it has one).
SERVER_ERRORS: dict[str, str] = {
    "card_not_registered": "このカードは健康保険証としての利用登録がまだです。医療機関の受付で登録できます。",
    "card_suspended": "このカードは一時停止中です。再開はコールセンターにお電話ください。",
    "certificate_revoked": "このカードの電子証明書は失効しています。お住まいの市区町村の窓口にご相談ください。",
    "certificate_expired": "このカードの電子証明書の有効期限が切れています。市区町村の窓口で更新してください。",
    "certificate_untrusted": "このカードの電子証明書を確認できませんでした。",
    "unavailable": "中央のサーバーに接続できません。しばらくしてからお試しください。",
    "rate_limited": "混み合っています。しばらくしてからお試しください。",
    "not_found": "見つかりませんでした。",
    "validation_error": "この操作はできません。",
}
SERVER_DEFAULT = "情報を取得できませんでした。もう一度お試しください。"
PIN_BLOCKED_HOME = "暗証番号がロックされています。" + msg.PIN_RESET_WHERE


class MeServer(Protocol):
    """The central server's patient calls (``clinic_terminal.client.CardClient``)."""

    def me_challenge(self) -> Challenge: ...

    def me(self, what: str, proof: CardProofBody, **extra: Any) -> Any: ...

    def me_file(self, what: str, proof: CardProofBody, **extra: Any) -> tuple[bytes, str, str]: ...


class MeError(Exception):
    """A call the patient must be told about: ``code`` and the Japanese ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass
class _Card:
    opened: OpenedCard
    verified: bool = False
    name: str | None = None  # shown as 「○○ 様」 after the PIN (from /v1/me/eligibility)
    sex: str | None = None  # 男 / 女: the 腹囲 threshold of the checkups


class MySession:
    """One reader, one patient at a time. Thread-safe; every method returns :meth:`state`."""

    def __init__(
        self,
        *,
        connect_card: Callable[[], CardTransport],
        server: MeServer,
        idle_timeout: float = 180.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect_card = connect_card
        self._server = server
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._card: _Card | None = None
        self._screen: Screen = "place_card"
        self._message: str | None = None
        self._code: str | None = None
        self._tries: int | None = None
        self._touched = clock()

    # --- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            self._expire()
            card = self._card
            return {
                "screen": self._screen,
                "message": self._message,
                "code": self._code,
                "tries_left": self._tries,
                "patient_name": card.name if card is not None and card.verified else None,
            }

    def _expire(self) -> None:
        if self._screen != "place_card" and self._clock() - self._touched > self._idle_timeout:
            logger.info("portal: idle for %.0f s: the card session ends", self._idle_timeout)
            self._close()

    def _show(self, screen: Screen, message: str | None = None, code: str | None = None) -> dict[str, Any]:
        self._screen, self._message, self._code = screen, message, code
        self._touched = self._clock()
        return self.state()

    def _close(self, screen: Screen = "place_card", message: str | None = None, code: str | None = None) -> None:
        card, self._card = self._card, None
        if card is not None:
            with contextlib.suppress(CardError):
                card.opened.transport.close()  # PC/SC: SCARD_RESET_CARD, the card forgets the PIN
        self._tries = None
        self._screen, self._message, self._code = screen, message, code
        self._touched = self._clock()

    def end(self) -> dict[str, Any]:
        """「終了」: forget the card and everything read from it."""
        with self._lock:
            self._close()
            return self.state()

    def card_removed(self) -> None:
        """The card left the reader: the session ends (the card lost power and the PIN with it)."""
        with self._lock:
            if self._card is not None:
                self._close()

    # --- the card and the PIN --------------------------------------------------------------
    def read_card(self) -> dict[str, Any]:
        with self._lock:
            self._close()
            try:
                opened = open_card(self._connect_card)
            except CardError as exc:
                return self._show("error", msg.CARD_ERRORS.get(exc.code, msg.CARD_ERRORS["card_error"]), exc.code)
            self._card = _Card(opened)
            self._tries = opened.tries_left
            if opened.tries_left == 0:
                self._close("error", PIN_BLOCKED_HOME, "pin_blocked")
                return self.state()
            return self._show("pin")

    def submit_pin(self, pin: str) -> dict[str, Any]:
        """VERIFY on the card (the PIN goes nowhere else and is dropped), then the person's name."""
        with self._lock:
            card = self._card
            if card is None or self._screen != "pin":
                del pin
                return self._show("place_card")
            try:
                card.opened.card.verify_auth_pin(pin)
            except PinFormatError:
                return self._show("pin", msg.PIN_FORMAT, "pin_format")
            except PinWrongError as exc:
                self._tries = exc.tries_left
                return self._show("pin", msg.pin_wrong(exc.tries_left), "pin_wrong")
            except PinBlockedError:
                self._close("error", PIN_BLOCKED_HOME, "pin_blocked")
                return self.state()
            except CardError as exc:
                self._close("error", msg.CARD_ERRORS.get(exc.code, msg.CARD_ERRORS["card_error"]), exc.code)
                return self.state()
            finally:
                del pin
            card.verified = True
            self._tries = None
            try:
                me = self._call(lambda proof: self._server.me("eligibility", proof))
            except MeError as exc:
                return self.state() if self._card is None else self._show("error", exc.message, exc.code)
            current = [p for p in me.get("periods", []) if p.get("current")] or me.get("periods", [])[-1:]
            if current:
                card.name = current[-1].get("name")
                card.sex = {"1": "男", "2": "女"}.get(str(current[-1].get("sex")))
            return self._show("menu")

    # --- the proven calls -------------------------------------------------------------------
    def _call(self, work: Callable[[CardProofBody], T]) -> T:
        """A fresh challenge, signed by the card now (the PIN was verified in this connection)."""
        with self._lock:
            self._expire()
            card = self._card
            if card is None or not card.verified:
                raise MeError("pin_required", "カードを置いて、暗証番号を入力してください。")
            try:
                challenge = self._server.me_challenge()
                signature = card.opened.card.sign_challenge(base64.b64decode(challenge.nonce))
                answer = work(CardProofBody(challenge.challenge_id, card.opened.certificate, signature))
            except CardError as exc:
                message = msg.CARD_ERRORS.get(exc.code, msg.CARD_ERRORS["card_error"])
                self._close("error", message, exc.code)
                raise MeError(exc.code, message) from exc
            except ServerError as exc:
                logger.warning("portal: the server refused: %s", exc.code)
                message = SERVER_ERRORS.get(exc.code, SERVER_DEFAULT)
                if exc.code in ("card_suspended", "certificate_revoked", "card_not_registered"):
                    self._close("error", message, exc.code)
                raise MeError(exc.code, message) from exc
            self._touched = self._clock()
            return answer

    def read(self, what: str, **extra: Any) -> Any:
        """The JSON answer of ``/v1/me/{what}``."""
        return self._call(lambda proof: self._server.me(what, proof, **extra))

    def download(self, what: str, **extra: Any) -> tuple[bytes, str, str]:
        return self._call(lambda proof: self._server.me_file(what, proof, **extra))

    def suspend(self) -> Any:
        """一時利用停止 of this card; the session ends (a suspended card proves nothing)."""
        answer = self.read("suspension")
        with self._lock:
            self._close("error", "カードを一時停止しました。再開はコールセンターにお電話ください。", "suspended")
        return answer

    @property
    def sex(self) -> str | None:
        with self._lock:
            return self._card.sex if self._card is not None else None
