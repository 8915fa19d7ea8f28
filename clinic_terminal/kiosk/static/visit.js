// The visiting staff's page (居宅同意取得型), for a phone or a tablet. The first visit by card is the
// kiosk's own card flow (/api/kiosk: the backend holds its state, this page only draws it and sends
// taps); 目視確認, the list of courses and 再照会 are /api/visit. Nothing is written to browser storage;
// the PIN is held in a local variable only until it is sent to this terminal's backend, then cleared.
(function () {
  "use strict";

  const POLL_MS = 500;
  let view = "menu";
  let flow = null;        // the card flow's last screen
  let pin = "";
  let inFlight = false;
  let mode = "four_facts";
  let visualVisit = null;  // the visit of a 目視確認 awaiting its consent (a handle, nothing personal)
  const consent = { drug: false, checkup: false, clinical: false, limit_certificate: false };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };

  const call = window.common.call;  // common.js

  async function busy(work) {
    if (inFlight) return null;
    inFlight = true;
    $("#busy").hidden = false;
    try { return await work(); }
    catch (e) { return { ok: false, status: 0, data: { message: "端末に接続できません。" } }; }
    finally { inFlight = false; $("#busy").hidden = true; }
  }

  function show(name) {
    view = name;
    $$("section[data-view]").forEach((s) => { s.hidden = s.dataset.view !== name; });
    $("#to-menu").hidden = name === "menu";
    document.body.dataset.view = name;
    window.scrollTo(0, 0);
  }

  function errorText(r) {
    if (r && r.data && r.data.message) return r.data.message;
    return "確認できませんでした。もう一度お試しください。";
  }

  // ---------------------------------------------------------------- the card flow

  function drawPin() { window.common.drawPin(pin.length); }

  function drawFlow(state) {
    const changed = !flow || flow.seq !== state.seq;
    flow = state;
    if (!changed || view !== "card") return;
    if (state.screen === "consent") { openConsent(state.patient_name, null); return; }
    if (state.screen === "done" && state.code !== "not_usable" && state.code == null) {
      finished("同意を登録しました", "次回からは「2回目以降の訪問」で、カードなしで資格を確認できます。");
      return;
    }
    const section = $("section[data-view=card]");
    $$("[data-screen]", section).forEach((d) => { d.hidden = !d.dataset.screen.split(" ").includes(state.screen); });
    const shown = $$("[data-screen]", section).find((d) => !d.hidden);
    if (!shown) return;
    $$("[data-field]", shown).forEach((f) => {
      const key = f.dataset.field;
      let text = state[key];
      if (key === "tries") text = state.tries_left == null ? "" : `残り入力回数：${state.tries_left}回`;
      if (key === "explain") text = state.screen === "register" && state.code === "card_not_registered" ? state.message : "";
      if (key === "message" && state.screen === "register" && state.code === "card_not_registered") text = "";
      f.textContent = text == null ? "" : text;
      f.hidden = !f.textContent;
    });
    if (state.screen === "pin" || state.screen === "register") {
      const title = $("h1", shown);
      title.textContent = state.screen === "pin" ? title.dataset.titlePin : title.dataset.titleRegister;
      pin = "";
      drawPin();
    }
    $$("[data-when]", shown).forEach((b) => { b.hidden = !(state.actions || []).includes(b.dataset.when); });
    const mark = $("[data-mark]", shown);
    if (mark) {
      mark.textContent = state.screen === "done" ? "✓" : "!";
      mark.classList.toggle("ok", state.screen === "done");
    }
  }

  async function flowAct(path, body) {
    const r = await busy(() => call("POST", path, body));
    if (r && r.data && r.data.screen) drawFlow(r.data);
    else if (r && r.status === 422 && r.data && r.data.message) {
      const m = $("section[data-view=card] [data-screen]:not([hidden]) [data-field=message]");
      if (m) { m.textContent = r.data.message; m.hidden = false; }
    }
  }

  async function poll() {
    if (view === "card" && !inFlight) {
      try {
        const r = await call("GET", "/api/kiosk/state");
        if (r.data && r.data.screen) drawFlow(r.data);
      } catch (e) { /* keep polling */ }
    }
    setTimeout(poll, POLL_MS);
  }

  async function startCard() {
    show("card");
    flow = null;
    const r = await busy(() => call("GET", "/api/kiosk/state"));
    if (r && r.data && r.data.screen) drawFlow(r.data);
  }

  // ---------------------------------------------------------------- 目視確認

  function setMode(next) {
    mode = next;
    $$("[data-mode]").forEach((b) => {
      b.classList.toggle("selected", b.dataset.mode === mode);
      b.setAttribute("aria-selected", b.dataset.mode === mode ? "true" : "false");
    });
    $$("[data-mode-fields]").forEach((f) => { f.hidden = f.dataset.modeFields !== mode; });
  }

  function visualBody(form) {
    const v = (name) => form.elements[name].value.trim();
    const body = { confirmed_by: v("confirmed_by") };
    if (mode === "four_facts") {
      body.four_facts = { name: v("name"), birth_date: v("birth_date"), sex: v("sex"), address: v("address") };
    } else {
      body.insurance = { insurer_number: v("insurer_number"), symbol: v("symbol"), number: v("number"),
        birth_date: v("ins_birth_date") };
      if (v("branch")) body.insurance.branch = v("branch");
    }
    return body;
  }

  function visualProblem(form) {
    if (!form.elements.looked.checked) return "カードの顔写真とご本人を見比べてから確認してください。";
    if (!form.elements.confirmed_by.value.trim()) return "確認した職員の氏名を入力してください。";
    const names = mode === "four_facts" ? ["name", "birth_date", "sex", "address"] : ["insurer_number", "number", "ins_birth_date"];
    if (names.some((n) => !form.elements[n].value.trim())) return "カードの記載どおりに、すべての項目を入力してください。";
    return null;
  }

  async function submitVisual(form) {
    const message = $("#visual-message");
    const problem = visualProblem(form);
    if (problem) { message.textContent = problem; message.hidden = false; return; }
    message.hidden = true;
    const r = await busy(() => call("POST", "/api/visit/visual", visualBody(form)));
    if (!r) return;
    if (!r.ok) { message.textContent = errorText(r); message.hidden = false; return; }
    const result = r.data;
    if (!result.visit_id || !result.usable) {
      message.textContent = result.visit_id
        ? `資格が確認できません：${result.validity_label}。保険証の変更がないか確認してください。`
        : `該当する方が見つかりません（${result.validity_label}）。カードの記載どおりに入力されているか確認してください。`;
      message.hidden = false;
      return;
    }
    form.reset();
    setMode("four_facts");
    visualVisit = result.visit_id;
    openConsent(result.insured.name, result);
  }

  // ---------------------------------------------------------------- the course's consent

  function resultCard(box, result) {
    box.replaceChildren();
    box.hidden = !result;
    if (!result) return;
    const i = result.insured;
    box.append(el("div", "ok-line", `資格確認できました（${result.validity_label}・${result.copay_label}負担）`));
    if (i) {
      box.append(el("div", "meta", `${i.insurer_name || ""}（${i.insurer_number.trim()}）`));
      box.append(el("div", "meta", `${i.birth_date} 生・${i.personal_family}`));
    }
    box.append(el("div", "meta", "確認方法：目視確認"));
  }

  function drawConsent() {
    window.common.drawConsent(consent);
    $("#course-fields").hidden = !$("#course-on").checked;
  }

  function openConsent(name, result) {
    Object.keys(consent).forEach((k) => { consent[k] = false; });
    $("#course-on").checked = true;
    $("#care-visit").checked = true;
    $("#care-online").checked = true;
    $("#course-until").value = "";
    $("#consent-message").hidden = true;
    $("#consent-name").textContent = name || "";
    resultCard($("#first-result"), result);
    drawConsent();
    show("consent");
  }

  function consentBody() {
    const body = Object.assign({}, consent);
    if ($("#course-on").checked) {
      body.setting = "home";
      body.home_visit = $("#care-visit").checked;
      body.online_care = $("#care-online").checked;
      if ($("#course-until").value) body.course_until = $("#course-until").value;
    } else {
      body.setting = "outpatient";  // the course refused: today's answer only (it ends an earlier course)
    }
    return body;
  }

  async function submitConsent() {
    const message = $("#consent-message");
    if ($("#course-on").checked && !$("#care-visit").checked && !$("#care-online").checked) {
      message.textContent = "訪問診療・オンライン診療のどちらか（または両方）を選んでください。";
      message.hidden = false;
      return;
    }
    const body = consentBody();
    const course = body.setting === "home";
    if (visualVisit) {
      const r = await busy(() => call("POST", "/api/visit/consent", Object.assign({ visit_id: visualVisit }, body)));
      if (!r) return;
      if (!r.ok) { message.textContent = errorText(r); message.hidden = false; return; }
      visualVisit = null;
      finished(course ? "同意を登録しました" : "回答を登録しました", course ? "次回からは「2回目以降の訪問」で、カードなしで資格を確認できます。" : "再照会には同意されませんでした。次回もカードで確認してください。");
      return;
    }
    const r = await busy(() => call("POST", "/api/kiosk/consent", body));
    if (!r || !r.data || !r.data.screen) { message.textContent = errorText(r); message.hidden = false; return; }
    flow = r.data;
    if (r.data.screen === "done" && r.data.code == null) {
      finished(course ? "同意を登録しました" : "回答を登録しました", course ? "次回からは「2回目以降の訪問」で、カードなしで資格を確認できます。" : "再照会には同意されませんでした。次回もカードで確認してください。");
    } else {
      show("card");
      flow = null;
      drawFlow(r.data);
    }
  }

  function finished(title, detail) {
    $("#done-title").textContent = title;
    $("#done-detail").textContent = detail;
    show("done");
  }

  // ---------------------------------------------------------------- courses and 再照会

  async function loadCourses() {
    show("courses");
    const list = $("#course-list");
    list.replaceChildren();
    const r = await busy(() => call("GET", "/api/visit/courses"));
    if (!r) return;
    if (!r.ok) { list.append(el("p", "message warn", errorText(r))); return; }
    $("#course-empty").hidden = r.data.length > 0;
    r.data.forEach((c) => list.append(courseCard(c)));
  }

  function courseCard(c) {
    const card = el("article", "course-card");
    card.dataset.visit = c.visit_id;
    const head = el("div", "head");
    head.append(el("h2", "", `${c.name} 様`), el("span", "kana", c.name_kana || ""));
    card.append(head);
    const facts = el("dl", "facts");
    [["生年月日", c.birth_date || "—"], ["保険", c.insurance], ["初回", `${c.first_visit}・${c.confirmation}`],
     ["同意", `${c.cares.map((x) => x.label).join("・")}（${c.until}）`], ["提供", c.shared]].forEach(([k, v]) => {
      facts.append(el("dt", "", k), el("dd", "", v));
    });
    card.append(facts);
    const actions = el("div", "actions");
    c.cares.forEach((care) => {
      const b = el("button", "primary", `再照会（${care.label}）`);
      b.type = "button";
      b.dataset.recheck = care.care;
      actions.append(b);
    });
    card.append(actions, el("div", "outcome"));
    return card;
  }

  async function recheck(button) {
    const card = button.closest(".course-card");
    const box = $(".outcome", card);
    const r = await busy(() => call("POST", `/api/visit/courses/${encodeURIComponent(card.dataset.visit)}/recheck`,
      { care: button.dataset.recheck }));
    if (!r) return;
    box.replaceChildren();
    const data = r.ok ? r.data : { ok: false, headline: errorText(r) };
    box.className = "outcome " + (data.ok ? "ok" : "ng");
    box.append(el("div", "headline", data.headline));
    if (data.ok && data.insured) {
      box.append(el("div", "meta", `${data.care}・${data.when}`));
      if (data.limit_certificate) box.append(el("div", "meta", `限度額 区分 ${data.limit_certificate.classification_label}`));
    }
  }

  // ---------------------------------------------------------------- taps

  document.addEventListener("click", (event) => {
    const target = event.target.closest("button");
    if (!target || target.disabled) return;
    if (target.id === "to-menu") {
      if (view === "card" || (view === "consent" && !visualVisit)) call("POST", "/api/kiosk/reset");
      visualVisit = null;
      show("menu");
      return;
    }
    const go = target.dataset.go;
    if (go === "card") { startCard(); return; }
    if (go === "courses") { loadCourses(); return; }
    if (go) { if (go === "menu") call("POST", "/api/kiosk/reset"); show(go); return; }
    if (target.dataset.digit !== undefined) { if (pin.length < 4) pin += target.dataset.digit; drawPin(); return; }
    if (target.dataset.pin === "clear") { pin = ""; drawPin(); return; }
    if (target.dataset.pin === "ok") {
      if (pin.length !== 4) return;
      const value = pin;
      pin = "";
      drawPin();
      flowAct(flow && flow.screen === "register" ? "/api/kiosk/register" : "/api/kiosk/pin", { pin: value });
      return;
    }
    const card = target.dataset.card;
    if (card === "read") { flowAct("/api/kiosk/read"); return; }
    if (card === "pin") { flowAct("/api/kiosk/method", { method: "pin" }); return; }
    if (card === "skip") { flowAct("/api/kiosk/skip-consent"); return; }
    if (card === "restart") { flowAct("/api/kiosk/reset"); show("first"); return; }
    if (target.dataset.mode) { setMode(target.dataset.mode); return; }
    if (target.dataset.value && target.closest(".consent")) {
      consent[target.closest(".consent").dataset.category] = target.dataset.value === "yes";
      drawConsent();
      return;
    }
    if (target.id === "consent-ok") { submitConsent(); return; }
    if (target.dataset.recheck) { recheck(target); }
  });

  document.addEventListener("change", (event) => {
    if (event.target.id === "course-on") drawConsent();
  });

  $("#visual-form").addEventListener("input", () => { $("#visual-message").hidden = true; });
  $("#visual-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitVisual(event.target);
  });

  call("GET", "/api/visit/config").then((r) => {
    if (!r.data) return;
    $("#facility-name").textContent = r.data.facility_name || "";
    $("#demo-badge").hidden = !r.data.demo;
  }).catch(() => {});
  show("menu");
  drawConsent();
  poll();
})();
