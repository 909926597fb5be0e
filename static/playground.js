/* The signing playground (served at / by digisign-web): a live status of the server and the card, an SCS
 * request builder, the exact exchange with a verification of the answer, ready-made PDF and authentication
 * flows, copyable snippets, and troubleshooting. Every SCS call goes through scs.js (imported as scs.mjs, as an
 * e-service would); the page only adds same-origin helpers under /playground/ for what browser JavaScript cannot
 * do well (status from memory, CMS/XML verification, PDF preparation). Everything shown is inserted as text,
 * never as HTML. An ES module (static/playground.html loads it with type="module"); the shared helpers and the
 * translator are static/ui.mjs's. */
import { $, commonName, el, formatDate, pageTranslator, personName, troubleshoot } from "./ui.mjs";
import "./playground-i18n.js"; // after ui.mjs (which imports i18n.js): adds the "pg." strings to I18N.STRINGS
import SCS from "./scs.mjs";

const i18n = pageTranslator();
const t = i18n.t;
const ORIGIN = location.origin;
const SHORT = 100;           // strings longer than this are shortened in the exchange view
const SNIPPET_LIMIT = 6000;  // content longer than this is replaced by a placeholder in the snippet
const POLL_MS = 2000;

// --- small helpers -------------------------------------------------------------------------------------

/** "31 Dec 2030" (the dialog shows dates as numbers). */
function shortDate(iso) {
  return formatDate(iso, i18n.lang, { year: "numeric", month: "short", day: "numeric" });
}

function formatBytes(n) {
  if (n < 1024) return t("pg.bytes", { n: n });
  if (n < 1024 * 1024) return t("pg.kib", { n: (n / 1024).toFixed(1) });
  return t("pg.mib", { n: (n / 1024 / 1024).toFixed(1) });
}

function keyUsageText(list) {
  return (list || []).map((u) => u.replace(/_/g, " ")).join(", ");
}

function show(node, visible) {
  node.hidden = !visible;
}

function setBadge(node, kind, text) {
  node.className = "badge" + (kind ? " " + kind : "");
  node.textContent = text;
  node.hidden = !text;
}

/** A network failure of a same-origin helper, told apart from a refusal, as an SCSError for diagnose(). */
function transportError(error) {
  if (error instanceof SCS.SCSError) return error;
  if (error instanceof TypeError) return new SCS.SCSError(500, "SCS not responding", { cause: error });
  return error;
}

async function helper(path, init) {
  let response;
  try {
    response = await fetch(path, Object.assign({ cache: "no-store", credentials: "same-origin" }, init || {}));
  } catch (error) {
    throw transportError(error);
  }
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new Error(text || response.status + " " + response.statusText);
  }
  return response;
}

