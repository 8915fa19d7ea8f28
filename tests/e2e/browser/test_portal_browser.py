"""Headless Chromium through the patient's own screens (「自分の情報を見る」), against the real server:
at the kiosk after the check, and at home (``clinic-terminal portal``'s app) from the card to
every screen. Each screen is saved to ``docs/screenshots/portal-*.png``.

The portal at home shares the kiosk's in-process virtual card (the same certificate, so the same
link); a card the kiosk module has not linked yet is linked here first, through the kiosk."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openpyxl
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from clinic_terminal.card.reader import MyNumberCard
from clinic_terminal.kiosk.wiring import build_portal
from schemas.insurer_files import EXPENSE_COLUMNS
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.eligibility.models import Insured
from shikaku_server.eligibility.service import today_jst
from shikaku_server.emergency.service import set_emergency
from shikaku_server.me.suspension import resume_person
from tests.e2e.browser.conftest import FACILITY_CODE, PIN, ServerThread, Stack, _upload, free_port
from tests.factories import INSURER_A, csv_bytes

pytestmark = pytest.mark.browser

SCREEN = ViewportSize(width=1366, height=768)  # a common laptop screen
TIMEOUT = 15_000
YEAR = today_jst().year - 1
PHARMACY = "1341234563"


def _screen(page: Page, name: str) -> None:
    expect(page.locator(f"body[data-screen='{name}']")).to_have_count(1, timeout=TIMEOUT)


def _tap_pin(page: Page, section: str, digits: str) -> None:
    pad = page.locator(f"section[data-screen='{section}']")
    for digit in digits:
        pad.locator(f"button[data-digit='{digit}']").click()
    pad.locator("button[data-pin='ok']").click()


def _db(stack: Stack) -> str:
    return f"sqlite:///{stack.xml_root.parent / 'shikaku.sqlite3'}"


@pytest.fixture(scope="module")
def portal_url(stack: Stack) -> Iterator[str]:
    key = {"insurer_number": INSURER_A, "symbol": "１２３", "number": "４５６７", "branch": "00"}
    rows = [
        {**key, "service_month": f"{YEAR}-{m:02d}", "facility_code": code, "facility_name": name,
         "care_kind": kind, "days": days, "total_cost": cost, "patient_paid": paid}
        for m, code, name, kind, days, cost, paid in [
            (2, FACILITY_CODE, "しかく内科クリニック", "2", "2", "10000", "3000"),
            (2, PHARMACY, "さくら薬局", "4", "1", "4000", "1200"),
            (5, FACILITY_CODE, "しかく内科クリニック", "2", "1", "6000", "1800"),
        ]
    ]
    _upload(stack.server_url, stack.insurer_token, "expenses", csv_bytes(list(EXPENSE_COLUMNS), rows))
    demo = stack.kiosk.demo_card
    assert demo is not None
    runtime = build_portal(stack.server_url, demo=demo, watch_card=False)
    server = ServerThread(runtime.app, free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()
        runtime.close()


def _emergency_read(stack: Stack) -> None:
    """A physician of an emergency hospital reads the drugs without consent (shown marked)."""
    demo = stack.kiosk.demo_card
    assert demo is not None
    transport = demo.connect()
    certificate = MyNumberCard(transport).read_auth_certificate()
    transport.close()
    engine = make_engine(_db(stack))
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        set_emergency(s, FACILITY_CODE, True)
    headers = {"Authorization": f"Bearer {stack.physician_token}"}
    try:
        ch = httpx.post(f"{stack.server_url}/v1/card/challenges", headers=headers, timeout=30).json()
        r = httpx.post(f"{stack.server_url}/v1/emergency/medications", headers=headers, timeout=30, json={
            "challenge_id": ch["challenge_id"], "certificate": base64.b64encode(certificate).decode(),
            "reason": "意識障害で救急搬送"})
        assert r.status_code == 200, r.text
    finally:
        with transaction(factory) as s:
            set_emergency(s, FACILITY_CODE, False)
        engine.dispose()


def test_at_the_kiosk_after_the_check(browser: Browser, stack: Stack, portal_url: str, screenshots: Path) -> None:
    httpx.post(stack.kiosk_url + "/api/kiosk/reset", timeout=10)  # whatever an earlier module left on screen
    page = browser.new_context(viewport=SCREEN, locale="ja-JP").new_page()
    page.goto(stack.kiosk_url + "/")
    _screen(page, "place_card")
    page.locator("#read-card").click()
    _screen(page, "choose_method")
    page.locator("#choose-pin").click()
    _screen(page, "pin")
    _tap_pin(page, "pin register", PIN)
    expect(page.locator("body[data-screen='register'], body[data-screen='consent']")).to_have_count(1, timeout=TIMEOUT)
    if page.locator("body[data-screen='register']").count():  # the card's first use: link it
        _tap_pin(page, "pin register", PIN)
    _screen(page, "consent")
    page.locator("[aria-label=薬剤情報] button[data-value=yes]").click()  # a live consent to withdraw later
    page.locator("#consent-ok").click()
    _screen(page, "done")
    button = page.get_by_role("button", name="自分の情報を見る")
    expect(button).to_be_visible()
    page.screenshot(path=str(screenshots / "portal-kiosk-done.png"))
    button.click()
    page.wait_for_url(stack.kiosk_url + "/me")
    _screen(page, "place_card")
    assert "山田" not in page.content()
    page.locator("#read-card").click()
    _screen(page, "pin")
    _tap_pin(page, "pin", PIN)
    _screen(page, "menu")
    expect(page.locator("section[data-screen=menu] h1")).to_have_text("山田 太郎 様")
    page.get_by_role("button", name="お薬の情報").click()
    _screen(page, "medications")
    expect(page.locator("[data-list=medications]")).to_contain_text("アムロジピン錠5mg")
    page.get_by_role("button", name="メニューに戻る").click()
    page.get_by_role("button", name="終了する（カードをお取りください）").click()
    page.wait_for_url(stack.kiosk_url + "/")
    _screen(page, "place_card")


def test_at_home_from_the_card_to_every_screen(
    browser: Browser, stack: Stack, portal_url: str, screenshots: Path
) -> None:
    _emergency_read(stack)
    context = browser.new_context(viewport=SCREEN, locale="ja-JP", accept_downloads=True)
    page = context.new_page()
    page.goto(portal_url + "/")
    _screen(page, "place_card")
    assert "山田" not in page.content()  # nothing shown before the PIN
    page.screenshot(path=str(screenshots / "portal-place-card.png"))
    page.locator("#read-card").click()
    _screen(page, "pin")
    _tap_pin(page, "pin", "9999")
    expect(page.locator("section[data-screen=pin] [data-field=message]")).to_have_text(
        "暗証番号が違います。あと2回間違えるとロックされます。", timeout=TIMEOUT)
    assert "山田" not in page.content()
    page.screenshot(path=str(screenshots / "portal-pin.png"))
    _tap_pin(page, "pin", PIN)
    _screen(page, "menu")
    expect(page.locator("section[data-screen=menu] h1")).to_have_text("山田 太郎 様")
    page.screenshot(path=str(screenshots / "portal-menu.png"))

    def menu(label: str, screen: str) -> None:
        if page.locator("body[data-screen='menu']").count() == 0:
            page.locator("section:not([hidden]) [data-action=menu]").first.click()
        _screen(page, "menu")
        page.get_by_role("button", name=label).click()
        _screen(page, screen)

    menu("お薬の情報", "medications")
    meds = page.locator("[data-list=medications]")
    expect(meds).to_contain_text("アムロジピン錠5mg")
    expect(meds).to_contain_text("東京都の薬局")  # what the pharmacy's code says (no name known at home)
    page.screenshot(path=str(screenshots / "portal-medications.png"), full_page=True)

    menu("健診の結果", "checkups")
    table = page.locator("section[data-screen=checkups] table")
    expect(table).to_contain_text("収縮期血圧")
    expect(table).to_contain_text("mmHg")
    expect(table.locator("td.flag-referral")).to_contain_text(["142"])  # 140 以上: 受診勧奨判定値
    expect(table.locator("td.flag-guidance").first).to_be_visible()
    page.screenshot(path=str(screenshots / "portal-checkups.png"), full_page=True)

    menu("医療費", "expenses")
    section = page.locator("section[data-screen=expenses]")
    expect(section.locator("[data-field=total_paid]")).to_have_text("6,000 円")
    expect(section.locator("[data-table=months] tbody tr")).to_have_count(2)
    expect(section.locator("[data-table=facilities]")).to_contain_text("さくら薬局")
    page.screenshot(path=str(screenshots / "portal-expenses.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#export-xlsx").click()
    assert download.value.suggested_filename == f"iryouhi_{YEAR}.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert book["医療費集計フォーム"]["C3"].value == 6000
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    text = Path(download.value.path()).read_bytes().decode("utf-8-sig")
    assert text.splitlines()[-1] == "合計,,,,4,20000,6000"

    menu("だれが見たか（閲覧の記録）", "access_log")
    log = page.locator("[data-list=access_log]")
    expect(log).to_contain_text("医療費のファイル出力")
    expect(log).to_contain_text("しかく内科クリニック")
    expect(log.locator(".item.emergency").first).to_contain_text("救急時の閲覧")
    page.screenshot(path=str(screenshots / "portal-access-log.png"), full_page=True)

    menu("同意の確認・取り消し", "consents")
    consents = page.locator("[data-list=consents]")
    expect(consents.locator("button", has_text="同意を取り消す").first).to_be_visible()
    page.screenshot(path=str(screenshots / "portal-consents.png"), full_page=True)
    live = consents.locator("button", has_text="同意を取り消す").count()
    consents.locator("button", has_text="同意を取り消す").first.click()
    expect(page.locator("section[data-screen=consents] [data-field=message]")).to_have_text("同意を取り消しました。")
    expect(consents.locator("button", has_text="同意を取り消す")).to_have_count(live - 1)
    expect(consents).to_contain_text("取り消し済み")

    # the card pulled: the session ends at once, the next look asks the PIN again
    assert httpx.post(portal_url + "/api/me/demo/remove-card", timeout=10).json()["screen"] == "place_card"
    _screen(page, "place_card")
    assert "山田" not in page.locator("main").inner_text()
    page.locator("#read-card").click()
    _screen(page, "pin")
    _tap_pin(page, "pin", PIN)
    _screen(page, "menu")

    menu("カードを一時停止する", "suspend")
    page.screenshot(path=str(screenshots / "portal-suspend-confirm.png"))
    page.get_by_role("button", name="いいえ、戻る").click()
    _screen(page, "menu")
    page.get_by_role("button", name="カードを一時停止する").click()
    page.get_by_role("button", name="はい、停止する").click()
    _screen(page, "error")
    expect(page.locator("section[data-screen=error] [data-field=message]")).to_contain_text("一時停止しました")
    page.screenshot(path=str(screenshots / "portal-suspended.png"))
    # a suspended card proves nothing, here as everywhere
    page.locator("section[data-screen=error] [data-action=read]").click()
    _screen(page, "pin")
    _tap_pin(page, "pin", PIN)
    _screen(page, "error")
    expect(page.locator("section[data-screen=error] [data-field=message]")).to_contain_text("一時停止中")
    context.close()

    engine = make_engine(_db(stack))  # the call centre resumes it (other modules use the card too)
    with transaction(make_session_factory(engine)) as s:
        person = s.query(Insured).filter(Insured.number_norm == "4567", Insured.branch == "00").one()
        assert resume_person(s, person.id, by="operator:browser-test") == 1
    engine.dispose()
