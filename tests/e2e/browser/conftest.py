"""The whole system for the browser tests: the REAL central server and the kiosk, each under uvicorn.

* central server: ``shikaku_server.app.create_app`` on a free localhost port, an SQLite file built
  by the Alembic migrations, a clinic (physician token) and an insurer added through
  ``shikaku_server.auth.service``, eligibility / medication / checkup data uploaded through
  ``POST /v1/uploads``, the test PKI's root trusted through ``SHIKAKU_TRUST_ANCHORS``, and the
  kiosk terminal's face-attestation key registered;
* kiosk: ``clinic_terminal.kiosk.wiring.build_kiosk`` in demo mode (a virtual card from a profile
  folder, a video file as the camera) on another free port.

Chromium is Debian's ``/usr/bin/chromium``; when it cannot start the tests FAIL (never skip).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Playwright, sync_playwright

from clinic_terminal.kiosk.wiring import KioskConfig, KioskRuntime, build_kiosk
from schemas.attestation import generate_terminal_key, private_key_pem, public_key_pem
from shikaku_server.app import create_app
from shikaku_server.auth.service import add_facility, add_insurer, add_terminal
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.eligibility.service import today_jst
from shikaku_server.migrate import upgrade
from testbed.card_emulator import BasicFactsRecord, build_card
from testbed.kiosk_demo import write_profile
from testbed.pki import TestCA
from tests.factories import INSURER_A, csv_bytes, eligibility_csv, person

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
FACILITY_CODE = "0110113719"
TERMINAL_ID = "kiosk-e2e-1"
PIN = "1234"
FACTS = BasicFactsRecord(name="山田 太郎", address="東京都千代田区霞が関1-2-2", birth_date=dt.date(1980, 4, 1), sex="1")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
MEDICATION_COLUMNS = ["insurer_number", "symbol", "number", "branch", "dispensed_on", "facility_code", "drug_code",
                      "drug_name", "quantity", "unit", "days"]
CHECKUP_COLUMNS = ["insurer_number", "symbol", "number", "branch", "checked_on", "height_cm", "weight_kg", "waist_cm",
                   "bmi", "systolic", "diastolic", "triglycerides", "hdl", "ldl", "ast", "alt", "ggt",
                   "fasting_glucose", "hba1c", "urine_protein"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn in a daemon thread; ``stop()`` asks it to exit and waits."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                ws="none", http="h11", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start on {self.url}", pytrace=False)
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Stack:
    server_url: str
    kiosk_url: str
    kiosk: KioskRuntime
    insurer_token: str
    physician_token: str
    xml_root: Path


def _upload(url: str, token: str, kind: str, body: bytes) -> None:
    response = httpx.post(f"{url}/v1/uploads?kind={kind}", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0, response.text


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from testbed.faces import card_photo_jp2, natural_frames, write_clip

    root = tmp_path_factory.mktemp("browser-e2e")
    ca = TestCA.create(common_name="JPKI Test Browser CA")
    anchors = ca.write_trust_anchor(root / "jpki-root.pem")
    db_url = f"sqlite:///{root / 'shikaku.sqlite3'}"
    upgrade(db_url)

    terminal_key = generate_terminal_key()
    key_file = root / "terminal-key.pem"
    key_file.write_bytes(private_key_pem(terminal_key))
    engine = make_engine(db_url)
    with transaction(make_session_factory(engine)) as session:
        physician = add_facility(session, code=FACILITY_CODE, name="しかく内科クリニック", role="physician")
        insurer = add_insurer(session, numbers=[INSURER_A], name="全国健康保険協会 東京支部")
        add_terminal(session, terminal_id=TERMINAL_ID, facility_code=FACILITY_CODE,
                     public_key_pem=public_key_pem(terminal_key).decode())
    engine.dispose()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIKAKU_TRUST_ANCHORS", str(anchors))
        # one staff token walks every screen of every browser module, with many lookups that match
        # nobody on purpose (資格なし rows): the failed-lookup limit (30 an hour) would refuse the
        # later ones depending on which module ran first; the limits are tested elsewhere
        settings = Settings(
            database_url=db_url,
            redis_url=None,
            rate_limit_lookup_failures_per_token=0,
            rate_limit_lookup_failures_per_facility=0,
        )
    assert settings.trust_anchors == str(anchors)
    central = ServerThread(create_app(settings), free_port()).start()

    today = today_jst()
    _upload(central.url, insurer, "eligibility", eligibility_csv([
        person(elderly_ratio="", limit_kind="01", limit_class="A03", limit_valid_from="2024-04-01"),
        person(branch="01", name="山田 花子", name_kana="ヤマダ ハナコ", sex="2", birth_date="1982-02-02",
               personal_family="2"),
    ], optional=True))
    key = {"insurer_number": INSURER_A, "symbol": "１２３", "number": "４５６７", "branch": "00"}
    _upload(central.url, insurer, "medications", csv_bytes(MEDICATION_COLUMNS, [
        {**key, "dispensed_on": (today - dt.timedelta(days=d)).isoformat(), "facility_code": facility,
         "drug_code": code, "drug_name": name, "quantity": q, "unit": "錠", "days": days}
        for d, facility, code, name, q, days in [
            (14, "1341234563", "620000001", "アムロジピン錠5mg", "28", "28"),  # a pharmacy in 東京都
            (45, FACILITY_CODE, "620000002", "ロキソプロフェンNa錠60mg", "21", "7"),  # this clinic (院内処方)
        ]
    ]))
    _upload(central.url, insurer, "checkups", csv_bytes(CHECKUP_COLUMNS, [
        {**key, "checked_on": (today - dt.timedelta(days=200)).isoformat(), "height_cm": "171.2", "weight_kg": "70.5",
         "waist_cm": "86.0", "bmi": "24.1", "systolic": "142", "diastolic": "82", "triglycerides": "160", "hdl": "52",
         "ldl": "118", "ast": "24", "alt": "35", "ggt": "40", "fasting_glucose": "98", "hba1c": "5.6",
         "urine_protein": "±"},
        {**key, "checked_on": (today - dt.timedelta(days=565)).isoformat(), "height_cm": "171.0", "weight_kg": "68.0",
         "waist_cm": "83.5", "bmi": "23.3", "systolic": "126", "diastolic": "80", "triglycerides": "120", "hdl": "55",
         "ldl": "112", "ast": "22", "alt": "28", "ggt": "35", "fasting_glucose": "94", "hba1c": "5.4",
         "urine_protein": "-"},
    ]))

    card = build_card(ca, pin=PIN, facts=FACTS, photo_jp2=card_photo_jp2("obama.jpg"))
    profile = write_profile(root / "demo-card", card.profile)
    clip = write_clip(natural_frames("obama.jpg", 30), root / "live")
    config = KioskConfig(
        server_url=central.url, token=physician, demo_card=profile, camera=str(clip), terminal_key=key_file,
        terminal_id=TERMINAL_ID, facility_code=FACILITY_CODE, role="physician", facility_name="しかく内科クリニック",
        xml_root=root / "xml",
    )
    runtime = build_kiosk(config, watch_card=False)
    assert runtime.face_enabled
    kiosk = ServerThread(runtime.app, free_port()).start()
    try:
        yield Stack(central.url, kiosk.url, runtime, insurer, physician, root / "xml")
    finally:
        kiosk.stop()
        runtime.close()
        central.stop()


# package scope, not session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and a later module on the same worker that calls asyncio.run() would fail
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as exc:
        pytest.fail(f"Chromium ({CHROMIUM}) could not start: {exc}", pytrace=False)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
