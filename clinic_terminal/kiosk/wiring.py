"""Assemble the kiosk from its configuration: card reader, camera, face check, server client, XML files.

The only place that chooses implementations (PC/SC or demo card, OpenCV camera, the face module,
the attestation key). :func:`build_kiosk` returns everything with a ``close()``; the command
module only parses options and runs uvicorn.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
from fastapi import FastAPI

from clinic_terminal.card.transport import CardTransport
from clinic_terminal.client import CardClient
from clinic_terminal.kiosk.app import KioskInfo, create_kiosk_app
from clinic_terminal.kiosk.flow import (
    AttestationSigner,
    CheckFlow,
    FaceChecker,
    FaceFileWriter,
    FaceOutcome,
    FacePath,
    Referral,
)
from clinic_terminal.kiosk.homecare import HomeCareService
from clinic_terminal.kiosk.preview import LivePreview, PreviewCamera
from clinic_terminal.kiosk.reception import ReceptionNotices
from clinic_terminal.kiosk.staff import ReceptionBoard, Role, StaffService
from clinic_terminal.outage import Backoff, OutageEntry, OutageJournal, Rechecker
from clinic_terminal.portal.session import MySession
from clinic_terminal.portal.web import create_portal_app
from schemas.card import Challenge, ConsentRecord, Setting
from schemas.eligibility import EligibilityResult

if TYPE_CHECKING:
    from clinic_terminal.face.camera import CameraSource
    from testbed.kiosk_demo import DemoCard  # demo mode only: see _load_demo_card

logger = logging.getLogger(__name__)

XmlEncoding = Literal["utf-8", "shift_jis"]


@dataclass(frozen=True)
class KioskConfig:
    server_url: str
    token: str | None
    reader: str | None = None
    demo_card: Path | None = None
    camera: str | None = None
    card_front: str | None = None  # camera/file showing the card front: 照合番号B by OCR
    terminal_key: Path | None = None
    terminal_id: str | None = None
    facility_code: str | None = None
    xml_root: Path | None = None
    xml_encoding: str = "utf-8"
    role: Role = "reception"
    setting: Setting = "outpatient"
    facility_name: str | None = None
    idle_timeout: float = 120.0
    done_timeout: float = 15.0
    # outage mode: the journal's folder (None: <xml_root>/state, or no journal at all) and its key
    data_dir: Path | None = None
    journal_key: str | None = None
    recheck_idle: float = 30.0
    recheck_backoff: Backoff = field(default_factory=Backoff)


@dataclass
class KioskRuntime:
    app: FastAPI
    flow: CheckFlow
    board: ReceptionBoard
    client: CardClient
    face_enabled: bool
    demo_card: DemoCard | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    notices: ReceptionNotices | None = None
    journal: OutageJournal | None = None
    rechecker: Rechecker | None = None
    mine: MySession | None = None

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # closing must go on
                logger.exception("kiosk: error while closing")


# --- adapters to the other packages ----------------------------------------------------------------


def make_face_checker(camera_factory: Callable[[], CameraSource]) -> FaceChecker:
    """The face module's check, split in its steps so the screen can say 顔を検出中 / 照合中."""
    from clinic_terminal.face import compare_frames, encode_card_photo, frames, get_face_settings

    def check(card_photo: bytes, on_status: Callable[[str], None]) -> FaceOutcome:
        settings = get_face_settings()
        started = time.perf_counter()
        card_encoding = encode_card_photo(card_photo, max_width=settings.max_width)
        with camera_factory() as camera:
            if isinstance(camera, PreviewCamera):  # the patient sees themselves framed first
                on_status("framing")
                camera.frame()
            on_status("detecting")
            captured = list(frames(camera, settings.frames))
        on_status("matching")
        try:
            return compare_frames(card_encoding, captured, settings=settings, threshold=settings.threshold,
                                  started=started)
        finally:
            captured.clear()

    return check


def make_attestation_signer(key_pem: bytes, terminal_id: str, facility_code: str) -> AttestationSigner:
    """Signs ``schemas.attestation`` claims with the terminal's own P-256 key."""
    from schemas.attestation import (
        FaceAttestationClaims,
        certificate_fingerprint,
        load_private_key_pem,
        sign_attestation,
    )

    key = load_private_key_pem(key_pem)

    def sign(*, challenge: Challenge, certificate: bytes, outcome: FaceOutcome) -> str:
        if outcome.distance is None:
            raise ValueError("an accepted face check has a distance")
        claims = FaceAttestationClaims(
            challenge_id=challenge.challenge_id,
            certificate_fingerprint=certificate_fingerprint(certificate),
            distance=outcome.distance,
            threshold=outcome.threshold,
            liveness=outcome.liveness,
            match=outcome.match,
            iat=int(time.time()),
            facility_code=facility_code,
            terminal_id=terminal_id,
        )
        return sign_attestation(claims, key, terminal_id)

    return sign