async function postJson(path, body) {
  const response = await helper(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  return response.json();
}

/** Finds the server with scs.js, on this page's own origin (the playground is served by the server). */
async function ensureBase() {
  if (!SCS.getBase()) await SCS.discover({ urls: [ORIGIN], timeout: 3000 });
  return SCS.getBase();
}

// --- language ------------------------------------------------------------------------------------------

i18n.apply(document);
document.title = t("pg.pageTitle");
$("content-text").value = t("pg.sampleText");
$("info").value = t("pg.infoDefault");

// --- tabs ----------------------------------------------------------------------------------------------

const TABS = ["request", "pdf", "auth", "websigner"];

function showTab(name, focus) {
  for (const tab of TABS) {
    const selected = tab === name;
    $("tab-" + tab).setAttribute("aria-selected", String(selected));
    $("tab-" + tab).tabIndex = selected ? 0 : -1;
    show($("view-" + tab), selected);
  }
  if (focus) $("tab-" + name).focus();
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
}

TABS.forEach((tab, index) => {
  $("tab-" + tab).addEventListener("click", () => showTab(tab));
  $("tab-" + tab).addEventListener("keydown", (event) => {
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (step) showTab(TABS[(index + step + TABS.length) % TABS.length], true);
  });
});
showTab(TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "request");

// --- WebSigner ------------------------------------------------------------------------------------------
// The form itself is plain HTML; the page only fills in what a server-rendered form would carry.

$("ws-text").value = t("pg.sampleText");
$("ws-return").value = location.origin + "/playground/websigner-result";
$("ws-form").addEventListener("submit", () => {
  const content = SCS.base64FromText($("ws-text").value);
  $("ws-content").value = content;
  $("ws-state").value = content; // echoed back untouched: the result page uses it to check the signature
});

// --- troubleshooting -----------------------------------------------------------------------------------

let troubleSource = null;  // "poll" or "action": who showed the panel

async function explain(error) {
  return troubleshoot.diagnose(error, { lang: i18n.lang, base: ORIGIN });
}

function showTrouble(help, source) {
  $("trouble-title").textContent = help.title;
  $("trouble-layer").textContent = t("pg.layer", { layer: help.layerName });
  const list = $("trouble-fixes");
  list.replaceChildren();
  for (const fix of help.fixes) {
    const item = el("li");
    troubleshoot.appendRich(item, fix);
    list.append(item);
  }
  const details = $("trouble-details");
  details.replaceChildren(...help.details.map((line) => el("li", "", line)));
  show($("trouble-more"), help.details.length > 0);
  troubleSource = source;
  const wasHidden = $("trouble").hidden;
  show($("trouble"), true);
  if (wasHidden && source === "action") $("trouble").scrollIntoView({ behavior: "smooth", block: "start" });
}

function hideTrouble() {
  show($("trouble"), false);
  troubleSource = null;
}

/** Explains a failure inline (box) for answers from the server; transport failures go to the top panel. */
async function explainFailure(error, box) {
  if (!(error instanceof SCS.SCSError)) {  // e.g. a helper's refusal ("that is not a PDF"): say it as it is
    box.replaceChildren(el("p", "error", String(error && error.message || error)));
    show(box, true);
    return null;
  }
  const help = await explain(error);
  if (error instanceof SCS.SCSError && error.response) {
    troubleshoot.render(help, box, { detailsLabel: t("pg.troubleDetails") });
    show(box, true);
  } else {
    box.replaceChildren(el("p", "error", t("pg.seeTrouble", { title: help.title.charAt(0).toLowerCase() + help.title.slice(1) })));
    show(box, true);
    showTrouble(help, "action");
    pollStatus();  // the status panel should agree at once, not at the next poll
  }
  return help;
}

$("trouble-retry").addEventListener("click", () => {
  hideTrouble();
  pollStatus(true);
});

// --- the live status -----------------------------------------------------------------------------------

let lastStatusJson = "";
let serverUp = null;
let pollTimer = null;

function certificateRow(cert) {
  const row = el("div", "cert");
  row.append(el("strong", "cert-name", commonName(cert.subject)));
  const facts = [cert.key, t("pg.expires", { date: shortDate(cert.notAfter) })];
  if (cert.keyUsage && cert.keyUsage.length) facts.push(keyUsageText(cert.keyUsage));
  row.append(el("div", "meta", facts.join(" · ")));
  const tags = el("div", "cert-tags");
  const role = cert.role === "signature" ? t("pg.roleSignature") : cert.role === "authentication" ?
    t("pg.roleAuthentication") : cert.role;
  tags.append(el("span", "badge" + (cert.role === "signature" ? " sig" : ""), role));
  // certExpirationWarningDays, worked out by the server as of this status (D50)
  if (cert.validity === "expired") tags.append(el("span", "badge bad expiry", t("pg.certExpired")));
  else if (cert.validity === "not-yet-valid") tags.append(el("span", "badge bad expiry", t("pg.certNotYetValid")));
  else if (cert.validity === "expiring") {
    tags.append(el("span", "badge warn expiry", t("pg.certExpiring", { n: Math.max(0, Number(cert.daysLeft)) })));
  }
  if (cert.pin) {
    if (cert.blocked) {
      tags.append(el("span", "badge bad tries", t("pg.blocked")));
    } else {
      const tries = Number(cert.triesLeft);
      tags.append(el("span", "badge tries " + (tries <= 1 ? "bad" : tries <= 2 ? "warn" : "ok"),
        t(tries === 1 ? "pg.oneTryLeft" : "pg.triesLeft", { n: tries })));
    }
    tags.append(el("span", "meta", cert.pin));
  }
  row.append(tags);
  return row;
}

function renderReaders(status) {
  const box = $("readers");
  const json = JSON.stringify(status.readers);
  if (json === lastStatusJson) return;
  lastStatusJson = json;
  box.replaceChildren();
  if (!status.readers.length) {
    box.append(el("p", "meta", t("pg.noReaders")));
    return;
  }
  for (const reader of status.readers) {
    const card = el("div", "reader");
    const head = el("div", "reader-head");
    head.append(el("span", "dot " + (reader.card ? (reader.token && !reader.token.problem ? "ok" : "warn") : ""), ""));
    head.append(el("strong", "", reader.name));
    head.append(el("span", "badge" + (reader.card ? " ok" : ""), reader.card ? t("pg.cardPresent") : t("pg.noCard")));
    card.append(head);
    const token = reader.token;
    if (reader.card && !token) card.append(el("p", "meta", t("pg.reading")));
    if (token) {
      const facts = [token.profile, token.label, t("pg.serial", { serial: token.serial })].filter(Boolean);
      card.append(el("p", "meta token-line", facts.join(" · ")));
      if (token.problem) card.append(el("p", "error", token.problem));
      const personal = token.certificates.filter((c) => c.role !== "ca");
      const cas = token.certificates.filter((c) => c.role === "ca");
      const list = el("div", "certs");
      personal.forEach((cert) => list.append(certificateRow(cert)));
      card.append(list);
      if (cas.length) {
        card.append(el("p", "meta", t("pg.caCertificates", { n: cas.length,
          names: cas.map((c) => commonName(c.subject)).join(", ") })));
      }
    }
    box.append(card);
  }
}

function renderServer(info) {
  const ready = String(info.hashAlgorithms || "").trim() !== "";
  $("server-dot").className = "dot " + (ready ? "ok" : "warn");
  $("server-text").textContent = ready ? t("pg.serverReady") : t("pg.serverNoCard");
  $("server-base").textContent = info.base;
  $("server-version").textContent = info.version;
  const algorithms = [info.signatureAlgorithms, SCS.parseList(info.hashAlgorithms).join(", ")].filter(Boolean);
  $("server-algorithms").textContent = algorithms.length ? algorithms.join(" · ") : t("pg.noneYet");
}

function renderDown() {
  $("server-dot").className = "dot bad";
  $("server-text").textContent = t("pg.serverDown");
  $("server-version").textContent = "–";
  $("server-algorithms").textContent = "–";
  lastStatusJson = "";
  $("readers").replaceChildren(el("p", "meta", t("pg.statusUnknown")));
}

async function pollStatus(forceDiagnosis) {
  clearTimeout(pollTimer);
  try {
    const info = await SCS.version({ base: ORIGIN, timeout: 3000 });
    renderServer(info);
    if (!SCS.getBase()) SCS.setBase(info.base);
    try {
      renderReaders(await (await helper("/playground/status")).json());
    } catch (error) {
      // the status helper is a nicety; /version already told us the server is up
    }
    const wasDown = serverUp === false;
    serverUp = true;
    if (troubleSource === "poll" || (wasDown && troubleSource === "action")) hideTrouble();
  } catch (error) {
    const wasUp = serverUp;
    serverUp = false;
    renderDown();
    if (wasUp !== false || forceDiagnosis) {
      const help = await explain(error);
      if (!serverUp && (troubleSource !== "action" || forceDiagnosis)) showTrouble(help, "poll");
    }
  } finally {
    pollTimer = setTimeout(pollStatus, POLL_MS);
  }
}

// --- the request builder -------------------------------------------------------------------------------

class BuildError extends Error {}

const TYPE_HINTS = {
  "signature": "pg.type.signature", "signature-plain": "pg.type.signaturePlain", "cms": "pg.type.cms",
  "pkcs7": "pg.type.pkcs7", "cms-pades": "pg.type.cmsPades", "xml": "pg.type.xml",
};

function source() {
  return document.querySelector('input[name="source"]:checked').value;
}

function checked(name) {
  // Only the request builder's boxes: the WebSigner tab's form has fields of the same names.
  return Array.from($("view-request").querySelectorAll('input[name="' + name + '"]:checked')).map((box) => box.value);
}

function syncForm() {
  const type = $("signature-type").value;
  const contentType = $("content-type");
  const padesForcesDigest = type === "cms-pades";
  contentType.querySelector('option[value="data"]').disabled = padesForcesDigest;
  if (padesForcesDigest) contentType.value = "digest";
  show($("content-text"), source() === "text");
  show($("content-file"), source() === "file");
  show($("digest-hint"), contentType.value === "digest");
  show($("auth-rule-hint"), checked("keyusages").includes("digitalsignature"));
  $("type-hint").textContent = t(TYPE_HINTS[type]);
  const raw = type === "signature" || type === "signature-plain";
  const refusal = $("hash").value === "SHA1" && !raw ? "pg.warnSha1" :
    type === "xml" && contentType.value === "digest" ? "pg.warnXmlDigest" : "";
  $("combo-note").textContent = refusal ? t(refusal) : "";
  show($("combo-note"), Boolean(refusal));
}

/** The SCS request from the form: {request, original (the bytes before hashing), size}. */
async function buildRequest() {
  syncForm();
  let bytes;
  let file = null;
  if (source() === "file") {
    file = $("content-file").files[0];
    if (!file) throw new BuildError(t("pg.errNoFile"));
    bytes = new Uint8Array(await file.arrayBuffer());
  } else {
    bytes = new TextEncoder().encode($("content-text").value);
  }
  const contentType = $("content-type").value;
  const hashAlgorithm = $("hash").value;
  const signatureType = $("signature-type").value;
  let content;
  if (contentType === "digest") {
    if (hashAlgorithm === "SHA224") throw new BuildError(t("pg.errSha224"));
    content = file ? await SCS.digestFile(file, hashAlgorithm) : await SCS.digestBytes(bytes, hashAlgorithm);
  } else {
    content = SCS.base64FromBytes(bytes);
  }
  const request = { version: "1.1", content: content, contentType: contentType, hashAlgorithm: hashAlgorithm,
    signatureType: signatureType };
  const selector = {};
  const keyusages = checked("keyusages");
  const keyalgorithms = checked("keyalgorithms");
  const issuers = $("issuers").value.split("\n").map((line) => line.trim()).filter(Boolean);
  const akis = $("akis").value.split(/[\s,]+/).map((item) => item.trim()).filter(Boolean);
  if (keyusages.length) selector.keyusages = keyusages;
  if (keyalgorithms.length) selector.keyalgorithms = keyalgorithms;
  if (issuers.length) selector.issuers = issuers;
  if (akis.length) selector.akis = akis;
  if (Object.keys(selector).length) request.selector = selector;
  if ($("strict").checked) request.strictKeyPolicy = true;
  const info = $("info").value.trim();
  if (info) request.info = info;
  return { request: request, original: bytes, size: bytes.length };
}

/** JSON for display: long strings shortened (unless full), and how many were. */
function displayJson(value, full) {
  let shortened = 0;
  const text = JSON.stringify(value, (key, item) => {
    if (!full && typeof item === "string" && item.length > SHORT) {
      shortened += 1;
      return item.slice(0, 56) + "…" + item.slice(-20);
    }
    return item;
  }, 2);
  return { text: text, shortened: shortened };
}

function snippetText(request, kind) {
  let body = request;
  let note = "";
  if (request.content.length > SNIPPET_LIMIT) {
    body = Object.assign({}, request, { content: "<base64 of your content>" });
    note = "// content: " + t("pg.snippetPlaceholder", { n: request.content.length }) + "\n";
  }
  const json = JSON.stringify(body, null, 2);
  if (kind === "fetch") {
    return note +
      "const request = " + json + ";\n\n" +
      "const response = await fetch(\"" + ORIGIN + "/sign\", {\n" +
      "  method: \"POST\",\n" +
      "  headers: { \"Content-Type\": \"application/json\" },\n" +
      "  body: JSON.stringify(request),\n" +
      "});\n" +
      "const answer = await response.json();  // always HTTP 200: read status and reasonCode\n" +
      "if (answer.status !== \"ok\") throw new Error(answer.reasonCode + \" \" + answer.reasonText);\n" +
      "console.log(answer.signatureAlgorithm, answer.signature, answer.chain);\n";
  }
  return "// <script src=\"scs.js\"></script>  (" + t("pg.snippetCopyLib", { url: ORIGIN + "/static/scs.js" }) + ")\n" +
    note +
    "const request = " + json + ";\n\n" +
    "try {\n" +
    "  await SCS.discover();  // finds the local server: https://localhost:53952, …\n" +
    "  const answer = await SCS.sign(request);\n" +
    "  console.log(answer.signatureAlgorithm, answer.signature, answer.chain);\n" +
    "} catch (error) {\n" +
    "  // SCS.SCSError: reasonCode 401 cancelled or wrong PIN, 404 no card, 500 not reachable, …\n" +
    "  console.error(error.reasonCode, error.reasonText);\n" +
    "}\n";
}

let lastBuilt = null;
let refreshSerial = 0;
let refreshTimer = null;

async function refresh() {
  const serial = ++refreshSerial;
  syncForm();
  const size = source() === "file" ? ($("content-file").files[0] || {}).size :
    new TextEncoder().encode($("content-text").value).length;
  $("content-size").textContent = size === undefined ? t("pg.chooseFile") : formatBytes(size);
  try {
    const built = await buildRequest();
    if (serial !== refreshSerial) return;
    lastBuilt = built;
    show($("build-error"), false);
    renderSnippet();
  } catch (error) {
    if (serial !== refreshSerial) return;
    lastBuilt = null;
    if (error instanceof BuildError) {
      $("build-error").textContent = error.message;
      show($("build-error"), true);
    }
    renderSnippet();
  }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

function snippetKind() {
  return document.querySelector('input[name="snippet"]:checked').value;
}

function renderSnippet() {
  const kind = snippetKind();
  $("snippet-hint").textContent = kind === "fetch" ? t("pg.snippetFetchHint") : t("pg.snippetScsHint");
  $("snippet").textContent = lastBuilt ? snippetText(lastBuilt.request, kind) : t("pg.snippetNone");
  $("copy-status").textContent = "";
}

$("builder").addEventListener("input", scheduleRefresh);
$("builder").addEventListener("change", scheduleRefresh);
$("snippet-kinds").addEventListener("change", renderSnippet);

// --- the exchange and its verification -----------------------------------------------------------------

let exchange = null;  // {request, answer}

function renderExchange() {
  if (!exchange) return;
  const full = $("show-full").checked;
  const sent = displayJson(exchange.request, full);
  $("sent").textContent = sent.text;
  $("sent-note").textContent = t("pg.shortened", { n: sent.shortened });
  show($("sent-note"), sent.shortened > 0);
  if (exchange.answer) {
    const received = displayJson(exchange.answer, full);
    $("received").textContent = received.text;
    $("received-note").textContent = t("pg.shortened", { n: received.shortened });
    show($("received-note"), received.shortened > 0);
    show($("received"), true);
  } else {
    show($("received"), false);
    show($("received-note"), false);
  }
}

$("show-full").addEventListener("change", renderExchange);

function verifyBody(built, answer) {
  const request = built.request;
  const body = { signatureType: request.signatureType, signature: answer.signature, content: request.content,
    contentType: request.contentType, hashAlgorithm: request.hashAlgorithm, chain: answer.chain };
  const detachedOverDigest = (request.signatureType === "cms" || request.signatureType === "pkcs7") &&
    request.contentType === "digest";
  if (detachedOverDigest || request.signatureType === "cms-pades") {
    body.originalContent = SCS.base64FromBytes(built.original);
  }
  return body;
}

function fact(list, label, value, mono) {
  list.append(el("dt", "", label));
  const dd = el("dd");
  dd.append(mono ? el("code", "", value) : document.createTextNode(value));
  list.append(dd);
}

function renderVerification(result) {
  if (result.intact === true) setBadge($("verify-badge"), "ok", "✓ " + t("pg.valid"));
  else if (result.intact === false) setBadge($("verify-badge"), "bad", "✗ " + t("pg.notValid"));
  else setBadge($("verify-badge"), "", t("pg.notChecked"));
  if (result.trusted === true) setBadge($("trust-badge"), "ok", t("pg.trusted"));
  else if (result.trusted === false) setBadge($("trust-badge"), "bad", t("pg.untrusted"));
  else setBadge($("trust-badge"), "", "");
  const facts = $("verify-facts");
  facts.replaceChildren();
  fact(facts, t("pg.format"), result.format);
  fact(facts, t("pg.signer"), result.signer ? commonName(result.signer) : commonName(result.chain[0].subject));
  fact(facts, t("pg.hash"), result.hash || "–");
  fact(facts, t("pg.summary"), result.summary);
  const problems = $("verify-problems");
  problems.replaceChildren(...(result.problems || []).map((p) => el("li", "", p)));
  show(problems, (result.problems || []).length > 0);
  const body = $("chain").tBodies[0];
  body.replaceChildren();
  for (const cert of result.chain) {
    const row = el("tr");
    const cells = [
      [t("pg.subject"), commonName(cert.subject), cert.subject],
      [t("pg.issuer"), commonName(cert.issuer), cert.issuer],
      [t("pg.validity"), shortDate(cert.notBefore) + " – " + shortDate(cert.notAfter), ""],
      [t("pg.keyUsage"), keyUsageText(cert.keyUsage), cert.key],
    ];
    for (const [label, main, sub] of cells) {
      const cell = el("td");
      cell.dataset.label = label;
      cell.append(el("span", "", main));
      if (sub) cell.append(el("span", "meta cell-sub", sub));
      row.append(cell);
    }
    body.append(row);
  }
  $("trust-note").textContent = result.trusted === null && /^raw/.test(result.format) ?
    t("pg.rawNote") : t("pg.trustNote");
  show($("verification"), true);
}

let busy = false;

function setBusy(value) {
  busy = value;
  for (const id of ["sign", "pdf-sign", "auth-start"]) $(id).disabled = value;
}

$("builder").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy) return;
  setBusy(true);
  show($("answer-trouble"), false);
  show($("verification"), false);
  let built;
  try {
    built = await buildRequest();
    show($("build-error"), false);
  } catch (error) {
    $("build-error").textContent = error.message;
    show($("build-error"), true);
    setBusy(false);
    return;
  }
  exchange = { request: built.request, answer: null };
  $("received-code").replaceChildren();
  renderExchange();
  show($("exchange"), true);
  show($("waiting"), true);
  $("exchange").scrollIntoView({ behavior: "smooth", block: "start" });
  try {
    await ensureBase();
    const answer = await SCS.sign(built.request);
    exchange.answer = answer;
    $("received-code").replaceChildren(el("span", "badge ok", answer.reasonCode + " " + answer.status));
    show($("waiting"), false);
    renderExchange();
    if (troubleSource === "action") hideTrouble();
    renderVerification(await postJson("/playground/verify", verifyBody(built, answer)));
  } catch (error) {
    show($("waiting"), false);
    if (error instanceof SCS.SCSError && error.response) {
      exchange.answer = error.response;
      $("received-code").replaceChildren(el("span", "badge bad", error.reasonCode + " " + error.response.status));
    } else {
      $("received-code").replaceChildren(el("span", "badge bad", t("pg.noAnswer")));
    }
    renderExchange();
    await explainFailure(error, $("answer-trouble"));
  } finally {
    show($("waiting"), false);
    setBusy(false);
  }
});

