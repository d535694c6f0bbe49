// The kiosk page: renders the screen the terminal returns and posts what the resident does.
// No framework, no CDN. Texts are Japanese by default with an English switch.
"use strict";

const TEXT = {
  ja: {
    title: "証明書コンビニ交付", cancel: "やめる・カードを取る",
    insert: "マイナンバーカードを置いてください", insertHint: "（試験用カードを選んでください）",
    pin: "利用者証明用電子証明書の暗証番号（数字4桁）を入力してください",
    triesLeft: (n) => `残り${n}回入力できます`, clear: "訂正", ok: "確定",
    menu: "証明書を選んでください", unavailable: "現在ご利用いただけません",
    options: "内容を選んでください", copies: "部数", fiscalYear: "年度", next: "次へ",
    household: "世帯全員", fee: "料金", yen: (n) => `${n}円`,
    payment: "料金を入れてください", paid: "投入金額", insertCoin: (n) => `${n}円を入れる`,
    printing: "印刷しています。しばらくお待ちください",
    done: "証明書とおつり、カードをお受け取りください", change: "おつり・返金",
    refused: "ご利用いただけません", back: "最初に戻る", menuBack: "メニューに戻る",
    show_registered_domicile: "本籍・筆頭者を表示", show_household_head: "世帯主・続柄を表示",
    show_individual_number: "個人番号を表示", show_nationality: "国籍・地域を表示",
    show_residence_card_number: "在留カード番号を表示", show_residence_status: "在留資格を表示",
    kinds: { RESIDENCE_RECORD: "住民票の写し", RESIDENCE_RECORD_ITEMS: "住民票記載事項証明書",
      SEAL_REGISTRATION: "印鑑登録証明書", INCOME_TAX: "所得・課税証明書",
      FAMILY_REGISTER_FULL: "戸籍全部事項証明書", FAMILY_REGISTER_INDIVIDUAL: "戸籍個人事項証明書",
      FAMILY_REGISTER_ADDRESS_HISTORY: "戸籍の附票の写し" },
  },
  en: {
    title: "Certificates at the convenience store", cancel: "Cancel / take card",
    insert: "Please place your My Number Card", insertHint: "(choose a test card)",
    pin: "Enter the 4-digit PIN of your user authentication certificate",
    triesLeft: (n) => `${n} tries left`, clear: "Clear", ok: "OK",
    menu: "Choose a certificate", unavailable: "Not available now",
    options: "Choose what the certificate shows", copies: "Copies", fiscalYear: "Fiscal year",
    next: "Next", household: "Whole household", fee: "Fee", yen: (n) => `${n} yen`,
    payment: "Please put in the fee", paid: "Paid", insertCoin: (n) => `Insert ${n} yen`,
    printing: "Printing. Please wait.",
    done: "Take your certificate, your change and your card", change: "Change / refund",
    refused: "This cannot be issued", back: "Start again", menuBack: "Back to the menu",
    show_registered_domicile: "Show registered domicile and head",
    show_household_head: "Show head of household and relationship",
    show_individual_number: "Show individual number", show_nationality: "Show nationality",
    show_residence_card_number: "Show residence card number",
    show_residence_status: "Show residence status",
    kinds: { RESIDENCE_RECORD: "Residence record", RESIDENCE_RECORD_ITEMS: "Residence record items",
      SEAL_REGISTRATION: "Seal registration", INCOME_TAX: "Income and tax",
      FAMILY_REGISTER_FULL: "Family register (full)",
      FAMILY_REGISTER_INDIVIDUAL: "Family register (individual)",
      FAMILY_REGISTER_ADDRESS_HISTORY: "Family register address history" },
  },
};
const SHOW = ["show_registered_domicile", "show_household_head", "show_individual_number",
  "show_nationality", "show_residence_card_number", "show_residence_status"];

let lang = "ja";
let current = null;   // the last screen from the terminal
let picked = null;    // the menu entry being configured
let pin = "";

const $ = (sel) => document.querySelector(sel);
const t = (key) => TEXT[lang][key];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") node.addEventListener("click", v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.status);
  return data;
}

async function act(path, body) {
  try { show(await api(path, body)); } catch (e) { console.error(e); }
}

function message(screen) {
  const words = lang === "ja" ? screen.message_ja : screen.message_en;
  return words ? el("p", { class: "message", id: "message", text: words }) : "";
}

function renderInsert(main) {
  main.append(el("h2", { text: t("insert") }), el("p", { text: t("insertHint") }));
  const grid = el("div", { class: "grid", id: "cards" });
  api("/api/cards").then(({ cards }) => {
    for (const card of cards) {
      grid.append(el("button", { class: "tile", "data-card": card, type: "button",
        onclick: () => { pin = ""; act("/api/insert", { card }); } }, card));
    }
  });
  main.append(grid);
}

function renderPin(main, screen) {
  main.append(el("h2", { text: t("pin") }));
  if (screen.reason) main.append(message(screen));
  main.append(el("p", { class: "tries", id: "tries", text: t("triesLeft")(screen.pin_tries_left) }));
  const dots = el("div", { class: "pin-dots", id: "pin-dots", text: "●".repeat(pin.length) });
  const keypad = el("div", { class: "keypad" });
  for (const d of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "", "0", ""]) {
    if (!d) { keypad.append(el("span")); continue; }
    keypad.append(el("button", { class: "key", type: "button", "data-key": d, onclick: () => {
      if (pin.length < 4) { pin += d; dots.textContent = "●".repeat(pin.length); } } }, d));
  }
  main.append(dots, keypad,
    el("button", { class: "action", type: "button", id: "pin-clear",
      onclick: () => { pin = ""; dots.textContent = ""; } }, t("clear")), " ",
    el("button", { class: "action", type: "button", id: "pin-ok",
      onclick: () => { const typed = pin; pin = ""; act("/api/pin", { pin: typed }); } }, t("ok")));
}

