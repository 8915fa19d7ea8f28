// Patient screen. State lives in the kiosk backend; this page only renders it and sends taps.
// Nothing is written to browser storage of any kind (web storage, databases, cookies); the PIN is held in a
// local variable only until it is sent to this kiosk's own backend, then cleared. The same holds for
// 照合番号B keyed in by staff (14 digits): cleared when sent and whenever a screen is drawn.
(function () {
  "use strict";

  const POLL_MS = 400;
  const DONE_RESET_MS = 8000;
  let current = null;
  let pin = "";
  let keyed = "";  // 照合番号B typed by staff; never stored, cleared on send and on every render
  const KEYED_LEN = 14;
  let inFlight = false;
  let doneTimer = null;
  const consent = { drug: false, checkup: false, clinical: false, limit_certificate: false };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const call = window.common.call;  // common.js

  function setBusy(on) {
    $("#busy").hidden = !on;
  }

  async function act(path, body) {
    if (inFlight) return;
    inFlight = true;
    setBusy(true);
    try {
      const r = await call("POST", path, body);
      if (r.data && r.data.screen) {
        render(r.data, true);
      } else if (r.status === 422 && r.data && r.data.message) {
        showMessage(r.data.message);
      } else {
        showOffline();
      }
    } catch (e) {
      showOffline();
    } finally {
      inFlight = false;
      setBusy(false);
    }
  }

  function showMessage(text) {
    const section = visibleSection();
    if (section) {
      const el = $("[data-field=message]", section);
      if (el) el.textContent = text;
    }
  }

  function showOffline() {
    render({ screen: "error", seq: -1, message: "端末でエラーが発生しました。受付にお声がけください。",
      actions: ["restart"], methods: [] }, true);
  }

  function visibleSection() {
    return $$("section[data-screen]").find((s) => !s.hidden) || null;
  }

  function sectionFor(name) {
    return $$("section[data-screen]").find((s) => s.dataset.screen.split(" ").includes(name));
  }

  function clearPin() {
    pin = "";
    drawPin();
  }

  function drawPin() { window.common.drawPin(pin.length); }

  function clearKeyed() {
    keyed = "";
    drawKeyed();
  }

  function drawKeyed() {
    $$("[data-b-group]").forEach((el) => {
      const start = Number(el.dataset.bGroup);
      const len = Number(el.dataset.bLen);
      const part = keyed.slice(start, start + len);
      el.textContent = part + "・".repeat(len - part.length);
    });
    $$("[data-b=ok]").forEach((b) => { b.disabled = keyed.length !== KEYED_LEN; });
  }

  function resetConsent() {
    Object.keys(consent).forEach((k) => { consent[k] = false; });
    drawConsent();
  }

  function drawConsent() { window.common.drawConsent(consent); }

  function fill(section, state) {
    $$("[data-field]", section).forEach((el) => {
      const key = el.dataset.field;
      if (key === "tries") {
        el.textContent = state.tries_left == null ? "" : "残り入力回数：" + state.tries_left + "回";
        return;
      }
      if (key === "b_tries") {  // 照合番号B: the card's own counter (the kiosk never uses the last one)
        el.textContent = state.tries_left == null ? "" : "カードの残り照合回数：" + state.tries_left + "回";
        return;
      }
      if (key === "explain") {
        el.textContent = state.screen === "register" && state.code === "card_not_registered" ? state.message : "";
        el.hidden = !el.textContent;
        return;
      }
      if (key === "message" && state.screen === "register" && state.code === "card_not_registered") {
        el.textContent = "";
        el.hidden = true;
        return;
      }
      const value = state[key];
      el.textContent = value == null ? "" : value;
      el.hidden = !el.textContent && key !== "face_status";
    });
  }

  // the face screen's live preview: frames fetched from this kiosk's backend (memory only there) and
  // drawn on a canvas, mirrored like a mirror; nothing is kept here beyond the frame being drawn
  let previewTimer = null;
  async function drawPreview() {
    previewTimer = null;
    if (!current || current.screen !== "face") return;
    try {
      const response = await fetch("/api/kiosk/camera.jpg", { cache: "no-store", credentials: "omit" });
      if (response.status === 200) {
        const bitmap = await createImageBitmap(await response.blob());
        const canvas = $("#face-preview");
        const ctx = canvas.getContext("2d");
        const scale = Math.max(canvas.width / bitmap.width, canvas.height / bitmap.height);
        const w = bitmap.width * scale;
        const h = bitmap.height * scale;
        ctx.save();
        ctx.setTransform(-1, 0, 0, 1, canvas.width, 0);
        ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
        ctx.restore();
        bitmap.close();
        canvas.dataset.drawn = "1";
      }
    } catch (e) { /* the next frame */ }
    if (current && current.screen === "face") previewTimer = setTimeout(drawPreview, 150);
  }

  function stopPreview() {
    if (previewTimer) { clearTimeout(previewTimer); previewTimer = null; }
    const canvas = $("#face-preview");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    delete canvas.dataset.drawn;
  }

  function render(state, force) {
    if (!force && current && state.seq === current.seq) {
      if (state.screen === "face") updateGuidance(state);
      return;
    }
    const previous = current ? current.screen : null;
    current = state;
    $("#demo-badge").hidden = !state.demo;
    $$("section[data-screen]").forEach((s) => { s.hidden = true; });
    const section = sectionFor(state.screen);
    if (!section) return;
    fill(section, state);
    section.hidden = false;

    if (state.screen === "pin" || state.screen === "register") {
      const title = $("h1", section);
      title.textContent = state.screen === "pin" ? title.dataset.titlePin : title.dataset.titleRegister;
      clearPin();
    } else {
      pin = "";
    }
    clearKeyed();  // a new screen (or a new answer on the entry screen) always starts empty
    if (state.screen === "choose_method") {
      $("#choose-face").hidden = !state.methods.includes("face");
      $("#choose-pin").hidden = !state.methods.includes("pin");
    }
    if (state.screen === "consent" && previous !== "consent") resetConsent();
    $$("[data-action]", section).forEach((b) => {
      const a = b.dataset.action;
      if (a === "restart") return;
      if (section.dataset.screen === "place_card") return;
      b.hidden = !(state.actions || []).includes(a);
    });
    if (doneTimer) { clearTimeout(doneTimer); doneTimer = null; }
    $("#see-mine").hidden = !(state.mine && state.screen === "done" && state.code !== "not_usable");
    if (state.screen === "done" || state.screen === "outage") {
      doneTimer = setTimeout(() => act("/api/kiosk/reset"), DONE_RESET_MS);
    }
    if (state.screen === "place_card") resetConsent();
    $("#demo-controls").hidden = !state.demo_remove_card;
    if (state.screen === "face") { if (previous !== "face") drawPreview(); updateGuidance(state); }
    else if (previous === "face") stopPreview();
    document.body.dataset.screen = state.screen;
  }

  function updateGuidance(state) {
    const el = $("#face-guidance");
    el.textContent = state.face_guidance || "";
    el.hidden = !el.textContent;
  }

  async function poll() {
    if (!inFlight) {
      try {
        const r = await call("GET", "/api/kiosk/state");
        if (r.data && r.data.screen) render(r.data, false);
      } catch (e) { /* the backend restarts: keep polling */ }
    }
    setTimeout(poll, POLL_MS);
  }

  document.addEventListener("click", async (event) => {
    const target = event.target.closest("button");
    if (!target || target.disabled) return;
    if (target.dataset.digit !== undefined) {
      if (pin.length < 4) pin += target.dataset.digit;
      drawPin();
      return;
    }
    if (target.dataset.pin === "clear") { clearPin(); return; }
    if (target.dataset.bDigit !== undefined) {
      if (keyed.length < KEYED_LEN) keyed += target.dataset.bDigit;
      drawKeyed();
      return;
    }
    if (target.dataset.b === "back") { keyed = keyed.slice(0, -1); drawKeyed(); return; }
    if (target.dataset.b === "clear") { clearKeyed(); return; }
    if (target.dataset.b === "ok") {
      if (keyed.length !== KEYED_LEN) return;
      const value = keyed;
      clearKeyed();
      act("/api/kiosk/collation-b", { code: value });
      return;
    }
    if (target.dataset.pin === "ok") {
      if (pin.length !== 4) return;
      const value = pin;
      clearPin();
      act(current && current.screen === "register" ? "/api/kiosk/register" : "/api/kiosk/pin", { pin: value });
      return;
    }
    if (target.dataset.method) { act("/api/kiosk/method", { method: target.dataset.method }); return; }
    if (target.dataset.value && target.closest(".consent")) {
      consent[target.closest(".consent").dataset.category] = target.dataset.value === "yes";
      drawConsent();
      return;
    }
    if (target.id === "consent-ok") { act("/api/kiosk/consent", Object.assign({}, consent)); return; }
    if (target.id === "skip-consent") { act("/api/kiosk/skip-consent"); return; }
    if (target.id === "see-mine") {  // the patient's own screens: a new card session, the PIN asked there
      if (doneTimer) { clearTimeout(doneTimer); doneTimer = null; }
      await act("/api/kiosk/reset");
      window.location.assign("/me");
      return;
    }
    if (target.id === "demo-remove-card") { act("/api/kiosk/demo/remove-card"); return; }
    const action = target.dataset.action;
    if (action === "read_card") act("/api/kiosk/read");
    else if (action === "restart") act("/api/kiosk/reset");
    else if (action === "pin" || action === "face") act("/api/kiosk/method", { method: action });
    else if (action === "collation_b_entry") act("/api/kiosk/collation-b/entry");
  });

  document.addEventListener("keydown", (event) => {
    if (current && current.screen === "collation_b_entry") {
      if (/^[0-9]$/.test(event.key) && keyed.length < KEYED_LEN) { keyed += event.key; drawKeyed(); }
      else if (event.key === "Backspace") { keyed = keyed.slice(0, -1); drawKeyed(); }
      return;
    }
    if (!current || (current.screen !== "pin" && current.screen !== "register")) return;
    if (/^[0-9]$/.test(event.key) && pin.length < 4) { pin += event.key; drawPin(); }
    else if (event.key === "Backspace") { pin = pin.slice(0, -1); drawPin(); }
  });

  drawConsent();
  drawKeyed();
  poll();
})();
