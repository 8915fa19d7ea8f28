"""Headless Chromium through the patient screen and the staff screen, against the real server.

The tests run in file order on one kiosk (one demo card): the PIN check links the card at first use,
the face check then finds it linked. Each screen is saved to ``docs/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from shikaku_server.eligibility.service import today_jst
from testbed.card_emulator import PIN_TRIES, MyNumberCardEmulator
from tests.e2e.browser.conftest import PIN, Stack

pytestmark = pytest.mark.browser

LANDSCAPE = ViewportSize(width=1280, height=800)
PORTRAIT = ViewportSize(width=1080, height=1920)
STAFF = ViewportSize(width=1600, height=1000)
TIMEOUT = 15_000


@pytest.fixture(autouse=True)
def _kiosk_back_at_the_start(stack: Stack) -> Iterator[None]:
    """Each test starts on 「カードを置いてください」: one that fails midway (or leaves a check running
    on a busy machine) would otherwise leave the shared kiosk on its screen for the next test."""
    yield
    response = httpx.post(stack.kiosk_url + "/api/kiosk/reset", timeout=30)
    assert response.status_code == 200 and response.json()["screen"] == "place_card", response.text


def _screen(page: Page, name: str) -> None:
    expect(page.locator(f"body[data-screen='{name}']")).to_have_count(1, timeout=TIMEOUT)


def _tap_pin(page: Page, digits: str) -> None:
    section = page.locator("section[data-screen='pin register']")
    for digit in digits:
        section.locator(f"button[data-digit='{digit}']").click()
    section.locator("button[data-pin='ok']").click()


def _no_storage(page: Page) -> None:
    counts = page.evaluate("""async () => ({
        local: localStorage.length, session: sessionStorage.length, cookies: document.cookie.length,
        dbs: (indexedDB.databases ? (await indexedDB.databases()).length : 0),
    })""")
    assert counts == {"local": 0, "session": 0, "cookies": 0, "dbs": 0}


def test_pin_first_use_consent_done(browser: Browser, stack: Stack, screenshots: Path) -> None:
    context = browser.new_context(viewport=LANDSCAPE, locale="ja-JP")
    page = context.new_page()
    page.goto(stack.kiosk_url + "/")
    _screen(page, "place_card")
    expect(page.get_by_role("heading", name="マイナンバーカードを")).to_be_visible()
    page.screenshot(path=str(screenshots / "kiosk-place-card.png"))

    page.get_by_role("button", name="読み取る").click()
    _screen(page, "choose_method")
    expect(page.locator("#choose-face")).to_be_visible()
    expect(page.locator("#choose-pin")).to_be_visible()
    page.screenshot(path=str(screenshots / "kiosk-choose-method.png"))

    page.locator("#choose-pin").click()
    _screen(page, "pin")
    _tap_pin(page, "9999")
    expect(page.locator("section[data-screen='pin register'] [data-field=message]")).to_have_text(
        "暗証番号が違います。あと2回間違えるとロックされます。", timeout=TIMEOUT)
    expect(page.locator("[data-field=tries]")).to_have_text("残り入力回数：2回")
    page.locator(".pinpad button[data-digit='1']").click()
    page.locator(".pinpad button[data-digit='2']").click()
    page.screenshot(path=str(screenshots / "kiosk-pin-wrong.png"))
    page.locator(".pinpad button[data-pin='clear']").click()

    _tap_pin(page, PIN)
    _screen(page, "register")  # first use: the card is not linked yet
    explain = page.locator("[data-field=explain]")
    expect(explain).to_contain_text("利用登録がまだです")
    # the first PIN was right: the screen says so, and why a PIN is asked again
    expect(explain).to_contain_text("暗証番号は確認できました。")
    expect(explain).to_contain_text("初回登録")
    expect(explain).to_contain_text("「券面事項入力補助用」の暗証番号")
    page.screenshot(path=str(screenshots / "kiosk-register.png"))
    _tap_pin(page, PIN)

    _screen(page, "consent")
    expect(page.locator("section[data-screen=consent] h1")).to_have_text("山田 太郎 様")
    # Every category starts at 提供しない.
    for category in ("drug", "checkup", "clinical", "limit_certificate"):
        expect(page.locator(f".consent[data-category={category}] button.selected")).to_have_text("提供しない")
    page.locator(".consent[data-category=drug] button[data-value=yes]").click()
    page.locator(".consent[data-category=checkup] button[data-value=yes]").click()
    page.locator(".consent[data-category=limit_certificate] button[data-value=yes]").click()
    page.screenshot(path=str(screenshots / "kiosk-consent.png"))

    portrait = context.new_page()  # the same state, on the portrait kiosk screen
    portrait.set_viewport_size(PORTRAIT)
    portrait.goto(stack.kiosk_url + "/")
    _screen(portrait, "consent")
    portrait.screenshot(path=str(screenshots / "kiosk-consent-portrait.png"))
    portrait.close()

    page.locator("#consent-ok").click()
    _screen(page, "done")
    expect(page.locator("section[data-screen=done] h1")).to_have_text("受付が完了しました。カードをお取りください。")
    page.screenshot(path=str(screenshots / "kiosk-done.png"))
    _no_storage(page)
    face_files = list((stack.xml_root / "face").glob("OQSsiquc01res_face_*.xml"))
    assert len(face_files) == 1  # the clinic software's copy of this check (XML folder interface)
    assert "山田" in face_files[0].read_text(encoding="utf-8")

    # The screen resets to the start by itself.
    _screen_after_reset = page.locator("body[data-screen='place_card']")
    expect(_screen_after_reset).to_have_count(1, timeout=12_000)
    portrait = context.new_page()
    portrait.set_viewport_size(PORTRAIT)
    portrait.goto(stack.kiosk_url + "/")
    _screen(portrait, "place_card")
    portrait.screenshot(path=str(screenshots / "kiosk-place-card-portrait.png"))
    context.close()


def test_staff_screen_shows_the_check_and_the_drug_history(browser: Browser, stack: Stack, screenshots: Path) -> None:
    context = browser.new_context(viewport=STAFF, locale="ja-JP")
    page = context.new_page()
    page.goto(stack.kiosk_url + "/staff")
    row = page.locator("#checks tbody tr").first
    expect(row).to_contain_text("山田 太郎", timeout=TIMEOUT)
    expect(row).to_contain_text("ヤマダ タロウ")
    expect(row).to_contain_text("3割")
    expect(row).to_contain_text("有効")
    expect(row).to_contain_text("区分 ウ（A03）")  # shared with consent
    expect(row.locator(".pill.on")).to_have_text(["薬剤", "健診", "限度額"])
    page.screenshot(path=str(screenshots / "staff-checks.png"))

    # the two history buttons line up (one column, the same left edge and width)
    drug_box = row.get_by_role("button", name="薬剤情報").bounding_box()
    checkup_box = row.get_by_role("button", name="健診情報").bounding_box()
    assert drug_box and checkup_box
    assert (drug_box["x"], drug_box["width"]) == (checkup_box["x"], checkup_box["width"])

    row.get_by_role("button", name="薬剤情報").click()
    history = page.locator("#history")
    expect(history).to_contain_text("アムロジピン錠5mg", timeout=TIMEOUT)
    expect(history).to_contain_text("ロキソプロフェンNa錠60mg")
    drugs = history.locator("tbody tr")
    expect(drugs.nth(0)).to_contain_text("東京都の薬局")  # a code this terminal has no name for: what it says
    expect(drugs.nth(0)).to_contain_text("医療機関コード 1341234563")
    expect(drugs.nth(1)).to_contain_text("しかく内科クリニック")  # this terminal's own facility
    page.screenshot(path=str(screenshots / "staff-drug-history.png"))

    row.get_by_role("button", name="健診情報").click()
    expect(history).to_contain_text("収縮期血圧", timeout=TIMEOUT)
    for raw in ("systolic", "height_cm", "weight_kg", "bmi,"):
        expect(history).not_to_contain_text(raw)
    systolic = history.locator("tr[data-item=systolic]")
    expect(systolic).to_contain_text("mmHg")
    expect(systolic).to_contain_text("130 未満")
    expect(systolic.locator("td.flag-referral")).to_have_text("142 ●")  # 受診勧奨判定値 140 以上
    expect(history.locator("tr[data-item=waist_cm] td.flag-guidance")).to_have_text("86.0 ▲")  # 男性 85 cm
    expect(history.locator("tr[data-item=triglycerides] td.flag-guidance")).to_have_text("160 ▲")
    expect(history.locator("tr[data-item=urine_protein]")).to_contain_text("（±）")
    expect(history.locator("tr[data-item=urine_protein]")).to_contain_text("（−）")
    expect(page.locator("#history-legend")).to_contain_text("受診勧奨判定値以上")
    page.locator("#history-panel").screenshot(path=str(screenshots / "staff-checkups.png"))
    page.locator("#history-close").click()

    # 資格確認書: by number (an invalid birth date → no match, shown with its reason).
    form = page.locator("#number-form")
    form.locator("[name=insurer_number]").fill("01130012")
    form.locator("[name=symbol]").fill("１２３")
    form.locator("[name=number]").fill("４５６７")
    form.locator("[name=branch]").fill("01")
    form.locator("[name=birth_date]").fill("1982-02-02")
    form.get_by_role("button", name="照会する").click()
    expect(page.locator("#checks tbody tr").first).to_contain_text("山田 花子", timeout=TIMEOUT)
    expect(page.locator("#checks tbody tr").first).to_contain_text("番号")

    # 一括照会: two rows by CSV, results when ready.
    batch = page.locator("#batch-form")
    batch.locator("[name=label]").fill("明日の予約")
    batch.locator("[name=csv]").fill(
        "保険者番号,記号,番号,枝番,生年月日\n01130012,１２３,４５６７,00,1980-04-01\n01130012,１２３,９９９９,00,1970-01-01\n"
    )
    batch.get_by_role("button", name="一括照会を送信").click()
    item = page.locator("#batches li").first
    expect(item).to_contain_text("明日の予約（2件）", timeout=TIMEOUT)
    results = page.locator("#batch-results tbody tr[data-index]")
    for _ in range(30):
        item.get_by_role("button", name="結果を見る").click()
        page.wait_for_timeout(300)
        if results.count() == 2:
            break
    expect(results).to_have_count(2)
    expect(results.nth(0)).to_contain_text("有効")
    expect(results.nth(1)).to_contain_text("該当する資格がありません")
    page.screenshot(path=str(screenshots / "staff-batch.png"), full_page=True)
    _no_storage(page)
    context.close()


def test_face_check_with_the_camera_clip(browser: Browser, stack: Stack, screenshots: Path) -> None:
    context = browser.new_context(viewport=LANDSCAPE, locale="ja-JP")
    page = context.new_page()
    page.goto(stack.kiosk_url + "/")
    _screen(page, "place_card")
    page.get_by_role("button", name="読み取る").click()
    _screen(page, "choose_method")
    # what the status said when the preview was first drawn, every status shown, in order, and the
    # most lit pixels of any frame drawn (read as it is drawn: on a busy machine the check may be
    # over, and the canvas cleared, by the time the test could look at it)
    page.evaluate("""() => {
        window.drawnUnder = null; window.statuses = []; window.mostLit = 0;
        const canvas = document.querySelector('#face-preview');
        const status = document.querySelector('#face-status');
        new MutationObserver(() => {
            if (canvas.dataset.drawn !== '1') return;
            if (window.drawnUnder === null) window.drawnUnder = status.textContent;
            const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let lit = 0;
            for (let i = 0; i < d.length; i += 400) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
            window.mostLit = Math.max(window.mostLit, lit);
        }).observe(canvas, {attributes: true});
        new MutationObserver(() => {
            const last = window.statuses[window.statuses.length - 1];
            if (status.textContent && status.textContent !== last) window.statuses.push(status.textContent);
        }).observe(status, {childList: true, characterData: true, subtree: true});
    }""")
    page.locator("#choose-face").click()
    status = page.locator("#face-status")
    # the patient sees themselves framed before the check reads a frame
    expect(status).to_contain_text("枠の中に顔を合わせてください", timeout=TIMEOUT)
    expect(page.locator("#face-preview[data-drawn='1']")).to_have_count(1, timeout=TIMEOUT)
    page.screenshot(path=str(screenshots / "kiosk-face.png"))
    expect(status).to_have_text(re.compile("顔を検出中|照合中|資格情報を確認"), timeout=TIMEOUT)
    # first drawn while the kiosk was still getting ready or framing, never once the check ran
    drawn_under = page.evaluate("window.drawnUnder")
    assert "準備中" in drawn_under or "枠の中に顔を合わせて" in drawn_under, drawn_under
    statuses = page.evaluate("window.statuses")
    framing = next(i for i, s in enumerate(statuses) if "枠の中" in s)
    # (the page polls the kiosk: on a busy machine it may see 照合中 without 顔を検出中 first)
    after = "".join(statuses[framing + 1:])
    assert all("枠の中" not in s for s in statuses[framing + 1:]) and re.search("顔を検出中|照合中", after), statuses
    # the live preview: the camera's frames drawn in the page, with guidance from what is in them
    expect(page.locator("#face-guidance")).to_have_text(
        re.compile("もう少し近づいてください|明るい場所で|カメラを見てください|まばたき"), timeout=TIMEOUT)
    painted = page.evaluate("window.mostLit")
    assert painted > 50, painted  # not the dark box of before
    page.wait_for_selector("body[data-screen='consent'], body[data-screen='register']", timeout=30_000)
    if page.locator("body[data-screen='register']").count():  # when run alone: link the card first
        _tap_pin(page, PIN)
    _screen(page, "consent")
    page.locator("#consent-ok").click()
    _screen(page, "done")
    context.close()

    staff = browser.new_page(viewport=STAFF)
    staff.goto(stack.kiosk_url + "/staff")
    expect(staff.locator("#checks tbody tr").first).to_contain_text("顔認証", timeout=TIMEOUT)
    staff.close()


def test_staff_key_in_collation_b_when_the_automatic_try_is_refused(browser: Browser, stack: Stack,
                                                                     screenshots: Path) -> None:
    """With 2 照合番号B tries left the kiosk does not try automatically; staff key the code in."""
    demo = stack.kiosk.demo_card
    assert demo is not None
    card = demo.card
    assert isinstance(card, MyNumberCardEmulator)
    card.state.collation_b_tries_left = 2
    try:
        page = browser.new_page(viewport=LANDSCAPE)
        page.goto(stack.kiosk_url + "/")
        _screen(page, "place_card")
        page.get_by_role("button", name="読み取る").click()
        _screen(page, "choose_method")
        page.locator("#choose-face").click()
        _screen(page, "face_failed")
        failed = page.locator("section[data-screen=face_failed]")
        expect(failed.locator("[data-field=message]")).to_contain_text("受付の職員がカードの照合番号Bを入力")
        expect(failed.get_by_role("button", name="暗証番号で確認する")).to_be_visible()
        failed.get_by_role("button", name="職員が照合番号Bを入力").click()

        _screen(page, "collation_b_entry")
        entry = page.locator("section[data-screen=collation_b_entry]")
        expect(entry.locator("[data-field=b_tries]")).to_have_text("カードの残り照合回数：2回")
        expect(entry.get_by_role("button", name="確定")).to_be_disabled()
        malformed = "00" + demo.collation_b[2:]  # era year 00: refused before the card, no try used
        for digit in malformed:
            entry.locator(f"button[data-b-digit='{digit}']").click()
        entry.get_by_role("button", name="確定").click()
        expect(entry.locator("[data-field=message]")).to_contain_text("照合番号Bの形が正しくありません",
                                                                      timeout=TIMEOUT)
        expect(entry.locator("[data-b-group='0']")).to_have_text("・・・・・・")  # the field was cleared
        assert card.state.collation_b_tries_left == 2
        for digit in demo.collation_b[:12]:
            entry.locator(f"button[data-b-digit='{digit}']").click()
        entry.get_by_role("button", name="1字消す").click()
        page.screenshot(path=str(screenshots / "kiosk-collation-b-entry.png"))
        portrait = browser.new_page(viewport=PORTRAIT)  # the same screen on the portrait kiosk (empty pad)
        portrait.goto(stack.kiosk_url + "/")
        _screen(portrait, "collation_b_entry")
        portrait.screenshot(path=str(screenshots / "kiosk-collation-b-entry-portrait.png"))
        portrait.close()
        for digit in demo.collation_b[11:]:
            entry.locator(f"button[data-b-digit='{digit}']").click()
        entry.get_by_role("button", name="確定").click()
        page.wait_for_selector("body[data-screen='face'], body[data-screen='consent']", timeout=TIMEOUT)
        assert page.evaluate("() => document.querySelector('[data-b-group]').textContent") == "・・・・・・"
        _screen(page, "consent")
        page.locator("#consent-ok").click()
        _screen(page, "done")
        _no_storage(page)
        page.close()
    finally:
        card.state.collation_b_tries_left = 10


PHONE = ViewportSize(width=390, height=844)


def _by_number(page: Page, **fields: str) -> None:
    form = page.locator("#number-form")
    for name in ("insurer_number", "symbol", "number", "branch", "birth_date"):
        form.locator(f"[name={name}]").fill(fields.get(name, ""))
    form.get_by_role("button", name="照会する").click()


def test_phone_consent_keeps_the_confirm_button_in_view_and_the_card_can_be_taken_out(
    browser: Browser, stack: Stack, screenshots: Path
) -> None:
    page = browser.new_page(viewport=PHONE, locale="ja-JP")
    page.goto(stack.kiosk_url + "/")
    _screen(page, "place_card")
    # demo controls: take the card out midway, see what the patient sees, put it back
    page.get_by_role("button", name="読み取る").click()
    _screen(page, "choose_method")
    page.get_by_role("button", name="カードを抜く").click()
    _screen(page, "error")
    error = page.locator("section[data-screen=error]")
    expect(error.locator("[data-field=message]")).to_have_text(
        "カードが取り出されました。受付はまだ終わっていません。もう一度カードを置いて、「もう一度読み取る」を押してください。")
    expect(error.get_by_role("button", name="もう一度読み取る")).to_be_visible()
    page.screenshot(path=str(screenshots / "kiosk-card-removed-phone.png"))
    error.get_by_role("button", name="もう一度読み取る").click()
    _screen(page, "choose_method")

    page.locator("#choose-pin").click()
    _screen(page, "pin")
    _tap_pin(page, PIN)
    page.wait_for_selector("body[data-screen='consent'], body[data-screen='register']", timeout=TIMEOUT)
    if page.locator("body[data-screen='register']").count():  # when run alone: link the card first
        _tap_pin(page, PIN)
    _screen(page, "consent")
    assert page.evaluate("document.documentElement.scrollHeight") > PHONE["height"]  # a long screen
    button = page.locator("#consent-ok")
    expect(button).to_be_in_viewport(ratio=1.0)  # the primary action is on screen before any scroll
    box = button.bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(screenshots / "kiosk-consent-phone.png"))
    page.mouse.wheel(0, 400)
    expect(button).to_be_in_viewport(ratio=1.0)  # and stays while the patient reads on
    button.click()
    _screen(page, "done")
    page.close()


def test_staff_form_errors_are_per_field_and_a_miss_shows_the_search(
    browser: Browser, stack: Stack, screenshots: Path
) -> None:
    page = browser.new_page(viewport=STAFF, locale="ja-JP")
    page.goto(stack.kiosk_url + "/staff")
    _by_number(page, insurer_number="0113001", number="４５６７", branch="1")  # no birth date either
    form = page.locator("#number-form")
    expect(form.locator("[data-error-for=insurer_number]")).to_have_text(
        "8桁の数字で入力してください（国民健康保険は6桁）", timeout=TIMEOUT)
    expect(form.locator("[data-error-for=branch]")).to_have_text("2桁の数字で入力してください（例: 00）")
    expect(form.locator("[data-error-for=birth_date]")).to_have_text("入力してください")
    expect(form.locator("[data-error-for=number]")).to_be_hidden()
    expect(page.locator("#number-panel")).not_to_contain_text("行目")
    expect(page.locator("#number-panel")).not_to_contain_text("insurer_number")
    # each message sits next to its field: right under the input, inside its label
    box_input = form.locator("[name=insurer_number]").bounding_box()
    box_error = form.locator("[data-error-for=insurer_number]").bounding_box()
    assert box_input and box_error and 0 <= box_error["y"] - (box_input["y"] + box_input["height"]) < 20
    page.locator("#number-panel").screenshot(path=str(screenshots / "staff-form-errors.png"))

    # a lookup that finds nobody says what was searched for
    _by_number(page, insurer_number="01130012", symbol="１２３", number="９９９９", branch="00",
               birth_date="1970-01-01")
    expect(page.locator("#number-error")).to_have_text("該当する資格がありません。", timeout=TIMEOUT)
    expect(page.locator("#number-searched")).to_have_text(
        "照会した内容: 保険者番号 01130012・記号 １２３・番号 ９９９９・枝番 00・生年月日 1970-01-01")
    miss = page.locator("#checks tbody tr").first
    expect(miss).to_contain_text("該当者なし")
    expect(miss).to_contain_text("照会: 保険者番号 01130012")
    expect(miss.locator(".state")).to_have_text("資格なし")
    page.close()


def test_staff_board_at_a_glance_and_at_phone_width(browser: Browser, stack: Stack, screenshots: Path) -> None:
    import datetime as dt

    import httpx

    from clinic_terminal.kiosk.flow import Referral
    from schemas.eligibility import ByNumberQuery
    from tests.factories import INSURER_A, change, eligibility_csv

    page = browser.new_page(viewport=STAFF, locale="ja-JP")
    page.goto(stack.kiosk_url + "/staff")
    hanako = {"insurer_number": INSURER_A, "symbol": "１２３", "number": "４５６７", "branch": "01",
              "birth_date": "1982-02-02"}
    _by_number(page, **hanako)
    expect(page.locator("#checks tbody tr").first).to_contain_text("山田 花子", timeout=TIMEOUT)
    # the insurer changes her copay; the desk checks her again: the board says what changed
    today = today_jst().isoformat()
    answer = httpx.post(f"{stack.server_url}/v1/uploads?kind=eligibility", timeout=30,
                        content=eligibility_csv([change(branch="01", valid_from=today, copay_ratio="20")]),
                        headers={"Authorization": f"Bearer {stack.insurer_token}", "Content-Type": "text/csv"})
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    _by_number(page, **hanako)
    changed = page.locator("#checks tbody tr[data-attention=changed]").first
    expect(changed).to_contain_text("負担割合が変わりました（3割 → 2割）", timeout=TIMEOUT)
    expect(changed.locator(".state")).to_have_text("変更あり")

    # 受付へ (a referral from the patient screen) and 申立書 (a check the server could not answer)
    notices = stack.kiosk.notices
    assert notices is not None
    notices.refer(Referral(at=dt.datetime.now(dt.UTC), code="pin_blocked", method="pin"))
    notices.journal_number(ByNumberQuery(insurer_number=INSURER_A, symbol="１２３", number="８８８８",
                                         birth_date=dt.date(1975, 5, 5)))
    summary = page.locator("#board-summary")
    expect(summary.locator("[data-chip=desk] strong")).to_have_text("1", timeout=TIMEOUT)
    expect(summary.locator("[data-chip=statement] strong")).to_have_text("1")
    expect(summary.locator("[data-chip=not_insured] strong")).not_to_have_text("0")
    expect(summary.locator("[data-chip=changed] strong")).not_to_have_text("0")
    expect(page.locator("#notices tr[data-attention=desk] .state")).to_have_text("受付へ")
    expect(page.locator("#notices tr[data-attention=statement] .state")).to_have_text("申立書")
    page.wait_for_timeout(2500)  # let the new-row flash fade before the picture
    page.screenshot(path=str(screenshots / "staff-board-attention.png"))

    # the board is a fixed region: more rows scroll inside it, the forms stay where they are
    top = page.locator("#number-panel").bounding_box()
    for _ in range(6):
        _by_number(page, **hanako)
    expect(page.locator("#checks tbody tr")).not_to_have_count(0)
    page.wait_for_timeout(1700)
    assert page.locator("#number-panel").bounding_box() == top

    # words and dates never break inside (暗証番号, 本人, 2024-04-01〜)
    for text in ("番号", "本人", "2024-04-01〜"):
        lines = page.evaluate("""(t) => Array.from(document.querySelectorAll('#checks span.nowrap'))
            .filter((e) => e.textContent.includes(t)).map((e) => e.getClientRects().length)""", text)
        assert lines and set(lines) == {1}, (text, lines)

    # phone: no horizontal overflow of the page; the tables scroll inside the board
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.screenshot(path=str(screenshots / "staff-phone.png"))
    page.locator("#number-panel").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "staff-phone-form.png"))
    page.close()


def test_blocked_pin_asks_for_staff_and_offers_face(browser: Browser, stack: Stack, screenshots: Path) -> None:
    """Last of this module: it blocks the demo card's PIN, which it gives back at the end (the
    portal's browser tests may run after it in the same session)."""
    demo = stack.kiosk.demo_card
    assert demo is not None and isinstance(demo.card, MyNumberCardEmulator)
    try:
        _blocked_pin_screens(browser, stack, screenshots)
    finally:
        demo.card.state.auth_pin_tries_left = PIN_TRIES


