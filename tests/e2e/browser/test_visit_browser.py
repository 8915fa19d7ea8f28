"""Headless Chromium through the visiting staff's page (``/visit``, 居宅同意取得型) at 390 × 844, a
phone, against the real server: the first visit by card (the kiosk's own card flow: the PIN) and by
目視確認, the course's consent (its extent and its last day), the list of ongoing courses with
「再照会」 per course, a re-check refused once the course's consent has ended, and the patient's own
access log saying how they were confirmed. Each screen is saved to ``docs/screenshots/visit-*.png``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, ViewportSize, expect

from shikaku_server.consent.models import Consent
from shikaku_server.database import make_engine
from shikaku_server.eligibility.service import today_jst
from tests.e2e.browser.conftest import PIN, Stack

pytestmark = pytest.mark.browser

PHONE = ViewportSize(width=390, height=844)
TIMEOUT = 15_000


def _view(page: Page, name: str) -> None:
    expect(page.locator(f"body[data-view='{name}']")).to_have_count(1, timeout=TIMEOUT)


def _tap_pin(page: Page, digits: str) -> None:
    pad = page.locator("section[data-view=card] [data-screen='pin register']")
    for digit in digits:
        pad.locator(f"button[data-digit='{digit}']").click()
    pad.locator("button[data-pin='ok']").click()


def _shot(page: Page, path: Path, *, full_page: bool = False) -> None:
    """A screenshot from the top of the page (the bar is sticky: scrolled, it would land mid-page)."""
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=full_page)


def _no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is wider than the phone: {width}"


def test_first_visits_courses_and_recheck_on_a_phone(browser: Browser, stack: Stack, screenshots: Path) -> None:
    httpx.post(stack.kiosk_url + "/api/kiosk/reset", timeout=10)  # whatever an earlier module left on screen
    context = browser.new_context(viewport=PHONE, locale="ja-JP", device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    page.goto(stack.kiosk_url + "/visit")
    _view(page, "menu")
    expect(page.locator("#facility-name")).to_have_text("しかく内科クリニック")
    _no_horizontal_scroll(page)
    _shot(page, screenshots / "visit-menu.png")

    # --- first visit by card: the kiosk's card flow, then the course's consent
    page.get_by_role("button", name="初回の訪問").click()
    _view(page, "first")
    _shot(page, screenshots / "visit-first.png")
    page.get_by_role("button", name="カードを読み取る（暗証番号）").click()
    _view(page, "card")
    page.get_by_role("button", name="読み取る", exact=True).click()
    page.get_by_role("button", name="暗証番号を入力する").click()
    expect(page.locator("section[data-view=card] h1:visible")).to_have_text("暗証番号（数字4桁）", timeout=TIMEOUT)
    page.locator("section[data-view=card] button[data-digit='1']").click()
    _shot(page, screenshots / "visit-pin.png")
    page.locator("section[data-view=card] button[data-pin='clear']").click()
    _tap_pin(page, PIN)
    expect(page.locator("body[data-view='consent'], section[data-view=card] h1:text('初回登録')")).to_have_count(
        1, timeout=TIMEOUT)
    if page.locator("body[data-view='card']").count():  # the card's first use (this module alone): link it
        _tap_pin(page, PIN)
    _view(page, "consent")
    expect(page.locator("#consent-name")).to_have_text("山田 太郎")
    for category in ("drug", "checkup", "clinical", "limit_certificate"):
        expect(page.locator(f".consent[data-category={category}] button.selected")).to_have_text("提供しない")
    expect(page.locator("#course-on")).to_be_checked()
    page.locator(".consent[data-category=drug] button[data-value=yes]").click()
    page.locator(".consent[data-category=limit_certificate] button[data-value=yes]").click()
    _no_horizontal_scroll(page)
    _shot(page, screenshots / "visit-consent.png", full_page=True)
    page.locator("#consent-ok").click()
    _view(page, "done")
    expect(page.locator("#done-title")).to_have_text("同意を登録しました")
    _shot(page, screenshots / "visit-done.png")

    # --- a later visit: the course is listed, 再照会 without the card
    page.get_by_role("button", name="再照会の一覧へ").click()
    _view(page, "courses")
    card = page.locator(".course-card")
    expect(card).to_have_count(1, timeout=TIMEOUT)
    expect(card).to_contain_text("山田 太郎 様")
    expect(card).to_contain_text("マイナ保険証（暗証番号）")
    expect(card).to_contain_text("訪問診療・オンライン診療（取り消されるまで）")
    card.get_by_role("button", name="再照会（訪問診療）").click()
    outcome = card.locator(".outcome")
    expect(outcome).to_have_class("outcome ok", timeout=TIMEOUT)
    expect(outcome.locator(".headline")).to_have_text("資格確認できました（有効・3割負担）")
    expect(outcome).to_contain_text("限度額 区分 ウ")  # shared under this course's consent
    _no_horizontal_scroll(page)
    _shot(page, screenshots / "visit-recheck.png")

    # --- first visit by 目視確認: a new course (it ends the card's one), home visits only, a last day
    page.locator("#to-menu").click()
    page.get_by_role("button", name="初回の訪問").click()
    page.get_by_role("button", name="目視確認").click()
    _view(page, "visual")
    form = page.locator("#visual-form")
    form.get_by_role("button", name="資格を確認する").click()
    expect(page.locator("#visual-message")).to_have_text("カードの顔写真とご本人を見比べてから確認してください。")
    form.get_by_label("カードの顔写真とご本人を見比べ").check()
    form.get_by_label("確認した職員の氏名").fill("訪問 花子")
    form.get_by_label("氏名", exact=True).fill("山田 太郎")
    form.get_by_label("生年月日").first.fill("1980-04-01")
    form.get_by_label("性別").select_option("1")
    form.get_by_label("住所").fill("東京都千代田区霞が関1-2-2")
    _no_horizontal_scroll(page)
    _shot(page, screenshots / "visit-visual.png", full_page=True)
    form.get_by_role("button", name="資格を確認する").click()
    _view(page, "consent")
    expect(page.locator("#first-result")).to_contain_text("確認方法：目視確認")
    until = (today_jst() + dt.timedelta(days=90)).isoformat()
    page.locator("#care-online").uncheck()
    page.locator("#course-until").fill(until)
    _shot(page, screenshots / "visit-visual-consent.png", full_page=True)
    page.locator("#consent-ok").click()
    _view(page, "done")
    page.get_by_role("button", name="再照会の一覧へ").click()
    card = page.locator(".course-card")
    expect(card).to_have_count(1, timeout=TIMEOUT)  # the later answer replaced the card's course
    expect(card).to_contain_text("目視確認（訪問 花子）")
    expect(card.get_by_role("button", name="再照会（オンライン診療）")).to_have_count(0)
    card.get_by_role("button", name="再照会（訪問診療）").click()
    expect(card.locator(".outcome")).to_have_class("outcome ok", timeout=TIMEOUT)
    _shot(page, screenshots / "visit-courses.png", full_page=True)

    # --- the course's consent ends (its last day passed): the same button says so, plainly
    engine = make_engine(f"sqlite:///{stack.xml_root.parent / 'shikaku.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(sa.update(Consent).where(Consent.setting == "home", Consent.revoked_at.is_(None))
                           .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    engine.dispose()
    card.get_by_role("button", name="再照会（訪問診療）").click()
    outcome = card.locator(".outcome")
    expect(outcome).to_have_class("outcome ng", timeout=TIMEOUT)
    expect(outcome).to_contain_text("同意の期限が切れているか、患者さんが同意を取り消しました。")
    _shot(page, screenshots / "visit-recheck-expired.png", full_page=True)
    page.locator("#to-menu").click()
    page.get_by_role("button", name="2回目以降の訪問（再照会）").click()
    expect(page.locator("#course-empty")).to_be_visible(timeout=TIMEOUT)
    counts = page.evaluate("""() => [localStorage.length, sessionStorage.length, document.cookie.length]""")
    assert counts == [0, 0, 0]  # nothing of the patient stays on the phone
    context.close()


def test_the_patient_sees_how_they_were_confirmed(browser: Browser, stack: Stack, screenshots: Path) -> None:
    """The patient's own access log (the kiosk's 「自分の情報を見る」) names the 目視確認 and the re-checks."""
    httpx.post(stack.kiosk_url + "/api/kiosk/reset", timeout=10)
    # the patient's own screens are the kiosk's (a reception PC's screen), not the phone's
    page = browser.new_context(viewport=ViewportSize(width=1366, height=768), locale="ja-JP").new_page()
    page.goto(stack.kiosk_url + "/me")
    expect(page.locator("body[data-screen='place_card']")).to_have_count(1, timeout=TIMEOUT)
    page.locator("#read-card").click()
    expect(page.locator("body[data-screen='pin']")).to_have_count(1, timeout=TIMEOUT)
    pad = page.locator("section[data-screen='pin']")
    for digit in PIN:
        pad.locator(f"button[data-digit='{digit}']").click()
    pad.locator("button[data-pin='ok']").click()
    expect(page.locator("body[data-screen='menu']")).to_have_count(1, timeout=TIMEOUT)
    page.get_by_role("button", name="だれが見たか（閲覧の記録）").click()
    log = page.locator("[data-list=access_log]")
    expect(log).to_contain_text("保険の資格情報・目視確認", timeout=TIMEOUT)
    expect(log).to_contain_text("本人確認：職員の目視確認")
    expect(log).to_contain_text("保険の資格情報・再照会（訪問診療）")
    expect(log).to_contain_text("訪問・オンライン診療の患者一覧")
    _shot(page, screenshots / "visit-patient-access-log.png", full_page=True)
    # the patient ends their session (the kiosk's next patient starts at 「カードを置いてください」)
    page.get_by_role("button", name="メニューに戻る").click()
    page.get_by_role("button", name="終了する（カードをお取りください）").click()
    page.wait_for_url(stack.kiosk_url + "/")
    expect(page.locator("body[data-screen='place_card']")).to_have_count(1, timeout=TIMEOUT)