def make_face_file_writer(root: Path, facility_code: str, encoding: str) -> FaceFileWriter:
    """Writes the XML face file of each card check into ``root/face`` (clinic software reads it)."""
    from clinic_terminal.xmlif.face import write_face_result
    from clinic_terminal.xmlif.model import ConsentChoices

    enc: XmlEncoding = "shift_jis" if encoding.lower() == "shift_jis" else "utf-8"

    def write(result: EligibilityResult, consent: ConsentRecord | None) -> None:
        choices = None
        if consent is not None:
            choices = ConsentChoices(
                consent_time=consent.given_at, drug=consent.drug, checkup=consent.checkup,
                clinical=consent.clinical, limit_certificate=consent.limit_certificate, setting=consent.setting,
            )
        write_face_result(root, result, choices, facility_code, encoding=enc)

    return write


# --- assembly ---------------------------------------------------------------------------------------


def build_kiosk(
    config: KioskConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    connect_card: Callable[[], CardTransport] | None = None,
    camera_factory: Callable[[], CameraSource] | None = None,
    face_checker: FaceChecker | None = None,
    collation_b: Callable[[], str | None] | None = None,
    watch_card: bool = True,
    now: Callable[[], dt.datetime] | None = None,
) -> KioskRuntime:
    """Everything the kiosk needs; injected arguments win over the configuration (tests, demos)."""
    closers: list[Callable[[], None]] = []
    client = CardClient(config.server_url, config.token, transport=transport)
    closers.append(client.close)

    demo_reader = None
    demo: DemoCard | None = None
    if connect_card is None:
        connect_card, demo = card_source(config.reader, config.demo_card)
        if demo is not None:
            demo_reader = demo.reader
            if collation_b is None and demo.has_photo:
                code = demo.collation_b
                collation_b = lambda: code  # noqa: E731 - the demo card's printed 照合番号B

    if config.camera is not None or config.card_front is not None:
        _require_face_libraries("--camera" if config.camera is not None else "--card-front")
    if collation_b is None and config.card_front is not None:
        from clinic_terminal.face.camera import OpenCVCamera
        from clinic_terminal.ocr import read_collation_b
        from clinic_terminal.ocr.collation import sharpest_front

        front_source = config.card_front

        def collation_b_by_ocr() -> str | None:
            return read_collation_b(sharpest_front(OpenCVCamera(front_source)))

        collation_b = collation_b_by_ocr

    if camera_factory is None and config.camera is not None:
        from clinic_terminal.face.camera import OpenCVCamera

        source = config.camera

        def open_camera() -> CameraSource:
            return OpenCVCamera(source)

        camera_factory = open_camera

    # the face screen's live preview: the frames the check reads, the latest kept in memory only
    preview = LivePreview()
    if camera_factory is not None:
        raw_camera = camera_factory

        def previewed_camera() -> CameraSource:
            return PreviewCamera(raw_camera(), preview)

        camera_factory = previewed_camera

    face: FacePath | None = None
    signer: AttestationSigner | None = None
    if config.terminal_key is not None and config.terminal_id and config.facility_code:
        signer = make_attestation_signer(config.terminal_key.read_bytes(), config.terminal_id, config.facility_code)
    if face_checker is None and camera_factory is not None:
        face_checker = make_face_checker(camera_factory)
    photo_on_card = demo is None or demo.has_photo
    if face_checker is not None and signer is not None and photo_on_card:
        face = FacePath(checker=face_checker, signer=signer, collation_b=collation_b)
        if collation_b is None:
            logger.info("kiosk: no automatic 照合番号B source (--card-front): staff key it in for 顔認証")
    elif face_checker is not None or camera_factory is not None:
        logger.warning(
            "kiosk: 顔認証 is off (it needs --camera, --terminal-key, --terminal-id, --facility-code "
            "and, with a demo card, a card photo)"
        )

    face_file: FaceFileWriter | None = None
    if config.xml_root is not None:
        if not config.facility_code:
            raise ValueError("--xml-root needs the facility code (--facility-code or SHIKAKU_FACILITY_CODE)")
        face_file = make_face_file_writer(config.xml_root, config.facility_code, config.xml_encoding)

    clock_now = now or (lambda: dt.datetime.now(dt.UTC))
    board = ReceptionBoard(now=clock_now)
    outage_files = _OutageFaceFiles.of(config) if face_file is not None else None
    journal, rechecker = _outage(config, client, closers,
                                 on_outcome=None if outage_files is None else outage_files.followup)
    notices = ReceptionNotices(journal, now=clock_now, on_journalled=None if rechecker is None else rechecker.wake)
    on_referral: Callable[[Referral], None] = notices.refer
    if outage_files is not None:
        on_referral = outage_files.wrap(notices.refer)
    flow = CheckFlow(
        connect_card=connect_card, server=client, face=face, on_check=board.add, face_file=face_file,
        on_referral=on_referral, on_card_checked=notices.remember_card,
        setting=config.setting, idle_timeout=config.idle_timeout, done_timeout=config.done_timeout, now=clock_now,
    )
    staff = StaffService(client, board, role=config.role,
                         outage=None if journal is None else notices.journal_number)
    mine = MySession(connect_card=connect_card, server=client, idle_timeout=config.idle_timeout)
    app = create_kiosk_app(flow, staff, board, mine=mine, info=KioskInfo(demo=config.demo_card is not None,
                                                             facility_name=config.facility_name,
                                                             facility_code=config.facility_code), notices=notices,
                           preview=preview, remove_card=None if demo is None else _demo_remove(demo, flow, mine),
                           homecare=HomeCareService(client))
    if watch_card:
        closers.extend(_watch_card(flow, demo_reader, config.reader, mine))
    return KioskRuntime(app=app, flow=flow, board=board, client=client, face_enabled=face is not None,
                        demo_card=demo, closers=closers, notices=notices, journal=journal, rechecker=rechecker,
                        mine=mine)


