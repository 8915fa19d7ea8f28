"""Outage mode (緊急時) in headless Chromium: the real server stopped, then started on its port again.

A stack of its own (the session ``stack`` keeps its server up): the central server under uvicorn
on a fixed port and a demo kiosk (in-process virtual card, no PC/SC). The card is linked and checked
while the server is up; the server is stopped; the patient screen says what happens next and the
staff board shows the rows; the server is started again and the board shows the re-check outcomes.
Screenshots go to ``docs/screenshots/kiosk-outage*.png`` and ``staff-outage*.png``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from clinic_terminal.kiosk.wiring import KioskConfig, KioskRuntime, build_kiosk
from clinic_terminal.outage import Backoff
from shikaku_server.app import create_app
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.card_emulator import build_card
from testbed.kiosk_demo import write_profile
from testbed.pki import TestCA
from tests.e2e.browser.conftest import FACILITY_CODE, FACTS, PIN, ServerThread, _upload, free_port
from tests.factories import INSURER_A, eligibility_csv, person

pytestmark = pytest.mark.browser

LANDSCAPE = ViewportSize(width=1280, height=800)
PORTRAIT = ViewportSize(width=1080, height=1920)
STAFF = ViewportSize(width=1600, height=900)
TIMEOUT = 15_000
OUTAGE = "ただいま資格確認ができません。受付で申立書をご記入ください。"


@dataclass
class OutageStack:
    settings: Settings
    port: int
    central: ServerThread
    kiosk_url: str
    kiosk: KioskRuntime


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    root = tmp_path_factory.mktemp("browser-outage")
    ca = TestCA.create(common_name="JPKI Test Outage Browser CA")
    anchors = ca.write_trust_anchor(root / "jpki-root.pem")
    db_url = f"sqlite:///{root / 'shikaku.sqlite3'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    with transaction(make_session_factory(engine)) as session:
        token = add_facility(session, code=FACILITY_CODE, name="しかく内科クリニック", role="reception")
        insurer = add_insurer(session, numbers=[INSURER_A], name="全国健康保険協会 東京支部")
    engine.dispose()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIKAKU_TRUST_ANCHORS", str(anchors))
        settings = Settings(database_url=db_url, redis_url=None)
    port = free_port()
    central = ServerThread(create_app(settings), port).start()
    _upload(central.url, insurer, "eligibility", eligibility_csv([person()]))

    profile = write_profile(root / "demo-card", build_card(ca, pin=PIN, facts=FACTS).profile)
    config = KioskConfig(server_url=central.url, token=token, demo_card=profile, facility_code=FACILITY_CODE,
                         facility_name="しかく内科クリニック", data_dir=root / "terminal",
                         recheck_idle=0.5, recheck_backoff=Backoff(initial=0.2, cap=1.0))
    runtime = build_kiosk(config, watch_card=False)
    kiosk = ServerThread(runtime.app, free_port()).start()
    stack = OutageStack(settings, port, central, kiosk.url, runtime)
    try:
        yield stack
    finally:
        kiosk.stop()
        runtime.close()
        stack.central.stop()


def _screen(page: Page, name: str) -> None:
    expect(page.locator(f"body[data-screen='{name}']")).to_have_count(1, timeout=TIMEOUT)


def _pin_check(page: Page) -> None:
    page.get_by_role("button", name="読み取る").click()
    _screen(page, "choose_method")
    page.locator("#choose-pin").click()
    _screen(page, "pin")
    section = page.locator("section[data-screen='pin register']")
    for digit in PIN:
        section.locator(f"button[data-digit='{digit}']").click()
    section.locator("button[data-pin='ok']").click()


def test_outage_screens_then_the_re_check_on_the_staff_board(
    browser: Browser, outage_stack: OutageStack, screenshots: Path
) -> None:
    page = browser.new_page(viewport=LANDSCAPE, locale="ja-JP")
    page.goto(outage_stack.kiosk_url + "/")
    _screen(page, "place_card")

    # server up: first use links the card and the check completes (the terminal learns its number)
    _pin_check(page)
    _screen(page, "register")
    section = page.locator("section[data-screen='pin register']")
    for digit in PIN:
        section.locator(f"button[data-digit='{digit}']").click()
    section.locator("button[data-pin='ok']").click()
    _screen(page, "consent")
    page.locator("#consent-ok").click()
    _screen(page, "done")
    page.locator("section[data-screen=done]").get_by_role("button", name="最初の画面に戻る").click()
    _screen(page, "place_card")

    # the server goes away
    outage_stack.central.stop()
    _pin_check(page)
    _screen(page, "outage")
    outage = page.locator("section[data-screen=outage]")
    expect(outage.locator("[data-field=message]")).to_have_text(OUTAGE)
    expect(outage.get_by_text("被保険者資格申立書")).to_be_visible()
    expect(outage.get_by_role("button", name="最初の画面に戻る")).to_be_visible()
    page.screenshot(path=str(screenshots / "kiosk-outage.png"))
    portrait = browser.new_page(viewport=PORTRAIT, locale="ja-JP")
    portrait.goto(outage_stack.kiosk_url + "/")
    _screen(portrait, "outage")
    portrait.screenshot(path=str(screenshots / "kiosk-outage-portrait.png"))
    portrait.close()
    outage.get_by_role("button", name="最初の画面に戻る").click()
    _screen(page, "place_card")

    staff = browser.new_page(viewport=STAFF, locale="ja-JP")
    staff.goto(outage_stack.kiosk_url + "/staff")
    form = staff.locator("#number-form")
    form.locator("input[name=insurer_number]").fill(INSURER_A)
    form.locator("input[name=symbol]").fill("９９")
    form.locator("input[name=number]").fill("１")
    form.locator("input[name=birth_date]").fill("1990-01-01")
    form.get_by_role("button", name="照会する").click()
    expect(staff.locator("#number-info")).to_contain_text("資格確認できず — 申立書で受付")
    notices = staff.locator("#notices tbody tr")
    expect(notices).to_have_count(2, timeout=TIMEOUT)
    expect(staff.locator("#outage-banner")).to_be_visible()
    expect(staff.locator("#notices")).to_contain_text("資格確認できず — 申立書で受付")
    expect(staff.locator("#notices")).to_contain_text("後日確認: 待機中")
    expect(staff.locator("#notices")).to_contain_text("暗証番号はカードで確認済み")
    staff.screenshot(path=str(screenshots / "staff-outage.png"))

    # the server comes back on the same port: the board shows the outcomes by itself
    outage_stack.central = ServerThread(create_app(outage_stack.settings), outage_stack.port).start()
    expect(staff.locator("#outage-banner")).to_be_hidden(timeout=TIMEOUT)
    expect(staff.locator("#notices tr[data-status=valid]")).to_contain_text("後日確認: 有効", timeout=TIMEOUT)
    expect(staff.locator("#notices tr[data-status=not_insured]")).to_contain_text("後日確認: 資格なし — 保険者へ")
    expect(staff.locator("#notices tr[data-status=valid]")).to_contain_text("山田 太郎")
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=9))).date().isoformat()
    expect(staff.locator("#notices tr[data-status=valid]")).to_contain_text(f"{today} 時点")
    staff.screenshot(path=str(screenshots / "staff-outage-rechecked.png"))
    staff.close()
    page.close()
