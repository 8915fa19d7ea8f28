// The patient's own screens. State lives in the local backend (the card session); this page renders it.
// Nothing is written to browser storage of any kind; the PIN is held in a local variable only until it is
// sent to this terminal's own backend (which hands it to the card and drops it), then cleared.
// Nothing about the patient is shown before the PIN: the views are fetched only after it.
(function () {
  "use strict";

  const POLL_MS = 1000;
  let state = null;
  let view = null;  // a screen under the menu, or null
  let pin = "";
  let year = new Date().getFullYear() - 1;  // 確定申告: last year's expenses
  let inFlight = false;

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const yen = (n) => n.toLocaleString("ja-JP") + " 円";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  const call = window.common.call;  // common.js

  async function act(method, path, body) {
    if (inFlight) return null;
    inFlight = true;
    $("#busy").hidden = false;
    try {
      const r = await call(method, path, body);
      if (!r.ok && r.data && r.data.session) setState(r.data.session);
      else if (r.ok && r.data && r.data.screen) setState(r.data);
      return r;
    } finally {
      inFlight = false;
      $("#busy").hidden = true;
    }
  }

  function clearPin() { pin = ""; drawPin(); }
  function drawPin() { window.common.drawPin(pin.length); }

  function setState(next) {
    const changed = !state || state.screen !== next.screen;
    state = Object.assign({}, state || {}, next);
    if (state.screen !== "menu") view = null;
    if (changed) render();
  }

  function show(name) {
    document.body.dataset.screen = name;
    $$("section[data-screen]").forEach((s) => { s.hidden = s.dataset.screen !== name; });
  }

  function render() {
    const name = state.screen === "menu" && view ? view : state.screen;
    show(name);
    $("#demo-badge").hidden = !state.demo;
    $("#who").textContent = state.patient_name ? state.patient_name + " 様" : "";
    const section = $(`section[data-screen='${name}']`);
    const message = $("[data-field=message]", section);
    if (message && name !== "consents") message.textContent = state.message || "";
    if (name === "pin") {
      clearPin();
      $("[data-field=tries]", section).textContent = state.tries_left != null ? `残り入力回数：${state.tries_left}回` : "";
    }
    if (name === "menu") $("[data-field=patient_name]", section).textContent = state.patient_name || "";
  }

  function failed(r) {
    if (r && r.data && r.data.session && r.data.session.screen !== "menu") return true;  // the session ended: shown
    if (r && !r.ok) {
      const section = $(`section[data-screen='${document.body.dataset.screen}']`);
      const list = $(".list", section) || $("tbody", section);
      if (list) { list.replaceChildren(el("p", "message warn", (r.data && r.data.message) || "表示できませんでした。")); }
      return true;
    }
    return false;
  }

  // --- the views -------------------------------------------------------------------------------
  async function open(name) {
    view = name;
    render();
    const section = $(`section[data-screen='${name}']`);
    if (name === "medications") {
      const r = await act("GET", "/api/me/medications");
      if (failed(r)) return;
      $("[data-field=since]", section).textContent = `${r.data.since.replaceAll("-", "/")} 以降に処方・調剤されたお薬`;
      const list = $("[data-list=medications]", section);
      list.replaceChildren(...(r.data.items.length ? r.data.items.map((m) => {
        const item = el("div", "item");
        item.append(el("div", "title", m.drug_name));
        item.append(el("div", "", `${m.dispensed_on.replaceAll("-", "/")}　${m.quantity}${m.unit}・${m.days}日分`));
        item.append(el("div", "meta", m.facility_name || m.facility_description || `医療機関 ${m.facility_code}`));
        return item;
      }) : [el("p", "empty", "記録はありません。")]));
    } else if (name === "checkups") {
      const r = await act("GET", "/api/me/checkups");
      if (failed(r)) return;
      $("[data-field=since]", section).textContent = `${r.data.since.replaceAll("-", "/")} 以降の特定健診`;
      const head = el("tr");
      head.append(el("th", "", "項目"), ...r.data.dates.map((d) => el("th", "", d.replaceAll("-", "/"))), el("th", "", "基準"));
      $("thead", section).replaceChildren(head);
      $("tbody", section).replaceChildren(...r.data.rows.map((row) => {
        const tr = el("tr");
        const label = el("th", "", row.label);
        if (row.unit) label.append(el("span", "unit", `（${row.unit}）`));
        tr.append(label);
        row.values.forEach((v) => {
          const td = el("td", "num" + (v.flag ? ` flag-${v.flag}` : ""), v.text);
          if (v.flag) {
            const mark = el("span", `flag ${v.flag}`, v.flag === "referral" ? "受診" : "注意");
            mark.title = v.flag_label;
            td.append(mark);
          }
          tr.append(td);
        });
        tr.append(el("td", "ref", row.reference));
        return tr;
      }));
      if (!r.data.rows.length) $("tbody", section).replaceChildren(el("tr", "", "記録はありません。"));
    } else if (name === "expenses") {
      await loadExpenses(section);
    } else if (name === "access_log") {
      const r = await act("GET", "/api/me/access-log");
      if (failed(r)) return;
      $("[data-list=access_log]", section).replaceChildren(...r.data.entries.map((e) => {
        const item = el("div", "item" + (e.emergency ? " emergency" : ""));
        const title = el("div", "title", e.who);
        if (e.emergency) title.append(el("span", "tag emergency", "救急時の閲覧"));
        const what = e.kind ? `${e.what}・${e.kind}` : e.what;
        item.append(title, el("div", "", `${what}（${e.role}）`));
        if (e.confirmation) item.append(el("div", "how", `本人確認：${e.confirmation}`));
        item.append(el("div", "meta", e.at));
        return item;
      }));
    } else if (name === "consents") {
      await loadConsents(section, "");
    }
  }

  async function loadExpenses(section) {
    $("[data-field=year]", section).textContent = year;
    const r = await act("GET", `/api/me/expenses?year=${year}`);
    if (failed(r)) return;
    $("[data-field=total_paid]", section).textContent = yen(r.data.total.patient_paid);
    const months = r.data.months.map((m) => {
      const tr = el("tr");
      tr.append(el("td", "", `${Number(m.service_month.slice(5))}月`), el("td", "num", yen(m.total_cost)),
        el("td", "num", yen(m.patient_paid)));
      return tr;
    });
    $("[data-table=months] tbody", section).replaceChildren(...(months.length ? months : [emptyRow(3)]));
    const facilities = r.data.facilities.map((f) => {
      const tr = el("tr");
      tr.append(el("td", "", f.facility_name), el("td", "num", `${f.days}日`), el("td", "num", yen(f.patient_paid)));
      return tr;
    });
    $("[data-table=facilities] tbody", section).replaceChildren(...(facilities.length ? facilities : [emptyRow(3)]));
    $("#export-xlsx").href = `/api/me/expenses/export?year=${year}&format=xlsx`;
    $("#export-csv").href = `/api/me/expenses/export?year=${year}&format=csv`;
  }

  function emptyRow(n) {
    const tr = el("tr");
    const td = el("td", "empty", "この年の記録はありません。");
    td.colSpan = n;
    tr.append(td);
    return tr;
  }

  async function loadConsents(section, note) {
    $("[data-field=message]", section).textContent = note;
    const r = await act("GET", "/api/me/consents");
    if (failed(r)) return;
    $("[data-list=consents]", section).replaceChildren(...(r.data.consents.length ? r.data.consents.map((c) => {
      const item = el("div", "item");
      const title = el("div", "title", c.facility);
      title.append(el("span", "tag " + (c.can_withdraw ? "live" : "state"), c.state_label));
      item.append(title, el("div", "", `提供する情報：${c.shared}`), el("div", "meta", `${c.given_at} に回答`));
      if (c.can_withdraw) {
        const b = el("button", "secondary withdraw", "同意を取り消す");
        b.type = "button";
        b.dataset.withdraw = c.consent_id;
        item.append(b);
      }
      return item;
    }) : [el("p", "empty", "同意の記録はありません。")]));
  }

  // --- taps ------------------------------------------------------------------------------------
  document.addEventListener("click", async (event) => {
    const target = event.target.closest("button, a");
    if (!target) return;
    if (target.dataset.digit !== undefined) { if (pin.length < 4) pin += target.dataset.digit; drawPin(); return; }
    if (target.dataset.pin === "clear") { clearPin(); return; }
    if (target.dataset.pin === "ok") {
      if (pin.length !== 4) return;
      const value = pin;
      clearPin();
      const r = await act("POST", "/api/me/pin", { pin: value });
      if (r && r.data && r.data.screen === "pin") render();  // a wrong PIN: the message and the tries
      return;
    }
    if (target.dataset.view) { open(target.dataset.view); return; }
    if (target.dataset.year) {
      year += Number(target.dataset.year);
      loadExpenses($("section[data-screen='expenses']"));
      return;
    }
    if (target.dataset.withdraw) {
      const r = await act("POST", `/api/me/consents/${target.dataset.withdraw}/withdraw`);
      if (failed(r)) return;
      loadConsents($("section[data-screen='consents']"), "同意を取り消しました。");
      return;
    }
    if (target.id === "suspend-yes") { view = null; await act("POST", "/api/me/suspension"); render(); return; }
    const action = target.dataset.action;
    if (action === "read") await act("POST", "/api/me/read");
    else if (action === "menu") { view = null; render(); }
    else if (action === "end") {
      await act("POST", "/api/me/end");
      if (state && state.home) window.location.assign(state.home);
    }
  });

  document.addEventListener("keydown", (event) => {
    if (!state || state.screen !== "pin" || view) return;
    if (/^[0-9]$/.test(event.key) && pin.length < 4) { pin += event.key; drawPin(); }
    else if (event.key === "Backspace") { pin = pin.slice(0, -1); drawPin(); }
    else if (event.key === "Enter") $("section[data-screen='pin'] [data-pin=ok]").click();
  });

  // the card pulled or the session timed out: the backend's screen changes, the page follows
  async function poll() {
    if (!inFlight) {
      const r = await call("GET", "/api/me/state");
      if (r.ok && r.data) {
        const was = state && state.screen;
        setState(r.data);
        if (was === "menu" && r.data.screen !== "menu") render();
      }
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
}());
