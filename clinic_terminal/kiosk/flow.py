"""The patient's check at the kiosk as a plain service: no HTTP, no browser, injected dependencies.

One :class:`CheckFlow` drives one card reader (one patient at a time). The web layer calls its
methods and renders :meth:`CheckFlow.screen` as JSON; tests call them directly with the
in-process card transport and a fake server client.

Privacy: the PIN is an argument of :meth:`submit_pin` / :meth:`submit_registration` only, and a
keyed 照合番号B of :meth:`submit_collation_b` only; each is handed to the card and dropped, never
stored on the flow, logged or sent to the central server.
The card photo and camera frames live only inside the face job. Everything about the patient is
dropped from the flow at :meth:`reset` (the staff board keeps the day's results in memory).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from clinic_terminal.card.errors import (
    CardError,
    CollationBFormatError,
    CollationBLockedError,
    CollationBWrongError,
    PinBlockedError,
    PinFormatError,
    PinWrongError,
)
from clinic_terminal.card.opening import open_card
from clinic_terminal.card.reader import MyNumberCard
from clinic_terminal.card.transport import CardTransport
from clinic_terminal.client import ServerError
from clinic_terminal.kiosk import messages as msg
from clinic_terminal.ocr.collation import TRIES_MARGIN
from clinic_terminal.ocr.era import validate_collation_b
from clinic_terminal.ocr.errors import CollationOcrError
from schemas.card import BasicFacts, Challenge, ConsentRecord, ConsentRequest, Registered, Setting
from schemas.eligibility import ByNumberQuery, EligibilityResult

logger = logging.getLogger(__name__)

ScreenName = Literal[
    "place_card",  # カードを置いてください
    "choose_method",  # 顔認証 / 暗証番号
    "pin",  # PIN pad
    "face",  # live face check
    "face_failed",  # not matched -> offer PIN (and staff entry of 照合番号B when it helps)
    "collation_b_entry",  # staff key in 照合番号B from the card front (14-digit pad)
    "register",  # first use: explain, PIN pad
    "consent",  # per-category choices
    "consent_unavailable",  # 資格証明書: cannot share
    "done",  # 完了 (possibly with a notice to see staff)
    "outage",  # the server is unreachable: 申立書 at reception; the check is journalled and re-made later
    "error",  # something went wrong; actions say what can be done
]
Action = Literal["read_card", "pin", "face", "collation_b_entry", "restart"]
Method = Literal["pin", "face"]

#: 資格証明書-type cards cannot share drug / checkup / clinical information.
CARD_CLASSIFICATION_CERTIFICATE = "05"
#: The server's code meaning "this certificate is not linked to anybody yet".
CARD_NOT_REGISTERED = "card_not_registered"
#: The client's code for "the server cannot be reached" (refused, timeout, 503): outage mode.
SERVER_UNAVAILABLE = "unavailable"
#: Failed reads in a row after which the patient is sent to reception instead of trying again.
READ_FAILURES_TO_STAFF = 2


# --- dependencies ----------------------------------------------------------------------------


class KioskServer(Protocol):
    """The central-server calls of the patient flow (``clinic_terminal.client.CardClient``)."""

    def challenge(self) -> Challenge: ...

    def register(
        self, challenge_id: str, certificate: bytes, signature: bytes, facts: BasicFacts
    ) -> Registered: ...

    def by_card(
        self,
        challenge_id: str,
        certificate: bytes,
        *,
        signature: bytes | None = None,
        attestation: str | None = None,
        as_of: str | None = None,
    ) -> EligibilityResult: ...

    def consent(self, request: ConsentRequest) -> ConsentRecord: ...

    def by_number(self, query: ByNumberQuery) -> EligibilityResult: ...


class FaceOutcome(Protocol):
    """What a face check returns (``clinic_terminal.face.FaceCheckResult`` fits)."""

    @property
    def accepted(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def match(self) -> bool: ...

    @property
    def distance(self) -> float | None: ...

    @property
    def threshold(self) -> float: ...

    @property
    def liveness(self) -> bool: ...


class FaceChecker(Protocol):
    """Card photo + a camera factory -> outcome; reports progress through ``on_status``.

    ``on_status`` takes ``"detecting"`` or ``"matching"``. Raises an exception with a ``code``
    attribute (``camera_unavailable``, ``card_photo_unreadable``) when the check cannot run.
    """

    def __call__(self, card_photo: bytes, on_status: Callable[[str], None]) -> FaceOutcome: ...


class AttestationSigner(Protocol):
    """Signs the terminal's face attestation (compact JWS) for one challenge."""

    def __call__(self, *, challenge: Challenge, certificate: bytes, outcome: FaceOutcome) -> str: ...


