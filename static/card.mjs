/* The "My card" page: the card's certificates and PIN counters, and the forms that change or unblock a PIN.
 * Everything shown comes from the server as JSON and goes into the page as text. The PIN rules run here first
 * (static/card.rules.mjs, the same codes as the server's), and the server checks them again; PINs go only in
 * the POST bodies of this page's own API (digisign_web/web/card_page.py, D48). */
import { $, commonName, el, formatDate, pageTranslator } from "./ui.mjs";
import { checkPin } from "./card.rules.mjs";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
let i18n = pageTranslator();
let t = i18n.t;
let state = null; // the last status answer

async function api(path, body) {
  const response = await fetch("/card/api/" + path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  if (response.status === 403) throw new Error(t("card.error.session"));
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

const pinName = (id) => t("card.pin." + id);
const ruleText = (rule) => t("card.rule." + rule.code, rule.params);

function certificateItem(cert) {
  const item = el("li");
  item.append(el("strong", "", commonName(cert.subject)));
  item.append(el("span", "role", t("card.role." + (["signature", "authentication", "ca"].includes(cert.role)
    ? cert.role : "other"))));
  item.append(el("span", "meta", t("card.issuer", { issuer: commonName(cert.issuer) })));
  item.append(el("span", "meta", cert.key));
  const date = formatDate(cert.notAfter, i18n.lang);
  const expiry = {
    expired: ["meta expired", t("card.expired", { date })],
    expiring: ["meta warn", t("card.expiring", { date, days: cert.daysLeft })],
    "not-yet-valid": ["meta warn", t("card.notYetValid", { date })],
  }[cert.validity] || ["meta", t("card.expires", { date })];
  const line = el("span", expiry[0], expiry[1]);
  line.dataset.validity = cert.validity;
  item.append(line);
  return item;
}

function counterRow(pin) {
  const row = el("tr");
  row.dataset.pin = pin.id;
  row.append(el("td", "", pinName(pin.id)));
  const cell = pin.blocked ? el("td", "blocked", t("card.blocked"))
    : el("td", "", pin.triesLeft === null ? "" : t("card.triesLeft", { n: pin.triesLeft, max: pin.maxTries || "?" }));
  cell.classList.add("tries");
  row.append(cell);
  return row;
}

function showCounters(section, pins) {
  section.querySelector(".counters tbody").replaceChildren(...pins.map(counterRow));
}

function policyOf(card, form) {
  const which = form.classList.contains("unblock") ? form.elements.pin.value : form.dataset.pin;
  return { which, policies: card.policies[which] };
}

function ruleHint(policy) {
  return t(policy.digitsOnly || policy.complexity & 8 ? "card.rule" : "card.ruleAny", { min: policy.min, max: policy.max });
}

function prepareForm(card, section, form) {
  const update = () => {
    const { policies } = policyOf(card, form);
    if (!policies) return;
    form.querySelector(".rule").textContent = ruleHint(policies.new);
    for (const name of ["old", "puk", "new", "again"]) {
      const input = form.elements[name];
      if (!input) continue;
      const policy = name === "old" || name === "puk" ? (name === "puk" ? card.policies.puk.current : policies.current)
        : policies.new;
      input.inputMode = policy.digitsOnly ? "numeric" : "text";
      input.maxLength = Math.max(policy.max, 1);
    }
  };
  if (form.classList.contains("change")) form.querySelector(".form-title").textContent =
    t("card.change", { pin: pinName(form.dataset.pin) });
  if (form.elements.pin) form.elements.pin.addEventListener("change", update);
  update();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(card, section, form);
  });
}

function problems(card, form) {
  const { which, policies } = policyOf(card, form);
  const unblock = form.classList.contains("unblock");
  const current = unblock ? form.elements.puk.value : form.elements.old.value;
  const currentPolicy = unblock ? card.policies.puk.current : policies.current;
  return {
    which,
    broken: checkPin(currentPolicy, current, unblock ? "puk" : "old")
      .concat(checkPin(policies.new, form.elements.new.value, "new", form.elements.again.value)),
  };
}