def card_source(
    reader: str | None, demo_card: Path | None
) -> tuple[Callable[[], CardTransport], DemoCard | None]:
    """How to reach the card: the demo's in-process virtual card, else PC/SC (pyscard)."""
    if demo_card is not None:
        demo = _load_demo_card(demo_card)
        return demo.connect, demo
    from clinic_terminal.card.pyscard_transport import PyscardTransport

    def connect_pcsc() -> CardTransport:
        return PyscardTransport(reader)

    return connect_pcsc, None


@dataclass
class PortalRuntime:
    app: FastAPI
    mine: MySession
    client: CardClient
    demo_card: DemoCard | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # closing must go on
                logger.exception("portal: error while closing")


def build_portal(
    server_url: str,
    *,
    reader: str | None = None,
    demo_card: Path | None = None,
    idle_timeout: float = 180.0,
    transport: httpx.BaseTransport | None = None,
    demo: DemoCard | None = None,
    watch_card: bool = True,
) -> PortalRuntime:
    """``clinic-terminal portal``: the patient's own screens on a PC with a reader. No facility
    token: every call is proven by the card alone (``/v1/me/challenges``). ``demo``: an already
    loaded virtual card (tests share the kiosk's)."""
    client = CardClient(server_url, None, transport=transport)
    if demo is not None:
        connect_card: Callable[[], CardTransport] = demo.connect
    else:
        connect_card, demo = card_source(reader, demo_card)
    mine = MySession(connect_card=connect_card, server=client, idle_timeout=idle_timeout)
    runtime = PortalRuntime(create_portal_app(mine, demo=demo is not None), mine, client, demo, [client.close])
    if demo is not None:
        demo_remove = demo

        @runtime.app.post("/api/me/demo/remove-card")
        def remove_card() -> dict[str, object]:
            """Demo mode only: take the virtual card out of its reader."""
            demo_remove.reader.remove()
            mine.card_removed()
            return mine.state()

    if watch_card:
        runtime.closers.extend(_watch_card(None, None if demo is None else demo.reader, reader, mine))
    return runtime


DEMO_HINT = "a source checkout of the project, or pip install 'shikaku[demo]'"


def _load_demo_card(folder: Path) -> DemoCard:
    """Demo mode is the one place the terminal uses ``testbed`` (its card emulator): imported here,
    only for ``--demo-card``, so that nothing else in the terminal needs ``testbed`` installed."""
    try:
        from testbed.kiosk_demo import load_demo_card
    except ImportError as exc:
        raise ValueError(f"--demo-card needs the testbed ({exc.name or 'testbed'} is missing): {DEMO_HINT}") from None
    return load_demo_card(folder)