// --- copying -------------------------------------------------------------------------------------------

$("copy").addEventListener("click", async () => {
  const text = $("snippet").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-status").textContent = t("pg.copied");
  } catch (error) {
    const range = document.createRange();
    range.selectNodeContents($("snippet"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (e) {
      copied = false;
    }
    $("copy-status").textContent = copied ? t("pg.copied") : t("pg.selected");
  }
});

// --- sign a PDF ----------------------------------------------------------------------------------------

let pdfUrl = null;

function step(name, state, detail) {
  const item = $("step-" + name);
  item.className = state ? "step-" + state : "";
  if (detail !== undefined) $("step-" + name + "-detail").textContent = detail;
}

$("pdf-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy) return;
  const file = $("pdf-file").files[0];
  if (!file) {
    $("pdf-error").textContent = t("pg.errNoPdf");
    show($("pdf-error"), true);
    return;
  }
  show($("pdf-error"), false);
  setBusy(true);
  show($("pdf-progress"), true);
  show($("pdf-done"), false);
  show($("pdf-trouble"), false);
  for (const name of ["prepare", "sign", "finish"]) step(name, "", "");
  if (pdfUrl) URL.revokeObjectURL(pdfUrl);
  pdfUrl = null;
  let current = "prepare";
  try {
    step("prepare", "active", formatBytes(file.size));
    const hash = $("pdf-hash").value;
    const prepared = await (await helper("/playground/pdf/prepare?hashAlgorithm=" + encodeURIComponent(hash), {
      method: "POST", headers: { "Content-Type": "application/pdf" }, body: file })).json();
    step("prepare", "done", t("pg.prepared", { hash: prepared.hashAlgorithm, digest: prepared.digest }));

    current = "sign";
    step("sign", "active", t("pg.waiting"));
    await ensureBase();
    const answer = await SCS.sign({ version: "1.1", contentType: "digest", signatureType: "cms-pades",
      hashAlgorithm: prepared.hashAlgorithm, content: prepared.digest, selector: { keyusages: ["nonrepudiation"] },
      info: t("pg.pdfInfo", { name: file.name }) });
    step("sign", "done", answer.signatureAlgorithm);

    current = "finish";
    step("finish", "active", "");
    const blob = await (await helper("/playground/pdf/finish", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ job: prepared.job, cms: answer.signature }) })).blob();
    pdfUrl = URL.createObjectURL(new Blob([blob], { type: "application/pdf" }));
    const name = file.name.replace(/\.pdf$/i, "") + "-signed.pdf";
    $("pdf-download").href = pdfUrl;
    $("pdf-download").download = name;
    step("finish", "done", t("pg.finished", { name: name, size: formatBytes(blob.size) }));
    $("pdf-signer").textContent = "";
    show($("pdf-done"), true);
    try {  // the decoded chain, for the signer's name (the PDF itself is checked by PDF readers)
      const described = await postJson("/playground/verify", { signatureType: "cms-pades",
        signature: answer.signature, content: prepared.digest, contentType: "digest",
        hashAlgorithm: prepared.hashAlgorithm, chain: answer.chain });
      $("pdf-signer").textContent = t("pg.signedBy", { name: personName(described.chain[0].subject) });
    } catch (error) {
      // only a nicety
    }
  } catch (error) {
    step(current, "failed", error instanceof SCS.SCSError ? error.reasonCode + " " + error.reasonText : error.message);
    await explainFailure(error, $("pdf-trouble"));
  } finally {
    setBusy(false);
  }
});

