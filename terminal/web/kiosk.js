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
    fee: "料金", yen: (n) => `${n}円`,
    payment: "料金を入れてください", paid: "投入金額", insertCoin: (n) => `${n}円を入れる`,
    printing: "印刷しています。しばらくお待ちください",
    done: "証明書とおつり、カードをお受け取りください", change: "おつり・返金",
    refused: "ご利用いただけません", back: "最初に戻る", menuBack: "メニューに戻る",
    show_registered_domicile: "本籍・筆頭者を表示", show_household_head: "世帯主・続柄を表示",
    show_individual_number: "個人番号を表示", show_nationality: "国籍・地域を表示",
    show_residence_card_number: "在留カード番号を表示", show_residence_status: "在留資格を表示",
    who: "証明書に載せる方", scopeSelf: "本人のみ", scopeHousehold: "世帯全員",
    scopeMembers: "世帯の一部（選んだ方）", chooseMembers: "載せる方を1人以上選んでください",
    registerWho: "証明書に載せる方（戸籍に記載されている方）",
    registerHint: "選ばないときは、ご本人の証明書になります",
    returnedAtStart: (n) => `${n}円をお返ししました。お取り忘れのないようご注意ください`,
    useReg: "戸籍証明書の利用登録（本籍地が別の市区町村の方）",
    useRegTitle: "戸籍証明書の利用登録",
    useRegHint: "本籍地の市区町村コード（6桁）、本籍、筆頭者を入力してください",
    regCode: "本籍地の市区町村コード（6桁）", domicile: "本籍", head: "筆頭者",
    useRegSubmit: "申し込む", useRegInvalid: "市区町村コードは6桁の数字で、本籍と筆頭者も入力してください",
    useRegResult: "利用登録の結果", useRegCheck: "状況を確認する", toMenu: "メニューへ",
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
    next: "Next", fee: "Fee", yen: (n) => `${n} yen`,
    payment: "Please put in the fee", paid: "Paid", insertCoin: (n) => `Insert ${n} yen`,
    printing: "Printing. Please wait.",
    done: "Take your certificate, your change and your card", change: "Change / refund",
    refused: "This cannot be issued", back: "Start again", menuBack: "Back to the menu",
    show_registered_domicile: "Show registered domicile and head",
    show_household_head: "Show head of household and relationship",
    show_individual_number: "Show individual number", show_nationality: "Show nationality",
    show_residence_card_number: "Show residence card number",
    show_residence_status: "Show residence status",
    who: "Who the certificate shows", scopeSelf: "Only me", scopeHousehold: "Whole household",
    scopeMembers: "Some members (choose)", chooseMembers: "Choose at least one person",
    registerWho: "Who the certificate shows (people in the family register)",
    registerHint: "If you choose no one, the certificate is about you",
    returnedAtStart: (n) => `${n} yen returned. Please take your money`,
    useReg: "Use registration for family-register certificates (registered domicile elsewhere)",
    useRegTitle: "Use registration for family-register certificates",
    useRegHint: "Enter the municipality code (6 digits), the registered domicile and the head of the register",
    regCode: "Municipality code of the registered domicile (6 digits)",
    domicile: "Registered domicile (本籍)", head: "Head of the register (筆頭者)",
    useRegSubmit: "Apply", useRegInvalid: "The municipality code is 6 digits; the registered domicile and the head are needed too",
    useRegResult: "Use registration", useRegCheck: "Check the status", toMenu: "To the menu",
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
let registering = false;  // the use-registration form is open
let useResult = null;     // the answer to the last use registration, until "to the menu"
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

// A use registration: its answer is kept for the result screen; a refusal is the REFUSED screen.
async function useRegistration(path, body) {
  try {
    const data = await api(path, body);
    registering = false;
    useResult = data.use_registration.status === "REFUSED" ? null : data.use_registration;
    show(data);
  } catch (e) { console.error(e); }
}