def _blocked_pin_screens(browser: Browser, stack: Stack, screenshots: Path) -> None:
    page = browser.new_page(viewport=LANDSCAPE)
    page.goto(stack.kiosk_url + "/")
    _screen(page, "place_card")
    page.get_by_role("button", name="読み取る").click()
    _screen(page, "choose_method")
    page.locator("#choose-pin").click()
    _screen(page, "pin")
    pin_message = page.locator("section[data-screen='pin register'] [data-field=message]")
    for tries_left, wrong in ((2, "0000"), (1, "0001")):
        _tap_pin(page, wrong)
        expect(page.locator("[data-field=tries]")).to_have_text(f"残り入力回数：{tries_left}回", timeout=TIMEOUT)
        if tries_left == 2:
            expect(page.locator("#pin-to-face")).to_be_hidden()
    # at the last try, 顔認証 is offered instead
    expect(pin_message).to_have_text(
        "暗証番号が違います。あと1回間違えるとロックされます。顔認証に切り替えることもできます。")
    expect(page.locator("#pin-to-face")).to_be_visible()
    page.screenshot(path=str(screenshots / "kiosk-pin-last-try.png"))
    _tap_pin(page, "0002")
    _screen(page, "error")
    message = page.locator("section[data-screen=error] [data-field=message]")
    expect(message).to_have_text("暗証番号がロックされています。顔認証をご利用いただくか、受付にお声がけください。"
                                 "（暗証番号のロックの解除・再設定は、お住まいの市区町村の窓口で行えます）")
    error = page.locator("section[data-screen=error]")
    expect(error.get_by_role("button", name="顔認証で確認する")).to_be_visible()
    expect(error.get_by_role("button", name="暗証番号で確認する")).to_be_hidden()
    expect(error.get_by_role("button", name="もう一度読み取る")).to_be_hidden()
    page.screenshot(path=str(screenshots / "kiosk-pin-blocked.png"))
    page.close()