// --- authenticate --------------------------------------------------------------------------------------

function randomHex(bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

$("auth-start").addEventListener("click", async () => {
  if (busy) return;
  setBusy(true);
  const challenge = ORIGIN + ";" + randomHex(32);
  $("auth-challenge").textContent = challenge;
  show($("auth-panel"), true);
  show($("auth-result"), false);
  show($("auth-trouble"), false);
  show($("auth-waiting"), true);
  try {
    await ensureBase();
    const request = { version: "1.1", content: SCS.base64FromText(challenge), contentType: "data",
      hashAlgorithm: "SHA256", signatureType: "signature", selector: { keyusages: ["digitalsignature"] },
      info: t("pg.authInfo") };
    const answer = await SCS.sign(request);
    show($("auth-waiting"), false);
    const result = await postJson("/playground/verify", { signatureType: "signature", signature: answer.signature,
      content: request.content, contentType: "data", hashAlgorithm: "SHA256", chain: answer.chain });
    const leaf = result.chain[0];
    setBadge($("auth-badge"), result.intact ? "ok" : "bad", result.intact ? t("pg.authValid") : t("pg.notValid"));
    $("auth-name").textContent = personName(leaf.subject);
    $("auth-subject").textContent = leaf.subject;
    $("auth-issuer").textContent = commonName(leaf.issuer);
    $("auth-algorithm").textContent = answer.signatureAlgorithm + " · " + leaf.key;
    show($("auth-result"), true);
  } catch (error) {
    show($("auth-waiting"), false);
    await explainFailure(error, $("auth-trouble"));
  } finally {
    show($("auth-waiting"), false);
    setBusy(false);
  }
});

// --- start ---------------------------------------------------------------------------------------------

refresh();
SCS.discover({ urls: [ORIGIN], timeout: 3000 }).then(renderServer, () => {});
pollStatus();
