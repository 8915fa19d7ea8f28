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

  async function call(method, path, body) {
    const response = await fetch(path, {
      method: method, cache: "no-store", credentials: "omit",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data: data };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
    });
    children.flat().forEach((c) => { if (c != null) node.append(c instanceof Node ? c : String(c)); });
    return node;
  }

  function showError(id, text) {
    const p = $(id);
    p.textContent = text || "";
    p.hidden = !text;
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
      if (ins && ins.valid_to) parts.push(el("span", { class: "small" }, "資格終了: " + ins.valid_to));
      if (result.processing && result.processing.status === "error") parts.push(el("span", { class: "small" }, result.processing.message || result.processing.code));
    } else if (ins) {
      parts.push(el("span", { class: "small" }, ins.valid_from + "〜" + (ins.valid_to || "")));
    }
    if (result.certificate_notice === "expires_soon") parts.push(el("span", { class: "small" }, "電子証明書 期限間近"));
    if (result.certificate_notice === "grace_period") parts.push(el("span", { class: "small" }, "電子証明書 期限切れ（猶予期間）"));
    return el("td", {}, parts);
  }

  function nameCell(ins) {
    if (!ins) return el("td", {}, "—");
    return el("td", {}, el("strong", {}, ins.name), el("span", { class: "kana" }, ins.name_kana),
      el("span", { class: "small" }, [ins.birth_date, ins.sex, ins.personal_family].filter(Boolean).join(" ")));
  }

  function insurerCell(ins) {
    if (!ins) return el("td", {}, "—");
    return el("td", {}, ins.insurer_number, el("span", { class: "small" }, ins.insurer_name || ""));
  }

  function numberCell(ins) {
    if (!ins) return el("td", {}, "—");
    return el("td", {}, [ins.symbol, ins.number].filter(Boolean).join("・") + (ins.branch ? "（" + ins.branch + "）" : ""));
  }

  function copayCell(result) {
    const ins = result.insured;
    if (!ins) return el("td", {}, "—");
    const ratio = result.elderly ? result.elderly.copay_ratio : ins.copay_ratio;
    return el("td", {}, el("strong", {}, (ratio / 10) + "割"), result.elderly ? el("span", { class: "small" }, "高齢受給者") : null);
  }

  function elderlyCell(result) {
    const e = result.elderly;
    if (!e) return el("td", {}, "—");
    return el("td", {}, e.copay_ratio + "%", el("span", { class: "small" }, e.valid_from + "〜" + (e.valid_to || "")));
  }

  function limitCell(result) {
    const parts = [];
    const lc = result.limit_certificate;
    if (lc) parts.push(el("span", {}, "区分 " + lc.classification_label + "（" + lc.classification + "）"), el("span", { class: "small" }, lc.valid_from + "〜" + (lc.valid_to || "")));
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
    return el("td", {}, buttons);
  }

  function checkRow(record) {
    const r = record.result;
    const tr = el("tr", { "data-id": String(record.id) },
      el("td", {}, record.at), el("td", {}, METHOD[record.method] || record.method),
      nameCell(r.insured), insurerCell(r.insured), numberCell(r.insured), copayCell(r), validityCell(r),
      elderlyCell(r), limitCell(r), consentCell(record), actionsCell(record));
    if (!seen.has(record.id)) { tr.classList.add("new"); seen.add(record.id); }
    return tr;
  }

  async function refreshChecks() {
    try {
      const r = await call("GET", "/api/staff/checks");
      if (!r.ok) return;
      const body = $("#checks tbody");
      body.replaceChildren(...r.data.map(checkRow));
      $("#checks-empty").hidden = r.data.length > 0;
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
      parts.push(el("span", { class: "small" }, r.insured.name + "　" + (ratio / 10) + "割" + (r.as_of ? "（" + r.as_of + " 時点）" : "")));
    }
    if (n.status === "needs_card") parts.push(el("span", { class: "small" }, "次回来院時にカードで確認してください"));
    if (n.error_code) parts.push(el("span", { class: "small" }, n.error_code));
    if (n.resolved_at) parts.push(el("span", { class: "small" }, "確認 " + n.resolved_at));
    return el("td", {}, parts);
  }

  function noticeRow(n) {
    const tr = el("tr", { "data-id": n.id, "data-kind": n.kind, "data-status": n.status || "" },
      el("td", {}, n.at, n.visit_date ? el("span", { class: "small" }, n.visit_date) : null),
      el("td", {}, el("span", { class: n.kind === "outage" ? "label" : "label referral" }, n.label)),
      el("td", {}, n.source_label),
      identifiedCell(n),
      el("td", {}, n.verified ? n.verified : (VERIFIED[n.method] || "—")),
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
    if (kind === "medications") {
      table.tHead.append(el("tr", {}, ["調剤日", "薬品名", "数量", "日数", "医療機関・薬局"].map((h) => el("th", {}, h))));
      r.data.items.forEach((m) => table.tBodies[0].append(el("tr", {}, el("td", {}, m.dispensed_on), el("td", {}, m.drug_name, el("span", { class: "small" }, m.drug_code)), el("td", {}, m.quantity + " " + m.unit), el("td", {}, m.days + "日"), el("td", {}, m.facility_code))));
    } else {
      const keys = [];
      r.data.items.forEach((c) => Object.keys(c.results).forEach((k) => { if (!keys.includes(k)) keys.push(k); }));
      table.tHead.append(el("tr", {}, [el("th", {}, "健診日")].concat(keys.map((k) => el("th", {}, k)), [el("th", {}, "尿蛋白")])));
      r.data.items.forEach((c) => table.tBodies[0].append(el("tr", {}, [el("td", {}, c.checked_on)].concat(keys.map((k) => el("td", {}, c.results[k] != null ? String(c.results[k]) : "")), [el("td", {}, c.urine_protein || "")]))));
    }
    if (!r.data.items.length) table.tBodies[0].append(el("tr", {}, el("td", { colSpan: 6 }, "記録はありません。")));
    panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function formRows(form) {
    const data = {};
    new FormData(form).forEach((v, k) => { if (typeof v === "string" && v.trim() !== "") data[k] = v.trim(); });
    return data;
  }

  $("#number-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = formRows(event.target);
    data.include_limit_certificate = event.target.elements.include_limit_certificate.checked;
    showError("#number-error", "");
    showError("#number-info", "");
    const r = await call("POST", "/api/staff/by-number", data);
    if (!r.ok) { showError("#number-error", errorText(r)); return; }
    event.target.reset();
    if (r.data && r.data.outage) { showError("#number-info", r.data.message); refreshNotices(); return; }
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
      const problems = r.data && r.data.problems ? r.data.problems.map((p) => p.row + "行目: " + p.message).join(" / ") : "";
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
        res.insured ? nameCell(res.insured) : el("td", {}, "—", el("span", { class: "small" }, q.insurer_number + " " + (q.symbol || "") + "・" + q.number)),
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