def _require_face_libraries(option: str) -> None:
    """The camera options need the face libraries: say what to install at start, not at the first check."""
    try:
        import clinic_terminal.face  # noqa: F401 - the import is the check
    except ImportError as exc:  # FaceLibrariesMissingError: its message names the pip command
        raise ValueError(f"{option}: {exc}") from None


@dataclass(frozen=True)
class _OutageFaceFiles:
    """With the XML folder interface: a face file for a card check the server could not answer
    (abnormal end, ``unavailable``) and one for its re-check by number (docs/xml-interface.md)."""

    root: Path
    facility_code: str
    encoding: XmlEncoding

    @classmethod
    def of(cls, config: KioskConfig) -> _OutageFaceFiles | None:
        if config.xml_root is None or not config.facility_code:
            return None
        enc: XmlEncoding = "shift_jis" if config.xml_encoding.lower() == "shift_jis" else "utf-8"
        return cls(config.xml_root, config.facility_code, enc)

    def followup(self, entry: OutageEntry) -> None:
        from clinic_terminal.xmlif.followup import write_face_followup

        write_face_followup(self.root, entry, self.facility_code, encoding=self.encoding)

    def wrap(self, refer: Callable[[Referral], None]) -> Callable[[Referral], None]:
        from clinic_terminal.xmlif.followup import write_face_outage

        def refer_and_write(referral: Referral) -> None:
            refer(referral)
            if referral.outage:
                try:
                    write_face_outage(self.root, self.facility_code, encoding=self.encoding)
                except Exception:  # the clinic software's folder must not stop the patient screen
                    logger.exception("kiosk: the outage face file could not be written")

        return refer_and_write


def _outage(
    config: KioskConfig, client: CardClient, closers: list[Callable[[], None]], *,
    on_outcome: Callable[[OutageEntry], None] | None = None,
) -> tuple[OutageJournal | None, Rechecker | None]:
    """The outage journal and its background re-check of the kiosk's and staff screen's entries."""
    directory = config.data_dir or (config.xml_root / "state" if config.xml_root is not None else None)
    if directory is None:
        logger.warning("kiosk: no data directory: checks made while the server is away are not journalled")
        return None, None
    journal = OutageJournal(directory, key=config.journal_key)
    if not journal.encrypted:
        logger.warning("kiosk: SHIKAKU_TERMINAL_JOURNAL_KEY is not set: the outage journal is not encrypted")
    rechecker = Rechecker(journal, client, sources=("kiosk", "staff"), backoff=config.recheck_backoff,
                          idle=config.recheck_idle, on_outcome=on_outcome).start()
    closers.append(journal.close)
    closers.append(rechecker.stop)  # closers run in reverse: the thread stops before the journal closes
    return journal, rechecker


def _demo_remove(demo: DemoCard, flow: CheckFlow, mine: MySession | None = None) -> Callable[[], None]:
    """The demo's 「カードを抜く」: the virtual card leaves its reader, as a hand would take it."""

    def remove() -> None:
        demo.reader.remove()
        flow.card_removed()  # the card monitor would say so too (when watching); the flow acts once
        if mine is not None:
            mine.card_removed()

    return remove


def _watch_card(
    flow: CheckFlow | None, demo_reader: object | None, reader_name: str | None, mine: MySession | None = None
) -> list[Callable[[], None]]:
    """Start reading when a card is placed and start over when it is taken away (the check, and
    the patient's own screens: a pulled card ends their session)."""
    from clinic_terminal.card.inprocess import InProcessReader
    from clinic_terminal.card.monitor import CardEvent, CardEventKind, CardMonitor, CardWatcher, InProcessCardMonitor

    def on_event(event: CardEvent) -> None:
        try:
            if event.kind is CardEventKind.REMOVED and mine is not None:
                mine.card_removed()
            if flow is None:
                return
            screen = flow.screen()
            waiting = screen.name == "place_card" or screen.code == "card_taken_out"
            if event.kind is CardEventKind.INSERTED and waiting:
                flow.read_card()
            elif event.kind is CardEventKind.REMOVED:
                flow.card_removed()
        except Exception:
            logger.exception("kiosk: card event handling failed")

    monitor: CardMonitor
    if isinstance(demo_reader, InProcessReader):
        monitor = InProcessCardMonitor(demo_reader)
    else:
        try:
            from clinic_terminal.card.pyscard_monitor import PyscardCardMonitor

            monitor = PyscardCardMonitor(reader_name)
        except Exception as exc:  # no pcscd / no reader yet: the 読み取る button still works
            logger.warning("kiosk: no card monitor (%s); use the 読み取る button", exc)
            return []
    watcher = CardWatcher(monitor, on_event).start()
    return [watcher.stop]
