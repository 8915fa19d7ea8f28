// What the local screens share (kiosk, staff, visit, portal); each page loads this before its own script.
// It keeps no state and writes nothing to browser storage of any kind: the pads drawn here hold no digit
// (each page keeps the PIN it is typing in a local variable of its own).
(function () {
  "use strict";

  // One call to this terminal's own backend: { ok, status, data } (data null when the answer is not JSON).
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

  // The PIN typed so far, as the pads show it: one filled dot a digit, 確定 once there are 4.
  function drawPin(length) {
    document.querySelectorAll(".pin-dots span").forEach((dot, i) => dot.classList.toggle("on", i < length));
    document.querySelectorAll("[data-pin=ok]").forEach((b) => { b.disabled = length !== 4; });
  }

  // The consent toggles as `choices` has them ({ drug: true, … }): of each row's 提供する / 提供しない the chosen
  // one selected, the row a radio group for screen readers.
  function drawConsent(choices) {
    document.querySelectorAll(".consent").forEach((row) => {
      const on = choices[row.dataset.category];
      row.querySelectorAll(".toggle button").forEach((b) => {
        const selected = (b.dataset.value === "yes") === on;
        b.classList.toggle("selected", selected);
        b.setAttribute("aria-checked", selected ? "true" : "false");
        b.setAttribute("role", "radio");
      });
    });
  }

  // The pads, drawn in place of <template data-pinpad="…">: keys 1–9, then clear, 0, ok.
  const DOTS = '<div class="pin-dots" aria-label="入力した桁数"><span></span><span></span><span></span><span></span></div>';
  const PADS = {
    // the 4-digit PIN (kiosk, portal): its dots, then the pad
    pin: { dots: true, pad: "pinpad", label: "暗証番号の数字", digit: "data-digit",
      clear: ' class="pin-clear" data-pin="clear">訂正', ok: ' class="pin-ok primary" data-pin="ok"' },
    // the same on the visiting staff's phone (visit.css styles the keys by their data-pin)
    "pin-phone": { dots: true, pad: "pinpad", label: "暗証番号の数字", digit: "data-digit",
      clear: ' data-pin="clear">訂正', ok: ' class="primary" data-pin="ok"' },
    // 照合番号B keyed in by staff (kiosk): no dots (the page shows the digits in groups)
    "collation-b": { dots: false, pad: "pinpad b-pad", label: "照合番号Bの数字", digit: "data-b-digit",
      clear: ' class="pin-clear" data-b="back">1字消す', ok: ' class="pin-ok primary" data-b="ok"' },
  };

  function padHtml(kind, indent) {
    const key = (d) => `<button type="button" ${kind.digit}="${d}">${d}</button>`;
    const rows = [[1, 2, 3], [4, 5, 6], [7, 8, 9]].map((row) => row.map(key).join(""));
    rows.push(`<button type="button"${kind.clear}</button>${key(0)}<button type="button"${kind.ok} disabled>確定</button>`);
    const pad = `<div class="${kind.pad}" role="group" aria-label="${kind.label}">`
      + rows.map((row) => `\n${indent}  ${row}`).join("") + `\n${indent}</div>`;
    return kind.dots ? `${DOTS}\n${indent}${pad}` : pad;
  }

  document.querySelectorAll("template[data-pinpad]").forEach((slot) => {
    const before = slot.previousSibling;
    const text = before && before.nodeType === Node.TEXT_NODE ? before.textContent : "";
    const indent = text.slice(text.lastIndexOf("\n") + 1);  // the markup lines up with the page's own
    slot.insertAdjacentHTML("beforebegin", padHtml(PADS[slot.dataset.pinpad], indent));
    slot.remove();
  });

  window.common = Object.freeze({ call: call, drawPin: drawPin, drawConsent: drawConsent });
})();