@dataclass(frozen=True)
class FacePath:
    """Everything the face path needs; the kiosk offers 顔認証 only when this is configured."""

    checker: FaceChecker
    signer: AttestationSigner
    #: 照合番号B of the card on the reader (real readers OCR the card front); returning None: not
    #: readable now. ``None`` instead of a callable: no automatic source, staff key the code in.
    collation_b: Callable[[], str | None] | None


@dataclass(frozen=True)
class CheckRecord:
    """One completed card check, as the reception staff see it."""

    id: int
    at: dt.datetime
    method: Method | Literal["number"]
    result: EligibilityResult
    consent: ConsentRecord | None = None
    consent_note: str | None = None


CheckSink = Callable[[CheckRecord], None]
FaceFileWriter = Callable[[EligibilityResult, ConsentRecord | None], None]


@dataclass(frozen=True)
class Referral:
    """The patient screen sent the patient to reception; the staff board shows why.

    ``certificate`` is the card's authentication certificate when it was read (it identifies the
    card, nothing personal); ``outage`` marks a check the server could not answer (journalled)."""

    at: dt.datetime
    code: str
    method: Method | None = None
    certificate: bytes | None = None
    outage: bool = False


ReferralSink = Callable[[Referral], None]
#: After every answered card check: (certificate, result); the outage journal keeps the number.
CardCheckSink = Callable[[bytes, EligibilityResult], None]


@dataclass(frozen=True)
class ConsentChoice:
    """The patient's answers on the consent screen; everything defaults to 提供しない.

    ``setting`` None: the kiosk's own (``--setting``); the visiting staff's page says ``home`` for a
    course of care, with its extent (``home_visit``, ``online_care``; None: both) and last day."""

    drug: bool = False
    checkup: bool = False
    clinical: bool = False
    limit_certificate: bool = False
    setting: Setting | None = None
    home_visit: bool | None = None
    online_care: bool | None = None
    course_until: dt.date | None = None

    def request(self, visit_id: str, default_setting: Setting) -> ConsentRequest:
        """The consent request for ``visit_id`` (the extent and the last day with home care only)."""
        setting = self.setting or default_setting
        home = setting == "home"
        return ConsentRequest(
            visit_id=visit_id, drug=self.drug, checkup=self.checkup, clinical=self.clinical,
            limit_certificate=self.limit_certificate, setting=setting,
            home_visit=self.home_visit if home else None, online_care=self.online_care if home else None,
            course_until=self.course_until if home else None,
        )


# --- the screen --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screen:
    """What the patient screen shows now; serialised as JSON by the web layer."""

    name: ScreenName
    seq: int = 0
    message: str | None = None
    code: str | None = None
    tries_left: int | None = None
    face_status: str | None = None
    methods: tuple[Method, ...] = ()
    actions: tuple[Action, ...] = ()
    patient_name: str | None = None
    notice: str | None = None
    busy: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "screen": self.name,
            "seq": self.seq,
            "message": self.message,
            "code": self.code,
            "tries_left": self.tries_left,
            "face_status": self.face_status,
            "methods": list(self.methods),
            "actions": list(self.actions),
            "patient_name": self.patient_name,
            "notice": self.notice,
            "busy": self.busy,
        }


@dataclass
class _Session:
    """What the flow knows about the card on the reader. Dropped at reset."""

    transport: CardTransport
    card: MyNumberCard
    certificate: bytes
    method: Method | None = None
    result: EligibilityResult | None = None
    face_job: int | None = None
    collation_b_refused: bool = False  # one wrong 照合番号B per insertion, then PIN
    extra: dict[str, Any] = field(default_factory=dict)