// A person as registered: the name keeps its variation sequences (never normalised).
function person(p) {
  return el("span", { class: "person" }, el("span", { class: "name", text: p.name }),
    `（${p.relationship}）`);
}

function message(screen) {
  const words = lang === "ja" ? screen.message_ja : screen.message_en;
  return words ? el("p", { class: "message", id: "message", text: words }) : "";
}

function renderInsert(main, screen) {
  if (screen.returned) main.append(el("p", { class: "message", id: "returned", text: t("returnedAtStart")(screen.returned) }));
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
  main.append(grid, el("button", { class: "action", type: "button", id: "use-registration",
    onclick: () => { registering = true; render(); } }, t("useReg")));
}

function renderUseRegistration(main) {
  main.append(el("h2", { text: t("useRegTitle") }), el("p", { text: t("useRegHint") }));
  const code = el("input", { type: "text", id: "reg-code", inputmode: "numeric", maxlength: "6",
    autocomplete: "off", pattern: "[0-9]{6}" });
  const domicile = el("input", { type: "text", id: "reg-domicile", maxlength: "200", autocomplete: "off" });
  const head = el("input", { type: "text", id: "reg-head", maxlength: "200", autocomplete: "off" });
  const error = el("p", { class: "hint", id: "usereg-error" });
  for (const input of [code, domicile, head]) input.addEventListener("input", () => { error.textContent = ""; });
  main.append(el("div", { class: "form" },
    el("label", {}, t("regCode"), el("br"), code),
    el("label", {}, t("domicile"), el("br"), domicile),
    el("label", {}, t("head"), el("br"), head)), error,
    el("button", { class: "action", type: "button", id: "usereg-submit", onclick: () => {
      const body = { register_municipality_code: code.value.trim(),
        registered_domicile: domicile.value.trim(), head_of_register: head.value.trim() };
      if (!/^[0-9]{6}$/.test(body.register_municipality_code) || !body.registered_domicile
          || !body.head_of_register) { error.textContent = t("useRegInvalid"); return; }
      useRegistration("/api/register-use", body);
    } }, t("useRegSubmit")), " ",
    el("button", { class: "action", type: "button", id: "usereg-back",
      onclick: () => { registering = false; render(); } }, t("menuBack")));
}

function renderUseResult(main) {
  const answer = useResult;
  main.dataset.status = answer.status;
  main.append(el("h2", { text: t("useRegResult") }),
    el("p", { class: "message", id: "usereg-status",
      text: lang === "ja" ? answer.message_ja : answer.message_en }));
  if (answer.status === "PENDING") {
    main.append(el("button", { class: "action", type: "button", id: "usereg-check",
      onclick: () => useRegistration("/api/use-registration-status",
        { registration_id: answer.registration_id }) }, t("useRegCheck")), " ");
  }
  main.append(el("button", { class: "action", type: "button", id: "usereg-menu",
    onclick: () => { useResult = null; render(); } }, t("toMenu")));
}

// Checkboxes for the people a catalogue entry lists (Person.ref goes back, never the name).
function memberBoxes(entry, checked) {
  const list = el("div", { class: "members", id: "members" });
  for (const p of entry.selectable) {
    const box = el("input", { type: "checkbox", class: "member", "data-ref": p.ref, id: `member-${p.ref}` });
    box.checked = checked(p);
    list.append(el("label", {}, box, person(p)));
  }
  return list;
}

function chosenRefs() {
  return [...document.querySelectorAll("input.member:checked")].map((b) => b.dataset.ref);
}