function renderMenu(main, screen) {
  main.append(el("h2", { text: t("menu") }));
  if (screen.returned) main.append(el("p", { class: "big", text: `${t("change")}: ${t("yen")(screen.returned)}` }));
  const grid = el("div", { class: "grid" });
  for (const entry of screen.menu) {
    const label = `${t("kinds")[entry.kind_key] || entry.kind_key} — ${t("yen")(entry.fee)}`;
    const tile = el("button", { class: "tile", type: "button", "data-kind": entry.kind_key,
      onclick: () => { picked = entry; render(); } }, label,
      el("br"), el("small", { text: entry.municipality_name }));
    if (!entry.available_now) {
      tile.disabled = true;
      tile.append(el("br"), el("small", { text: (lang === "ja" ? entry.unavailable_ja : entry.unavailable_en) || t("unavailable") }));
    }
    grid.append(tile);
  }
  main.append(grid);
}

function renderOptions(main) {
  const entry = picked;
  main.append(el("h2", { text: `${t("kinds")[entry.kind_key]} — ${t("options")}` }));
  const form = el("div", { id: "options" });
  if (entry.kind_key.startsWith("RESIDENCE_RECORD")) {
    form.append(el("label", {}, el("input", { type: "checkbox", id: "household" }), t("household")));
    for (const name of SHOW) {
      if (entry.permitted[name]) {
        form.append(el("label", {}, el("input", { type: "checkbox", id: name }), t(name)));
      }
    }
  }
  if (entry.kind_key === "INCOME_TAX") {
    const select = el("select", { id: "fiscal_year" });
    for (const y of entry.fiscal_years) select.append(el("option", { value: y, text: y }));
    form.append(el("label", {}, `${t("fiscalYear")} `, select));
  }
  const copies = el("select", { id: "copies" });
  for (let n = 1; n <= Math.max(1, entry.max_copies); n++) copies.append(el("option", { value: n, text: n }));
  form.append(el("label", {}, `${t("copies")} `, copies));
  const fee = el("p", { class: "fee", id: "fee-preview", text: `${t("fee")}: ${t("yen")(entry.fee)}` });
  copies.addEventListener("change", () => { fee.textContent = `${t("fee")}: ${t("yen")(entry.fee * Number(copies.value))}`; });
  form.append(fee);
  main.append(form, el("button", { class: "action", type: "button", id: "options-next", onclick: () => {
    const body = { kind: entry.kind, municipality_code: entry.municipality_code, copies: Number(copies.value) };
    const household = $("#household");
    if (household) body.household = household.checked;
    for (const name of SHOW) { const box = $("#" + name); if (box) body[name] = box.checked; }
    const fy = $("#fiscal_year");
    if (fy) body.fiscal_year = Number(fy.value);
    picked = null;
    act("/api/choose", body);
  } }, t("next")));
}

function renderPayment(main, screen) {
  main.append(el("h2", { text: t("payment") }),
    el("p", { class: "fee", id: "fee", text: `${t("fee")}: ${t("yen")(screen.fee)}` }),
    el("p", { class: "big", id: "paid", text: `${t("paid")}: ${t("yen")(screen.paid)}` }));
  const grid = el("div", { class: "grid" });
  for (const coin of [100, 500, 1000]) {
    grid.append(el("button", { class: "tile", type: "button", "data-coin": coin,
      onclick: () => act("/api/pay", { yen: coin }) }, t("insertCoin")(coin)));
  }
  main.append(grid);
}

function renderDone(main, screen) {
  main.append(el("h2", { id: "done", text: t("done") }),
    el("p", { class: "fee", text: `${t("fee")}: ${t("yen")(screen.fee)}` }),
    el("p", { class: "big", id: "change", text: `${t("change")}: ${t("yen")(screen.returned)}` }),
    el("button", { class: "action", type: "button", id: "finish", onclick: () => act("/api/done", {}) }, t("back")));
}

function renderRefused(main, screen) {
  main.classList.add("refused");
  main.append(el("h2", { text: t("refused") }), message(screen));
  if (screen.returned) main.append(el("p", { class: "big", id: "change", text: `${t("change")}: ${t("yen")(screen.returned)}` }));
  main.append(el("button", { class: "action", type: "button", id: "refused-back",
    onclick: () => act("/api/cancel", { remove_card: false }) }, t("menuBack")));
}

function render() {
  document.documentElement.lang = lang;
  $("#title").textContent = t("title");
  $("#cancel").textContent = t("cancel");
  $("#lang-ja").classList.toggle("active", lang === "ja");
  $("#lang-en").classList.toggle("active", lang === "en");
  const main = $("#screen");
  main.replaceChildren();
  main.className = "";
  if (!current) return;
  const id = picked && current.id === "MENU" ? "OPTIONS" : current.id;
  main.dataset.screen = id;
  main.dataset.reason = current.reason || "";
  ({ INSERT_CARD: renderInsert, ENTER_PIN: renderPin, MENU: renderMenu, OPTIONS: renderOptions,
     PAYMENT: renderPayment, PRINTING: (m) => m.append(el("h2", { text: t("printing") })),
     DONE: renderDone, REFUSED: renderRefused })[id](main, current);
}

function show(screen) { current = screen; render(); }

$("#lang-ja").addEventListener("click", () => { lang = "ja"; render(); });
$("#lang-en").addEventListener("click", () => { lang = "en"; render(); });
$("#cancel").addEventListener("click", () => { picked = null; pin = ""; act("/api/cancel", { remove_card: true }); });
api("/api/screen").then(show);