class FlowBusyError(RuntimeError):
    """An action arrived while the face check is running."""


class CheckFlow:
    """The patient's card check, screen by screen.

    ``connect_card`` opens a transport to the card on the reader (raising ``CardError`` codes
    such as ``no_card``); ``server`` is the central-server client; ``face`` enables 顔認証;
    ``on_check`` receives every completed check (the staff board); ``face_file`` writes the XML
    face file for clinic software. ``clock`` and the timeouts are injectable for tests.
    """

    def __init__(
        self,
        *,
        connect_card: Callable[[], CardTransport],
        server: KioskServer,
        face: FacePath | None = None,
        on_check: CheckSink | None = None,
        face_file: FaceFileWriter | None = None,
        on_referral: ReferralSink | None = None,
        on_card_checked: CardCheckSink | None = None,
        setting: Setting = "outpatient",
        idle_timeout: float = 120.0,
        done_timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        run_in_background: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._connect_card = connect_card
        self._server = server
        self._face = face
        self._on_check = on_check
        self._face_file = face_file
        self._on_referral = on_referral
        self._on_card_checked = on_card_checked
        self._read_failures = 0
        self._setting: Setting = setting
        self._idle_timeout = idle_timeout
        self._done_timeout = done_timeout
        self._clock = clock
        self._now = now
        self._run = run_in_background or _thread_runner
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._record_ids = itertools.count(1)
        self._jobs = itertools.count(1)
        self._session: _Session | None = None
        self._screen = Screen("place_card", next(self._seq), actions=("read_card",))
        self._touched = clock()

    # --- reading the state ----------------------------------------------------------------
    @property
    def face_enabled(self) -> bool:
        return self._face is not None

    def screen(self) -> Screen:
        """The current screen; resets to the start after the idle or completion timeout."""
        with self._lock:
            self._expire()
            return self._screen

    def _expire(self) -> None:
        if self._screen.name == "place_card" or self._screen.busy:
            return
        limit = self._done_timeout if self._screen.name in ("done", "outage") else self._idle_timeout
        if self._clock() - self._touched > limit:
            logger.info("kiosk: %s timed out, back to the start", self._screen.name)
            self._read_failures = 0
            self._reset_locked()

    def _show(self, name: ScreenName, **values: Any) -> Screen:
        self._screen = Screen(name, next(self._seq), **values)
        self._touched = self._clock()
        return self._screen

    def _methods(self, tries_left: int | None) -> tuple[Method, ...]:
        methods: list[Method] = []
        if self._face is not None:
            methods.append("face")
        if tries_left is None or tries_left > 0:
            methods.append("pin")
        return tuple(methods)

    # --- start / reset --------------------------------------------------------------------
    def reset(self) -> Screen:
        """Back to 「カードを置いてください」; forgets the card and everything read from it."""
        with self._lock:
            return self._reset_locked()

    def _reset_locked(self) -> Screen:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(CardError):
                session.transport.close()
        return self._show("place_card", actions=("read_card",))

    def card_removed(self) -> None:
        """The card monitor saw the card leave: a half-done check starts over. In the middle of a
        check (a card session open) the screen says so, so the patient knows to put it back."""
        with self._lock:
            screen = self._screen
            if screen.name in ("done", "place_card") or screen.busy or screen.code == "card_taken_out":
                return
            midway = self._session is not None and self._screen.name != "error"
            self._reset_locked()
            if midway:
                self._show("error", code="card_taken_out", message=msg.CARD_TAKEN_OUT, actions=("read_card",))

    # --- step 1: the card -----------------------------------------------------------------
    def read_card(self) -> Screen:
        """Connect to the card, check it is a My Number card, read the authentication certificate."""
        with self._lock:
            self._guard()
            self._reset_locked()
            try:
                opened = open_card(self._connect_card)
            except CardError as exc:
                return self._card_error(exc)
            self._read_failures = 0
            tries = opened.tries_left
            self._session = _Session(transport=opened.transport, card=opened.card, certificate=opened.certificate)
            methods = self._methods(tries)
            if not methods:
                self._refer("pin_blocked")
                return self._show("error", code="pin_blocked", message=msg.PIN_BLOCKED, actions=("restart",))
            message = msg.PIN_BLOCKED_FACE if tries == 0 else None
            return self._show("choose_method", methods=methods, tries_left=tries, message=message)

    def _guard(self) -> None:
        if self._screen.busy:
            raise FlowBusyError("the face check is running")

    def _need_session(self) -> _Session | None:
        return self._session

    def _card_error(self, exc: CardError, *, session_kept: bool = False) -> Screen:
        message = msg.CARD_ERRORS.get(exc.code, msg.CARD_ERRORS["card_error"])
        actions: tuple[Action, ...] = ("read_card", "restart")
        if exc.code == "no_reader":
            actions = ("restart",)
        if exc.code in msg.CARD_UNREADABLE:
            self._read_failures += 1
            if self._read_failures >= READ_FAILURES_TO_STAFF:  # do not keep the patient retrying
                message, actions = msg.CARD_UNREADABLE_STAFF, ("restart",)
        if msg.ASK_STAFF in message:
            self._refer(exc.code)
        if not session_kept:
            self._drop_session()
        return self._show("error", code=exc.code, message=message, actions=actions)

    def _refer(self, code: str, *, outage: bool = False) -> None:
        """Leave a row on the staff board: the patient screen sends the patient to reception."""
        if self._on_referral is None:
            return
        session = self._session
        referral = Referral(at=self._now(), code=code, outage=outage,
                            method=None if session is None else session.method,
                            certificate=None if session is None else session.certificate)
        try:
            self._on_referral(referral)
        except Exception:  # the board (or the journal's disk) must not stop the patient screen
            logger.exception("kiosk: the reception board could not take a referral (%s)", code)

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.transport.close()

    def _server_error(self, exc: ServerError) -> Screen:
        if exc.code == SERVER_UNAVAILABLE:
            return self._outage()
        message = msg.SERVER_ERRORS.get(exc.code, msg.SERVER_DEFAULT)
        session = self._session
        actions: tuple[Action, ...] = ("restart",)
        if exc.code == "attestation_invalid" and session is not None:
            actions = ("pin", "restart")
        elif exc.code.startswith("challenge_") and session is not None:
            actions = (session.method or "pin", "restart")
        else:
            if msg.ASK_STAFF in message:
                self._refer(exc.code)
            self._drop_session()
        logger.warning("kiosk: server refused the check: %s", exc.code)
        return self._show("error", code=exc.code, message=message, actions=actions)

    def _outage(self) -> Screen:
        """The server cannot be reached: the patient goes to reception (申立書); the card check is
        journalled with what the card identified and made again once the server is back."""
        logger.warning("kiosk: the server is unreachable; the check is journalled for later")
        self._refer(SERVER_UNAVAILABLE, outage=True)
        self._drop_session()
        return self._show("outage", code=SERVER_UNAVAILABLE, message=msg.OUTAGE, actions=("restart",))

    # --- step 2: the method -----------------------------------------------------------------
    def choose(self, method: Method) -> Screen:
        """The patient tapped 顔認証 or 暗証番号."""
        with self._lock:
            self._guard()
            session = self._session
            if session is None:
                return self._reset_locked()
            if method == "pin":
                try:
                    tries = session.card.auth_pin_tries_left()
                except CardError as exc:
                    return self._card_error(exc)
                if tries == 0:
                    return self._pin_blocked()
                session.method = "pin"
                return self._show("pin", tries_left=tries)
            if self._face is None:
                return self._show("choose_method", methods=self._methods(None), message=msg.FACE_UNAVAILABLE)
            session.method = "face"
            return self._start_face(session, self._face)

    def _pin_blocked(self) -> Screen:
        if self._face is not None and self._session is not None:
            return self._show("error", code="pin_blocked", message=msg.PIN_BLOCKED_FACE, actions=("face", "restart"))
        self._refer("pin_blocked")
        self._drop_session()
        return self._show("error", code="pin_blocked", message=msg.PIN_BLOCKED, actions=("restart",))

    # --- step 3a: PIN -------------------------------------------------------------------------
    def submit_pin(self, pin: str) -> Screen:
        """Verify the PIN on the card, sign the server's challenge and ask the server."""
        with self._lock:
            self._guard()
            session = self._session
            if session is None or self._screen.name != "pin":
                return self._reset_locked()
            try:
                session.card.verify_auth_pin(pin)  # a wrong PIN never reaches the server
                challenge = self._server.challenge()
                signature = session.card.sign_challenge(_nonce(challenge))
            except PinFormatError:
                return self._show("pin", tries_left=self._screen.tries_left, message=msg.PIN_FORMAT, code="pin_format")
            except PinWrongError as exc:
                return self._pin_wrong("pin", exc.tries_left)
            except PinBlockedError:
                return self._pin_blocked()
            except CardError as exc:
                return self._card_error(exc)
            except ServerError as exc:
                return self._server_error(exc)
            finally:
                del pin
            return self._ask_server(session, challenge, signature=signature)

    def _ask_server(
        self, session: _Session, challenge: Challenge, *, signature: bytes | None = None,
        attestation: str | None = None,
    ) -> Screen:
        try:
            result = self._server.by_card(
                challenge.challenge_id, session.certificate, signature=signature, attestation=attestation
            )
        except ServerError as exc:
            if exc.code == CARD_NOT_REGISTERED:
                # after a PIN the card accepted, say so and why a PIN is asked again (初回登録)
                explain = msg.REGISTER_AFTER_PIN if signature is not None else msg.REGISTER_EXPLAIN
                return self._show("register", message=explain, code=exc.code,
                                  tries_left=self._tries(session))
            return self._server_error(exc)
        return self._after_result(session, result)

    def _pin_wrong(self, name: ScreenName, tries_left: int) -> Screen:
        """A wrong PIN; at the last try 顔認証 is offered beside the PIN pad (when the kiosk has it)."""
        face = self._face is not None and tries_left == 1
        return self._show(name, tries_left=tries_left, message=msg.pin_wrong(tries_left, face=face),
                          code="pin_wrong", actions=("face",) if face else ())

    def _tries(self, session: _Session) -> int | None:
        try:
            return session.card.auth_pin_tries_left()
        except CardError:
            return None

    # --- first use: linking the card -----------------------------------------------------
    def submit_registration(self, pin: str) -> Screen:
        """初回登録: read the four basic facts with the PIN, link the card, then check it."""
        with self._lock:
            self._guard()
            session = self._session
            if session is None or self._screen.name != "register":
                return self._reset_locked()
            try:
                facts = session.card.read_basic_facts(pin)
                challenge = self._server.challenge()
                signature = session.card.authenticate(pin, _nonce(challenge))
                self._server.register(
                    challenge.challenge_id,
                    session.certificate,
                    signature,
                    BasicFacts(name=facts.name, birth_date=facts.birth_date, sex=facts.sex,
                               address=facts.address),
                )
                del facts
                logger.info("kiosk: card linked at first use")
                challenge = self._server.challenge()
                signature = session.card.sign_challenge(_nonce(challenge))
            except PinFormatError:
                return self._show("register", message=msg.PIN_FORMAT, code="pin_format",
                                  tries_left=self._screen.tries_left)
            except PinWrongError as exc:
                return self._pin_wrong("register", exc.tries_left)
            except PinBlockedError:
                self._refer("pin_blocked")
                self._drop_session()
                return self._show("error", code="pin_blocked", message=msg.PIN_BLOCKED, actions=("restart",))
            except CardError as exc:
                return self._card_error(exc)
            except ServerError as exc:
                return self._server_error(exc)
            finally:
                del pin
            session.method = "pin"
            return self._ask_server(session, challenge, signature=signature)

    # --- step 3b: face --------------------------------------------------------------------
    def _collation_tries(self, session: _Session) -> int | Screen:
        """The card's 照合番号B tries left (a status-only VERIFY: no try used), or the screen that
        ends the face path: locked, unreadable card, or only the last try left (never used)."""
        try:
            tries = session.card.collation_b_tries_left()
        except CollationBLockedError as exc:
            return self._face_failed(msg.CARD_ERRORS[exc.code], exc.code)
        except CardError as exc:
            return self._card_error(exc)
        if tries <= 1:
            return self._collation_fallback("collation_b_last_try", tries)
        return tries

    def _start_face(self, session: _Session, face: FacePath) -> Screen:
        # 照合番号B locks the card's face data after 10 wrong tries: the kiosk never tries
        # automatically with TRIES_MARGIN or fewer tries left (they are for staff entry), tries
        # automatically once per card insertion, and never uses the card's last try at all.
        tries = self._collation_tries(session)
        if isinstance(tries, Screen):
            return tries
        if session.collation_b_refused:
            return self._collation_fallback("collation_b_already_tried", tries)
        if tries <= TRIES_MARGIN:
            logger.info("kiosk: 照合番号B not tried automatically (%d tries left)", tries)
            return self._collation_fallback("collation_b_not_tried", tries)
        code: str | None = None
        if face.collation_b is not None:
            try:
                code = face.collation_b()
            except Exception as exc:  # a failing OCR is a missing code, not a crash (no digits logged)
                logger.warning("kiosk: 照合番号B source failed: %s", getattr(exc, "code", type(exc).__name__))
                code = None
        if not code:
            return self._collation_fallback("collation_b_unread", tries)
        try:
            session.card.verify_collation_b(code)
            photo = session.card.read_face_photo()
        except CollationBWrongError as exc:
            session.collation_b_refused = True
            logger.info("kiosk: the automatic 照合番号B was refused by the card (%d tries left)", exc.tries_left)
            return self._collation_fallback("collation_b_wrong", exc.tries_left)
        except CollationBFormatError:
            session.collation_b_refused = True
            return self._collation_fallback("collation_b_wrong", tries)
        except CollationBLockedError as exc:
            session.collation_b_refused = True
            return self._face_failed(msg.CARD_ERRORS[exc.code], exc.code)
        except CardError as exc:
            return self._card_error(exc)
        finally:
            del code
        return self._run_face(session, face, photo)

    def _run_face(self, session: _Session, face: FacePath, photo: bytes) -> Screen:
        job = next(self._jobs)
        session.face_job = job
        screen = self._show("face", face_status=msg.FACE_STATUS_PREPARING, busy=True)
        self._run(lambda: self._face_job(job, session, face, photo))
        return screen

    def _face_failed(self, message: str, code: str, *, keyed_entry: bool = False) -> Screen:
        session = self._session
        tries = self._tries(session) if session is not None else None
        actions: list[Action] = ["collation_b_entry"] if keyed_entry else []
        if tries:
            actions.append("pin")
        elif not keyed_entry:  # no PIN left and nothing else to try here: reception
            message = message.removesuffix(msg.FACE_FAILED_TAIL) + msg.ASK_STAFF
            self._refer(f"face:{code}")
        actions.append("restart")
        return self._show("face_failed", message=message, code=code, tries_left=tries, actions=tuple(actions))

    def _collation_fallback(self, code: str, collation_tries: int) -> Screen:
        """照合番号B could not be had automatically: offer staff entry while ≥ 2 tries are left."""
        keyed = self._face is not None and collation_tries > 1 and code != "collation_b_last_try"
        message = msg.COLLATION_B_FALLBACK[code]
        if keyed:
            message += msg.COLLATION_B_STAFF_TAIL
        elif code != "collation_b_last_try":
            message += msg.FACE_FAILED_TAIL
        return self._face_failed(message, code, keyed_entry=keyed)

    # --- step 3b': 照合番号B keyed in by staff ----------------------------------------------
    def open_collation_b_entry(self) -> Screen:
        """Staff tapped 「職員が照合番号Bを入力」: show the 14-digit pad (nothing reaches the card yet)."""
        with self._lock:
            self._guard()
            session = self._session
            if session is None or self._face is None:
                return self._reset_locked()
            if "collation_b_entry" not in self._screen.actions:
                return self._screen
            tries = self._collation_tries(session)
            if isinstance(tries, Screen):
                return tries
            session.method = "face"
            return self._entry_screen(session, tries)

    def _entry_screen(self, session: _Session, tries: int, *, message: str | None = None,
                      code: str | None = None) -> Screen:
        actions: tuple[Action, ...] = ("pin", "restart") if self._tries(session) else ("restart",)
        return self._show("collation_b_entry", tries_left=tries, message=message, code=code, actions=actions)

    def submit_collation_b(self, code: str) -> Screen:
        """Verify 照合番号B keyed in by staff, then run the face check as with an OCR'd code.

        The shape is checked here first (a malformed entry costs no try). The card's last try is
        never used: with 1 try left (or fewer) nothing is sent and only the PIN is offered.
        ``code`` is dropped after the VERIFY; it is never logged or kept on the flow.
        """
        with self._lock:
            self._guard()
            session = self._session
            face = self._face
            if session is None or face is None or self._screen.name != "collation_b_entry":
                del code
                return self._reset_locked()
            shown_tries = self._screen.tries_left or 0
            try:
                try:
                    validate_collation_b(code)
                except CollationOcrError:
                    logger.info("kiosk: a keyed 照合番号B had the wrong shape (nothing sent to the card)")
                    return self._entry_screen(session, shown_tries, message=msg.COLLATION_B_FORMAT,
                                              code="collation_b_format")
                tries = session.card.collation_b_tries_left()
                if tries <= 1:
                    return self._collation_fallback("collation_b_last_try", tries)
                session.card.verify_collation_b(code)
                photo = session.card.read_face_photo()
            except CollationBWrongError as exc:
                logger.info("kiosk: a keyed 照合番号B was refused by the card (%d tries left)", exc.tries_left)
                if exc.tries_left <= 1:
                    return self._collation_fallback("collation_b_last_try", exc.tries_left)
                return self._entry_screen(session, exc.tries_left, message=msg.collation_b_keyed_wrong(exc.tries_left),
                                          code="collation_b_keyed_wrong")
            except CollationBFormatError:
                return self._entry_screen(session, shown_tries, message=msg.COLLATION_B_FORMAT,
                                          code="collation_b_format")
            except CollationBLockedError as exc:
                return self._face_failed(msg.CARD_ERRORS[exc.code], exc.code)
            except CardError as exc:
                return self._card_error(exc)
            finally:
                del code
            logger.info("kiosk: 照合番号B keyed by staff accepted; face check starts")
            session.method = "face"
            return self._run_face(session, face, photo)

    def _face_status(self, job: int, status: str) -> None:
        text = {
            "framing": msg.FACE_STATUS_FRAMING,
            "detecting": msg.FACE_STATUS_DETECTING,
            "matching": msg.FACE_STATUS_MATCHING,
            "asking": msg.FACE_STATUS_ASKING,
        }.get(status, status)
        with self._lock:
            if self._session is not None and self._session.face_job == job and self._screen.name == "face":
                self._screen = replace(self._screen, seq=next(self._seq), face_status=text)
                self._touched = self._clock()

    def _face_job(self, job: int, session: _Session, face: FacePath, photo: bytes) -> None:
        try:
            try:
                outcome = face.checker(photo, lambda status: self._face_status(job, status))
            finally:
                del photo
            self._face_status(job, "asking")
            if outcome.accepted:
                challenge = self._server.challenge()
                attestation = face.signer(challenge=challenge, certificate=session.certificate, outcome=outcome)
            else:
                challenge, attestation = None, None
        except ServerError as exc:
            with self._lock:
                if self._current_job(job):
                    self._server_error(exc)
            return
        except Exception as exc:
            code = str(getattr(exc, "code", "camera_unavailable"))
            logger.warning("kiosk: face check could not run: %s", code)
            with self._lock:
                if self._current_job(job):
                    self._face_failed(msg.FACE_FAILED.get(code, msg.FACE_FAILED["camera_unavailable"])
                                      + msg.FACE_FAILED_TAIL, code)
            return
        with self._lock:
            if not self._current_job(job):
                return
            session.face_job = None
            if challenge is None or attestation is None:
                reason = outcome.reason or "no_match"
                self._face_failed(msg.FACE_FAILED.get(reason, msg.FACE_FAILED["no_match"]) + msg.FACE_FAILED_TAIL,
                                  reason)
                return
            self._ask_server(session, challenge, attestation=attestation)

    def _current_job(self, job: int) -> bool:
        return self._session is not None and self._session.face_job == job

    # --- step 4: result and consent -------------------------------------------------------
    def _after_result(self, session: _Session, result: EligibilityResult) -> Screen:
        session.result = result
        if self._on_card_checked is not None and result.insured is not None:
            try:
                self._on_card_checked(session.certificate, result)
            except Exception:  # the journal's disk must not stop the patient's check
                logger.exception("kiosk: the card could not be remembered for outage re-checks")
        name = result.insured.name if result.insured is not None else None
        notice = {"expires_soon": msg.CERT_EXPIRES_SOON, "grace_period": msg.CERT_GRACE}.get(
            result.certificate_notice or ""
        )
        if not result.usable or result.visit_id is None:
            self._complete(session, None, note="資格無効のため同意なし")
            return self._show("done", message=msg.NOT_USABLE, code="not_usable", notice=notice)
        assert result.insured is not None
        if result.insured.card_classification == CARD_CLASSIFICATION_CERTIFICATE:
            return self._show("consent_unavailable", message=msg.CANNOT_SHARE, patient_name=name, notice=notice)
        return self._show("consent", patient_name=name, notice=notice)

    def skip_consent(self) -> Screen:
        """資格証明書: nothing can be shared; the check completes without a consent."""
        with self._lock:
            self._guard()
            session = self._session
            if session is None or self._screen.name != "consent_unavailable":
                return self._reset_locked()
            self._complete(session, None, note="資格証明書のため情報提供なし")
            return self._show("done", message=msg.DONE)

    def submit_consent(self, choice: ConsentChoice) -> Screen:
        """Record the patient's choices with the server, then complete the check."""
        with self._lock:
            self._guard()
            session = self._session
            if session is None or self._screen.name != "consent" or session.result is None:
                return self._reset_locked()
            result = session.result
            assert result.visit_id is not None
            request = choice.request(result.visit_id, self._setting)
            try:
                record = self._server.consent(request)
            except ServerError as exc:
                logger.warning("kiosk: consent not recorded: %s", exc.code)
                self._complete(session, None, note="同意の登録に失敗")
                return self._show("done", message=msg.CONSENT_FAILED, code=exc.code)
            if record.limit_certificate:
                session.result = self._with_limit_certificate(result)
            self._complete(session, record)
            return self._show("done", message=msg.DONE)

    def _with_limit_certificate(self, result: EligibilityResult) -> EligibilityResult:
        """With 限度額 consent the staff see the certificate: ask again by number (consent given)."""
        insured = result.insured
        if insured is None:
            return result
        try:
            again = self._server.by_number(ByNumberQuery(
                insurer_number=insured.insurer_number, symbol=insured.symbol, number=insured.number,
                branch=insured.branch, birth_date=insured.birth_date, as_of=result.as_of,
                include_limit_certificate=True,
            ))
        except ServerError as exc:
            logger.warning("kiosk: limit certificate not fetched: %s", exc.code)
            return result
        if not again.usable:
            return result
        return result.model_copy(update={
            "limit_certificate": again.limit_certificate, "specific_diseases": again.specific_diseases,
            "public_expenses": again.public_expenses,
        })

    def _complete(self, session: _Session, consent: ConsentRecord | None, *, note: str | None = None) -> None:
        result = session.result
        if result is None:
            return
        if consent is None or not consent.limit_certificate:
            # what the patient did not share at this visit is never shown for it, whatever an
            # earlier visit's consent let the card check's answer carry (docs/consent.md)
            result = result.model_copy(
                update={"limit_certificate": None, "specific_diseases": [], "public_expenses": []}
            )
        record = CheckRecord(
            id=next(self._record_ids), at=self._now(), method=session.method or "pin", result=result,
            consent=consent, consent_note=note,
        )
        if self._on_check is not None:
            self._on_check(record)
        if self._face_file is not None:
            try:
                self._face_file(result, consent)
            except Exception:  # the clinic software's folder must not stop the patient's check
                logger.exception("kiosk: the XML face file could not be written")
        self._drop_session()


def _nonce(challenge: Challenge) -> bytes:
    return base64.b64decode(challenge.nonce)


def _thread_runner(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="kiosk-face", daemon=True).start()