function renderOptions(main) {
  const entry = picked;
  main.append(el("h2", { text: `${t("kinds")[entry.kind_key]} — ${t("options")}` }));
  const form = el("div", { id: "options" });
  const hint = el("p", { class: "hint", id: "members-hint" });
  let ready = () => true;
  if (entry.kind_key.startsWith("RESIDENCE_RECORD")) {
    const who = el("fieldset", { id: "scope" }, el("legend", { text: t("who") }));
    const scopes = [["self", t("scopeSelf")], ["household", t("scopeHousehold")]];
    if (entry.selectable.length) scopes.push(["members", t("scopeMembers")]);
    const radios = {};
    for (const [value, words] of scopes) {
      radios[value] = el("input", { type: "radio", name: "scope", value, id: `scope-${value}` });
      radios[value].checked = value === "self";
      who.append(el("label", {}, radios[value], words));
    }
    const members = memberBoxes(entry, () => false);
    const some = () => Boolean(radios.members && radios.members.checked);
    const picks = () => members.querySelectorAll("input.member:checked").length;
    const sync = () => {
      members.hidden = !some();
      hint.textContent = some() && !picks() ? t("chooseMembers") : "";
    };
    who.addEventListener("change", sync);
    who.append(members);
    form.append(who);
    sync();
    ready = () => !some() || picks() > 0;
    for (const name of SHOW) {
      if (entry.permitted[name]) {
        form.append(el("label", {}, el("input", { type: "checkbox", id: name }), t(name)));
      }
    }
  }
  if (entry.kind_key === "FAMILY_REGISTER_INDIVIDUAL" && entry.selectable.length) {
    const who = el("fieldset", { id: "register-members" }, el("legend", { text: t("registerWho") }),
      memberBoxes(entry, (p) => p.relationship === "本人"), el("p", { class: "note", text: t("registerHint") }));
    form.append(who);
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
  form.append(fee, hint);
  main.append(form, el("button", { class: "action", type: "button", id: "options-next", onclick: () => {
    if (!ready()) { hint.textContent = t("chooseMembers"); return; }
    const body = { kind: entry.kind, municipality_code: entry.municipality_code, copies: Number(copies.value) };
    const scope = document.querySelector("input[name=scope]:checked");
    if (scope) body.scope = scope.value;
    if (!scope || scope.value === "members") body.members = chosenRefs();
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
  const before = main.dataset.screen;
  const typed = formState(main);
  main.replaceChildren();
  main.className = "";
  if (!current) return;
  let id = current.id;
  if (id === "MENU" && picked) id = "OPTIONS";
  else if (id === "MENU" && registering) id = "USE_REGISTRATION";
  else if (id === "MENU" && useResult) id = "USE_REGISTRATION_RESULT";
  main.dataset.screen = id;
  main.dataset.reason = current.reason || "";
  delete main.dataset.status;
  ({ INSERT_CARD: renderInsert, ENTER_PIN: renderPin, MENU: renderMenu, OPTIONS: renderOptions,
     USE_REGISTRATION: renderUseRegistration, USE_REGISTRATION_RESULT: renderUseResult,
     PAYMENT: renderPayment, PRINTING: (m) => m.append(el("h2", { text: t("printing") })),
     DONE: renderDone, REFUSED: renderRefused })[id](main, current);
  if (id === before) restoreForm(main, typed);  // a language switch keeps what was chosen
}

function formState(main) {
  const state = {};
  for (const input of main.querySelectorAll("input[id], select[id]")) {
    state[input.id] = input.type === "checkbox" || input.type === "radio" ? input.checked : input.value;
  }
  return state;
}

function restoreForm(main, state) {
  for (const input of main.querySelectorAll("input[id], select[id]")) {
    if (!(input.id in state)) continue;
    if (input.type === "checkbox" || input.type === "radio") input.checked = state[input.id];
    else input.value = state[input.id];
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
}

function show(screen) {
  // Leaving the menu (card removed, refusal, ...) closes what was open on it.
  if (screen.id !== "MENU") { picked = null; registering = false; useResult = null; }
  current = screen; render();
}

$("#lang-ja").addEventListener("click", () => { lang = "ja"; render(); });
$("#lang-en").addEventListener("click", () => { lang = "en"; render(); });
$("#cancel").addEventListener("click", () => {
  picked = null; registering = false; useResult = null; pin = "";
  act("/api/cancel", { remove_card: true });
});
api("/api/screen").then(show);