function showBroken(form, broken) {
  form.querySelector(".broken").replaceChildren(...broken.map((rule) =>
    el("li", "", t("card.field." + rule.field) + ": " + ruleText(rule))));
}

function showOutcome(form, ok, text) {
  const outcome = form.querySelector(".outcome");
  outcome.textContent = text;
  outcome.className = "outcome " + (ok ? "ok" : "bad");
  outcome.hidden = !text;
}

function errorText(result) {
  const code = result.code;
  if (code === "rules") return "";
  if (code === "wrong-pin" || code === "wrong-puk") return t("card.error." + code, { n: result.triesLeft });
  if (["blocked", "puk-blocked", "unblocking-disabled"].includes(code)) return t("card.error." + code);
  return t("card.error.other", { text: result.text });
}

async function submit(card, section, form) {
  const button = form.querySelector("button[type=submit]");
  if (button.disabled) return;
  const { which, broken } = problems(card, form);
  showBroken(form, broken);
  showOutcome(form, true, "");
  if (broken.length) return; // nothing is sent: the server would refuse it the same way
  const unblock = form.classList.contains("unblock");
  const body = { pin: which, reader: card.reader, new: form.elements.new.value, again: form.elements.again.value };
  if (unblock) body.puk = form.elements.puk.value; else body.old = form.elements.old.value;
  for (const input of form.querySelectorAll("input")) input.value = "";
  button.disabled = true;
  showOutcome(form, true, t("card.working"));
  try {
    const result = await api(unblock ? "unblock" : "change", body);
    if (result.ok) {
      showOutcome(form, true, t(unblock ? "card.unblocked" : "card.changed", { pin: pinName(which) }));
      showCounters(section, result.pins);
    } else {
      showBroken(form, result.rules || []);
      showOutcome(form, false, errorText(result));
      const fresh = await api("status"); // the counters after a wrong PIN or PUK
      const again = fresh.cards.find((c) => c.reader === card.reader);
      if (again && again.pins) showCounters(section, again.pins);
    }
  } catch (e) {
    showOutcome(form, false, e.message);
  } finally {
    button.disabled = false;
  }
}

function renderCard(card, disabled) {
  const section = $("card-template").content.firstElementChild.cloneNode(true);
  const change = section.querySelector("form.change"); // one change form in the page, made once per PIN
  const change2 = change.cloneNode(true);
  change2.dataset.pin = "pin2";
  change.after(change2);
  i18n.apply(section);
  section.dataset.reader = card.reader;
  section.querySelector(".reader").textContent = t("card.reader", { reader: card.reader });
  if (card.problem) {
    const problem = section.querySelector(".problem");
    problem.textContent = card.problem;
    problem.hidden = false;
    for (const form of section.querySelectorAll("form")) form.hidden = true;
    return section;
  }
  section.querySelector(".certs").replaceChildren(...card.certificates.map(certificateItem));
  showCounters(section, card.pins);
  for (const form of section.querySelectorAll("form")) {
    const which = form.classList.contains("unblock") ? "puk" : form.dataset.pin;
    if (!card.policies[which] || (form.classList.contains("unblock") && disabled)) {
      form.remove(); // unblocking is off (disablePinUnblocking), or the card has no such PIN
      continue;
    }
    prepareForm(card, section, form);
  }
  section.querySelector(".unblock-disabled").hidden = !disabled;
  return section;
}

async function load() {
  $("loading").hidden = false;
  $("page-error").hidden = true;
  try {
    state = await api("status");
  } catch (e) {
    $("loading").hidden = true;
    $("page-error").textContent = e.message;
    $("page-error").hidden = false;
    return;
  }
  if (state.language) {
    i18n = pageTranslator(state.language);
    t = i18n.t;
  }
  i18n.apply();
  $("loading").hidden = true;
  if (!state.cards.length) {
    $("cards").replaceChildren(el("p", "note", t("card.noCard")));
    return;
  }
  $("cards").replaceChildren(...state.cards.map((card) => renderCard(card, state.unblockingDisabled)));
}

i18n.apply();
$("reload").addEventListener("click", load);
load();
