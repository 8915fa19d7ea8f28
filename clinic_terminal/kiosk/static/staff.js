// Reception staff screen. All data comes from this kiosk's backend (memory only for the day);
// nothing is written to browser storage.
(function () {
  "use strict";

  const POLL_MS = 1500;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  let config = { medications: false, checkups: false };
  let seen = new Set();
  const ROLE = { reception: "受付", physician: "医師", dentist: "歯科医師", pharmacist: "薬剤師" };
  const METHOD = { pin: "暗証番号", face: "顔認証", number: "番号" };

  const call = window.common.call;  // common.js

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v; else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v); else node[k] = v;
    });
    children.flat().forEach((c) => { if (c != null) node.append(c instanceof Node ? c : String(c)); });
    return node;
  }

  function showError(id, text) {
    const p = $(id);
    p.textContent = text || "";
    p.hidden = !text;
  }

  // a date or a range of dates never breaks inside a date: 「2024-04-01〜」「2025-03-31」
  function range(from, to) {
    return [el("span", { class: "nowrap" }, (from || "") + "〜"), to ? el("span", { class: "nowrap" }, to) : null];
  }

  function nowrap(text) { return el("span", { class: "nowrap" }, text); }

  const FIELD_LABEL = { insurer_number: "保険者番号", symbol: "記号", number: "番号", branch: "枝番", birth_date: "生年月日" };

  // what the desk keyed, for a lookup that failed or found nobody (never a My Number: the form has no such field)
  function searchedText(q) {
    const parts = [];
    if (q.insurer_number) parts.push("保険者番号 " + q.insurer_number);
    if (q.symbol) parts.push("記号 " + q.symbol);
    if (q.number) parts.push("番号 " + q.number);
    if (q.branch) parts.push("枝番 " + q.branch);
    if (q.birth_date) parts.push("生年月日 " + q.birth_date);
    return parts.join("・");
  }

  function errorText(r) {
    if (r.data && r.data.message) return r.data.message + (r.data.problems ? "" : "");
    return "照会できませんでした（" + r.status + "）。";
  }

  function validityCell(result) {
    const ins = result.insured;
    const cls = result.usable ? "valid" : "invalid";
    const parts = [el("span", { class: cls }, result.usable ? "有効" : "無効")];
    if (!result.usable) {
      parts.push(el("span", { class: "small" }, result.validity_label));
      if (ins && ins.reason_of_loss_label) parts.push(el("span", { class: "small" }, "喪失事由: " + ins.reason_of_loss_label));
      if (ins && ins.valid_to) parts.push(el("span", { class: "small" }, "資格終了: ", nowrap(ins.valid_to)));
      if (result.processing && result.processing.status === "error") parts.push(el("span", { class: "small" }, result.processing.message || result.processing.code));
    } else if (ins) {
      parts.push(el("span", { class: "small" }, range(ins.valid_from, ins.valid_to)));
    }
    if (result.certificate_notice === "expires_soon") parts.push(el("span", { class: "small" }, "電子証明書 期限間近"));
    if (result.certificate_notice === "grace_period") parts.push(el("span", { class: "small" }, "電子証明書 期限切れ（猶予期間）"));
    return el("td", {}, parts);
  }

  function nameCell(ins, searched) {
    if (!ins) {
      return el("td", {}, el("strong", {}, "該当者なし"),
        searched ? el("span", { class: "small searched" }, "照会: " + searchedText(searched)) : null);
    }
    return el("td", {}, el("strong", {}, ins.name), el("span", { class: "kana" }, ins.name_kana),
      el("span", { class: "small" }, [ins.birth_date, ins.sex, ins.personal_family].filter(Boolean).map(nowrap)
        .flatMap((n, i) => i ? [" ", n] : [n])));
  }

  function insurerCell(ins) {
    if (!ins) return el("td", {}, "—");
    return el("td", {}, ins.insurer_number, el("span", { class: "small" }, ins.insurer_name || ""));
  }

  function numberCell(ins) {
    if (!ins) return el("td", {}, "—");
    return el("td", {}, nowrap([ins.symbol, ins.number].filter(Boolean).join("・")), ins.branch ? nowrap("（" + ins.branch + "）") : null);
  }

  function copayCell(result) {
    const ins = result.insured;
    if (!ins) return el("td", {}, "—");
    return el("td", { class: "nowrap" }, el("strong", {}, result.copay_label), result.elderly ? el("span", { class: "small" }, "高齢受給者") : null);
  }

  function elderlyCell(result) {
    const e = result.elderly;
    if (!e) return el("td", {}, "—");
    return el("td", {}, nowrap(e.copay_label), el("span", { class: "small" }, range(e.valid_from, e.valid_to)));
  }

  function limitCell(result) {
    const parts = [];
    const lc = result.limit_certificate;
    if (lc) parts.push(el("span", {}, "区分 " + lc.classification_label + "（" + lc.classification + "）"), el("span", { class: "small" }, range(lc.valid_from, lc.valid_to)));
    (result.specific_diseases || []).forEach((d) => parts.push(el("span", { class: "small" }, "特定疾病: " + d.label + (d.self_pay != null ? "（上限 " + d.self_pay + "円）" : ""))));
    return el("td", {}, parts.length ? parts : "—");
  }

  function consentCell(record) {
    const c = record.consent;
    if (!c) return el("td", {}, record.consent_note ? el("span", { class: "small" }, record.consent_note) : "—");
    const pill = (on, label) => el("span", { class: on ? "pill on" : "pill" }, label);
    return el("td", {}, pill(c.drug, "薬剤"), pill(c.checkup, "健診"), pill(c.clinical, "診療"), pill(c.limit_certificate, "限度額"));
  }

  function actionsCell(record) {
    const c = record.consent;
    const visit = record.result.visit_id;
    const buttons = [];
    if (visit && c && config.medications && c.drug) {
      buttons.push(el("button", { type: "button", class: "ghost", "data-visit": visit, "data-kind": "medications" }, "薬剤情報"));
    }
    if (visit && c && config.checkups && c.checkup) {
      buttons.push(el("button", { type: "button", class: "ghost", "data-visit": visit, "data-kind": "checkups" }, "健診情報"));
    }
    return el("td", { class: "actions" }, el("div", { class: "stack" }, buttons));
  }

  // the board's one-word state, and what changed since the person's previous check on this terminal
  function stateCell(record) {
    const parts = [el("span", { class: "state state-" + record.attention }, record.attention_label)];
    const ch = record.changes;
    if (ch && ch.items.length) {
      parts.push(el("ul", { class: "changes" }, ch.items.map((t) => el("li", {}, t))));
      parts.push(el("span", { class: "small" }, "前回確認 ", nowrap(ch.previous_at)));
    } else if (ch) {
      parts.push(el("span", { class: "small" }, "前回（", nowrap(ch.previous_at), "）から変更なし"));
    }
    return el("td", { class: "state-cell" }, parts);
  }

  function checkRow(record) {
    const r = record.result;
    const tr = el("tr", { "data-id": String(record.id), "data-attention": record.attention },
      el("td", {}, nowrap(record.at)), stateCell(record), el("td", {}, nowrap(METHOD[record.method] || record.method)),
      nameCell(r.insured, record.searched), insurerCell(r.insured), numberCell(r.insured), copayCell(r), validityCell(r),
      elderlyCell(r), limitCell(r), consentCell(record), actionsCell(record));
    if (!seen.has(record.id)) { tr.classList.add("new"); seen.add(record.id); }
    return tr;
  }

  let lastChecks = [];
  let lastNotices = [];

  // at a glance: who is waiting, who needs the desk (受付へ / 申立書 / 資格なし), whose data changed
  function renderSummary() {
    const count = (list, attention) => list.filter((x) => x.attention === attention).length;
    const chip = (attention, label, n) => el("span", { class: "chip state-" + attention + (n ? "" : " zero"), "data-chip": attention }, label + " ", el("strong", {}, String(n)));
    $("#board-summary").replaceChildren(
      el("span", { class: "chip", "data-chip": "waiting" }, "本日の確認 ", el("strong", {}, String(lastChecks.length)), " 件"),
      el("span", { class: "sep" }, "要対応"),
      chip("desk", "受付へ", count(lastNotices, "desk")),
      chip("statement", "申立書", count(lastNotices, "statement")),
      chip("not_insured", "資格なし", count(lastChecks, "not_insured")),
      chip("changed", "変更あり", count(lastChecks, "changed")));
  }

  async function refreshChecks() {
    try {
      const r = await call("GET", "/api/staff/checks");
      if (!r.ok) return;
      const body = $("#checks tbody");
      body.replaceChildren(...r.data.map(checkRow));
      $("#checks-empty").hidden = r.data.length > 0;
      lastChecks = r.data;
      renderSummary();
    } catch (e) { /* retry at the next poll */ }
  }

  // --- 受付対応: referrals and outage rows (緊急時) --------------------------------------------
  const STATUS_CLASS = { valid: "status-valid", pending: "status-pending", needs_card: "status-bad",
    not_insured: "status-bad", multiple: "status-bad", error: "status-bad", unreadable: "status-bad" };
  const VERIFIED = { pin: "暗証番号（カードで確認済み）", face: "顔認証（端末で照合済み）", number: "番号を入力" };

  function identifiedCell(n) {
    const parts = [];
    if (n.number) {
      const q = n.number;
      parts.push(el("span", {}, q.insurer_number + " " + [q.symbol, q.number].filter(Boolean).join("・") + (q.branch ? "（" + q.branch + "）" : "")));
      parts.push(el("span", { class: "small" }, "生年月日 " + q.birth_date));
    }
    if (n.card) {
      parts.push(el("span", { class: "small" }, "カード証明書 ", el("code", {}, n.card.fingerprint + "…")));
      if (n.card.serial) parts.push(el("span", { class: "small" }, "シリアル ", el("code", {}, n.card.serial)));
    }
    return el("td", {}, parts.length ? parts : "—");
  }

  function statusCell(n) {
    if (!n.status_label) return el("td", {}, "—");
    const parts = [el("span", { class: STATUS_CLASS[n.status] || "" }, n.status_label)];
    const r = n.result;
    if (r && r.insured) {
      const ratio = r.elderly ? r.elderly.copay_ratio : r.insured.copay_ratio;
      parts.push(el("span", { class: "small" }, r.insured.name + "　", nowrap(r.copay_label), r.as_of ? nowrap("（" + r.as_of + " 時点）") : null));
    }
    if (n.status === "needs_card") parts.push(el("span", { class: "small" }, "次回来院時にカードで確認してください"));
    if (n.error_code) parts.push(el("span", { class: "small" }, n.error_code));
    if (n.resolved_at) parts.push(el("span", { class: "small" }, "確認 " + n.resolved_at));
    return el("td", {}, parts);
  }

  function noticeRow(n) {
    const tr = el("tr", { "data-id": n.id, "data-kind": n.kind, "data-status": n.status || "", "data-attention": n.attention },
      el("td", { class: "nowrap" }, n.at, n.visit_date ? el("span", { class: "small" }, n.visit_date) : null),
      el("td", {}, el("span", { class: "state state-" + n.attention }, n.attention_label)),
      el("td", {}, el("span", { class: n.kind === "outage" ? "label" : "label referral" }, n.label)),
      el("td", {}, n.source_label),
      identifiedCell(n),
      el("td", { class: "keep" }, n.verified ? n.verified : (VERIFIED[n.method] || "—")),
      statusCell(n));
    if (!seen.has(n.id)) { tr.classList.add("new"); seen.add(n.id); }
    return tr;
  }

  async function refreshNotices() {
    try {
      const r = await call("GET", "/api/staff/notices");
      if (!r.ok) return;
      $("#notices tbody").replaceChildren(...r.data.map(noticeRow));
      $("#notices-panel").hidden = r.data.length === 0;
      lastNotices = r.data;
      renderSummary();
      $("#outage-banner").hidden = !r.data.some((n) => n.status === "pending");
    } catch (e) { /* retry at the next poll */ }
  }

  async function showHistory(visit, kind) {
    const panel = $("#history-panel");
    panel.hidden = false;
    $("#history-title").textContent = kind === "medications" ? "薬剤情報（過去3年）" : "特定健診情報（過去5年）";
    showError("#history-error", "");
    const table = $("#history");
    table.tHead.replaceChildren();
    table.tBodies[0].replaceChildren();
    const r = await call("GET", "/api/staff/visits/" + encodeURIComponent(visit) + "/" + kind);
    if (!r.ok) { showError("#history-error", errorText(r)); return; }
    $("#history-legend").hidden = kind !== "checkups";
    if (kind === "medications") {
      table.tHead.append(el("tr", {}, ["調剤日", "薬品名", "数量", "日数", "調剤した医療機関・薬局"].map((h) => el("th", {}, h))));
      r.data.items.forEach((m) => table.tBodies[0].append(el("tr", {},
        el("td", { class: "nowrap" }, m.dispensed_on),
        el("td", {}, m.drug_name, el("span", { class: "small" }, m.drug_code)),
        el("td", { class: "nowrap num" }, m.quantity + " " + m.unit),
        el("td", { class: "nowrap num" }, m.days + "日"),
        el("td", {}, el("span", {}, m.facility_name || m.facility_description || "医療機関名不明"),
          el("span", { class: "small nowrap" }, "医療機関コード " + m.facility_code)))));
      if (!r.data.items.length) table.tBodies[0].append(el("tr", {}, el("td", { colSpan: 5 }, "記録はありません。")));
    } else {
      table.tHead.append(el("tr", {}, [el("th", {}, "区分"), el("th", {}, "検査項目"), el("th", {}, "単位"), el("th", {}, "基準範囲")]
        .concat(r.data.dates.map((d) => el("th", { class: "nowrap" }, d)))));
      let group = null;
      r.data.rows.forEach((row) => {
        const first = row.group !== group;
        group = row.group;
        table.tBodies[0].append(el("tr", { "data-item": row.key, class: first ? "group-start" : "" },
          el("td", { class: "keep group" }, first ? row.group : ""),
          el("th", { scope: "row", class: "keep item", title: row.thresholds }, row.label),
          el("td", { class: "nowrap unit" }, row.unit),
          el("td", { class: "nowrap ref" }, row.reference),
          row.values.map((v) => el("td", { class: "nowrap num" + (v.flag ? " flag-" + v.flag : ""), title: v.flag_label || "" },
            v.text, v.flag ? el("span", { class: "mark " + v.flag, "aria-label": v.flag_label }, v.flag === "referral" ? " ●" : " ▲") : null))));
      });
      if (!r.data.dates.length) table.tBodies[0].append(el("tr", {}, el("td", { colSpan: 4 }, "記録はありません。")));
      return panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
    }
    panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function formRows(form) {
    const data = {};
    new FormData(form).forEach((v, k) => { if (typeof v === "string" && v.trim() !== "") data[k] = v.trim(); });
    return data;
  }

  function showFieldErrors(form, fields) {
    $$("[data-error-for]", form).forEach((span) => {
      const text = fields[span.dataset.errorFor];
      span.textContent = text || "";
      span.hidden = !text;
      const input = form.elements[span.dataset.errorFor];
      if (input) { if (text) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid"); }
    });
  }

  $("#number-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const data = formRows(form);
    data.include_limit_certificate = form.elements.include_limit_certificate.checked;
    showError("#number-error", "");
    showError("#number-searched", "");
    showError("#number-info", "");
    showFieldErrors(form, {});
    // one check at a time: the form waits for the answer, so a number typed meanwhile is not
    // wiped by the earlier answer's reset (nor a second click sent twice)
    const controls = Array.from(form.elements);
    controls.forEach((c) => { c.disabled = true; });
    form.setAttribute("aria-busy", "true");
    let r;
    try {
      r = await call("POST", "/api/staff/by-number", data);
    } finally {
      controls.forEach((c) => { c.disabled = false; });
      form.removeAttribute("aria-busy");
    }
    if (!r.ok) {
      if (r.status === 422 && r.data && r.data.fields) {
        showFieldErrors(form, r.data.fields);
        showError("#number-error", r.data.message);
        const first = Object.keys(r.data.fields)[0];
        if (first && form.elements[first]) form.elements[first].focus();
        return;
      }
      showError("#number-error", errorText(r));
      showError("#number-searched", "照会した内容: " + searchedText(data));
      return;
    }
    form.reset();
    if (r.data && r.data.outage) { showError("#number-info", r.data.message); refreshNotices(); return; }
    if (r.data && r.data.result && !r.data.result.insured) {
      showError("#number-error", r.data.result.validity_label + "。");
      showError("#number-searched", "照会した内容: " + searchedText(data));
    }
    refreshChecks();
  });

  function addRow() {
    const row = $("#row-template").content.firstElementChild.cloneNode(true);
    $(".remove", row).addEventListener("click", () => row.remove());
    $("#batch-rows").append(row);
  }

  $("#batch-add-row").addEventListener("click", addRow);

  $("#batch-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    if (file.size > 1000000) { showError("#batch-error", "ファイルが大きすぎます。"); return; }
    event.target.form.elements.csv.value = await file.text();
    event.target.value = "";
  });

  $("#batch-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const body = { label: form.elements.label.value || null, as_of: form.elements.as_of.value || null };
    const csv = form.elements.csv.value.trim();
    const rows = $$(".batch-row").map((row) => {
      const d = {};
      $$("input", row).forEach((i) => { if (i.value.trim()) d[i.dataset.k] = i.value.trim(); });
      return d;
    }).filter((d) => Object.keys(d).length);
    if (csv) body.csv = csv; else body.rows = rows;
    showError("#batch-error", "");
    const r = await call("POST", "/api/staff/batches", body);
    if (!r.ok) {
      const problems = r.data && r.data.problems ? r.data.problems.map((p) => p.row + "行目 " + p.message).join(" / ") : "";
      showError("#batch-error", problems || errorText(r));
      return;
    }
    form.reset();
    $("#batch-rows").replaceChildren();
    refreshBatches();
  });

  async function refreshBatches() {
    const r = await call("GET", "/api/staff/batches");
    if (!r.ok) return;
    $("#batches").replaceChildren(...r.data.map((b) => el("li", { "data-batch": b.batch_id },
      el("span", {}, (b.label || "一括照会") + "（" + b.count + "件）"),
      el("span", { class: "status" }, ""),
      el("button", { type: "button", class: "ghost", "data-show-batch": b.batch_id }, "結果を見る"))));
  }

  async function showBatch(id) {
    const r = await call("GET", "/api/staff/batches/" + encodeURIComponent(id));
    const li = $("li[data-batch='" + CSS.escape(id) + "'] .status");
    if (!r.ok) { showError("#batch-error", errorText(r)); return; }
    if (li) li.textContent = r.data.status === "done" ? "完了" : "処理中";
    const table = $("#batch-results");
    const body = $("tbody", table);
    body.replaceChildren();
    table.hidden = false;
    if (!r.data.results) {
      body.append(el("tr", {}, el("td", { colSpan: 7 }, "処理中です。しばらくしてから再度「結果を見る」を押してください。")));
      return;
    }
    r.data.results.forEach((item) => {
      const res = item.result;
      const q = item.query;
      body.append(el("tr", { "data-index": String(item.index) }, el("td", {}, String(item.index + 1)),
        nameCell(res.insured, q),
        insurerCell(res.insured), numberCell(res.insured), copayCell(res), validityCell(res), elderlyCell(res)));
    });
  }

  document.addEventListener("click", (event) => {
    const b = event.target.closest("button");
    if (!b) return;
    if (b.dataset.visit) showHistory(b.dataset.visit, b.dataset.kind);
    else if (b.dataset.showBatch) showBatch(b.dataset.showBatch);
    else if (b.id === "history-close") $("#history-panel").hidden = true;
  });

  function tick() {
    $("#clock").textContent = new Date().toLocaleString("ja-JP", { dateStyle: "medium", timeStyle: "short", timeZone: "Asia/Tokyo" });
  }

  async function init() {
    const r = await call("GET", "/api/staff/config");
    if (r.ok) {
      config = r.data;
      $("#role").textContent = "権限: " + (ROLE[config.role] || config.role) + (config.facility_name ? "　" + config.facility_name : "");
      $("#demo-badge").hidden = !config.demo;
    }
    addRow();
    tick();
    setInterval(tick, 30000);
    refreshChecks();
    refreshNotices();
    refreshBatches();
    setInterval(refreshChecks, POLL_MS);
    setInterval(refreshNotices, POLL_MS);
  }

  init();
})();
