/* The signing dialog page: shows the request, takes the certificate choice and the PIN, and reports what
 * the card said. Everything shown comes from the server as JSON and is inserted as text, never as HTML.
 *
 * The page claims the dialog with the key from its URL fragment (digisign_web/web/dialog.py explains why),
 * and only once it is visible and at least MIN_VIEW large: a hidden or tiny window never takes a dialog.
 * An ES module (static/dialog.html loads it with type="module"); the helpers are static/ui.mjs's. */
import { $, commonName, el, formatDate, pageTranslator } from "./ui.mjs";

const MIN_VIEW = [300, 300]; // CSS pixels; web/dialog.py MIN_VIEW
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const base = location.pathname.replace(/\/$/, "");
const key = location.hash.slice(1);
if (location.hash) history.replaceState(null, "", location.pathname); // the key leaves the address bar
let claimed = false;
let finished = false;
let i18n = pageTranslator();
let t = i18n.t;
let details = null;
let busy = false;

async function api(path, body) {
  const response = await fetch(base + path, {
    method: body ? "POST" : "GET",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 410 || response.status === 403) throw new Error("expired");
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function selected() {
  const input = document.querySelector('input[name="choice"]:checked');
  return input ? Number(input.value) : 0;
}

function renderChoices() {
  const box = $("choices");
  box.replaceChildren();
  details.choices.forEach((choice, index) => {
    const label = el("label", "choice");
    const radio = el("input");
    radio.type = "radio";
    radio.name = "choice";
    radio.value = String(index);
    radio.checked = index === 0;
    radio.addEventListener("change", updatePin);
    const body = el("span", "choice-body");
    body.append(el("strong", "", commonName(choice.subject)));
    body.append(el("span", "role", choice.role === "signature" ? t("roleSignature") : t("roleAuthentication")));
    body.append(el("span", "meta", t("issuedBy", { issuer: commonName(choice.issuer) })));
    const expiry = el("span", choice.expiring_soon ? "meta warn" : "meta",
      t(choice.expiring_soon ? "expiresSoon" : "expires", { date: formatDate(choice.not_after, i18n.lang) }));
    body.append(expiry);
    body.append(el("span", "meta", `${choice.key} · ${choice.key_usage.map((u) => u.replace(/_/g, " ")).join(", ")}`));
    label.append(radio, body);
    box.append(label);
  });
}

function updatePin() {
  const choice = details.choices[selected()];
  const pin = $("pin");
  $("pin-label").textContent = choice.pin_label;
  pin.minLength = choice.pin_min;
  pin.maxLength = choice.pin_max;
  pin.inputMode = choice.pin_digits ? "numeric" : "text";
  $("pin-hint").textContent = t(choice.pin_digits ? "pinRule" : "pinRuleAny", { min: choice.pin_min, max: choice.pin_max });
  $("pin-block").hidden = !choice.needs_pin && !choice.blocked;
  if (!choice.needs_pin) $("pin-hint").textContent = t("pinKept");
  // A pinpad reader (PKCS#11 protected authentication path): the PIN is typed there, never here (D62).
  const onReader = choice.needs_pin && choice.pin_on_reader;
  pin.hidden = onReader;
  $("pin-label").hidden = onReader;
  if (onReader) $("pin-hint").textContent = t("pinOnReader");
  showTries(choice.tries_left, choice.blocked);
}

function showTries(left, blocked) {
  const tries = $("tries");
  tries.className = "hint";
  $("sign").disabled = Boolean(blocked);
  if (blocked) {
    tries.textContent = "";
    showError(t("blocked"), true);
    return;
  }
  if (left === null || left === undefined) {
    tries.textContent = "";
  } else if (left === 1) {
    tries.textContent = t("oneTryLeft");
    tries.className = "hint warn";
  } else {
    tries.textContent = t("triesLeft", { n: left });
  }
}

function showError(text, myCard) {
  const error = $("error");
  error.textContent = text;
  if (myCard) error.append(" ", myCardLink());
  error.hidden = !text;
}

/** The "My card" page, where a blocked PIN is unblocked with the PUK (a new tab: this one stays). */
function myCardLink() {
  const link = el("a", "my-card-link", t("openMyCard"));
  link.href = "/card";
  link.target = "_blank";
  link.rel = "noopener";
  return link;
}

function finish(result) {
  finished = true;
  $("loading").hidden = true;
  $("request").hidden = true;
  $("done").hidden = false;
  const text = result.result === "signed" ? t("signed")
    : result.result === "cancelled" ? t("cancelled")
    : result.result === "expired" ? t("expired")
    : t("failed", { text: result.text || "" });
  $("result").textContent = text;
  $("result").className = "result " + (result.result === "signed" ? "ok" : "bad");
  const blocked = result.result === "failed" && /\bblocked\b/.test(result.text || "");
  if (blocked) $("result").append(" ", myCardLink()); // the PIN just got blocked: where to unblock it
  if (details && details.next && result.result !== "expired") {
    location.replace(details.next); // WebSigner: hand the result back to the page that asked
    return;
  }
  if (!blocked) setTimeout(() => window.close(), 1500);
}

function setBusy(on) {
  busy = on;
  $("sign").disabled = on;
  $("cancel").disabled = on;
  $("sign").textContent = on ? t("signing") : t("sign");
}

async function submit(event) {
  event.preventDefault();
  if (busy) return;
  const index = selected();
  const choice = details.choices[index];
  const pinInput = $("pin");
  const pin = pinInput.value;
  const typed = choice.needs_pin && !choice.pin_on_reader;
  if (typed) {
    if (pin.length < choice.pin_min || pin.length > choice.pin_max) {
      showError(t("pinTooShort", { min: choice.pin_min, max: choice.pin_max }));
      pinInput.focus();
      return;
    }
    if (choice.pin_digits && !/^[0-9]+$/.test(pin)) {
      showError(t("pinDigits"));
      pinInput.focus();
      return;
    }
  }
  showError("");
  setBusy(true);
  pinInput.value = "";
  try {
    const result = await api("/answer", { choice: index, pin: typed ? pin : null });
    if (result.result === "wrong-pin") {
      setBusy(false);
      choice.tries_left = result.triesLeft;
      showError(t("wrongPin", { n: result.triesLeft }));
      showTries(result.triesLeft, false);
      pinInput.focus();
      return;
    }
    finish(result);
  } catch (e) {
    finish({ result: "expired" });
  }
}

async function cancel() {
  if (busy) return;
  setBusy(true);
  try {
    finish(await api("/answer", { cancel: true }));
  } catch (e) {
    finish({ result: "expired" });
  }
}

function showable() {
  return document.visibilityState === "visible" && window.innerWidth >= MIN_VIEW[0]
    && window.innerHeight >= MIN_VIEW[1];
}

function whenShowable() {
  return new Promise((resolve) => {
    const check = () => {
      if (!showable()) return;
      document.removeEventListener("visibilitychange", check);
      window.removeEventListener("resize", check);
      resolve();
    };
    document.addEventListener("visibilitychange", check);
    window.addEventListener("resize", check);
    check();
  });
}

// Closing or leaving the page before an answer cancels the request at once (the server ends it).
window.addEventListener("pagehide", () => {
  if (!claimed || finished) return;
  const form = new FormData();
  form.append("csrf", csrf);
  navigator.sendBeacon(base + "/gone", form);
});

async function load() {
  i18n.apply();
  try {
    if (!key) throw new Error("no key");
    await whenShowable();
    const claim = await api("/claim", { key });
    if (claim.final) {
      details = claim; // it ended before this page was shown: only its outcome is left to pass on
    } else {
      claimed = true;
      do {
        details = await api("/request"); // held open by the server while the request waits for the card
      } while (details.waiting);
    }
  } catch (e) {
    $("loading").hidden = true;
    finish({ result: "expired" });
    return;
  }
  if (details.final) {
    $("loading").hidden = true;
    finish(details.final);
    return;
  }
  if (details.language) {
    i18n = pageTranslator(details.language);
    t = i18n.t;
    i18n.apply();
  }
  $("loading").hidden = true;
  $("request").hidden = false;
  $("origin").textContent = details.origin || t("localProgram");
  $("sign-origin").textContent = $("origin").textContent; // again beside the PIN and Sign (static/dialog.css)
  $("no-origin").hidden = Boolean(details.origin);
  if (details.info) {
    $("info").textContent = details.info;
    $("info").hidden = false;
  }
  const what = details.contentType === "digest"
    ? t("digestOf", { hash: details.hashAlgorithm })
    : t("bytes", { n: details.size.toLocaleString() });
  $("what").textContent = t("signAs", { what, type: details.signatureType });
  const d = details.digest;
  $("digest").textContent = d.length > 32 ? `${d.slice(0, 16)}…${d.slice(-16)}` : d;
  $("digest").title = `${details.hashAlgorithm} ${d}`;
  $("relaxed").hidden = !details.relaxedAlgorithm;
  renderChoices();
  updatePin();
  $("form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("pin").focus();
}

load();
