/**
 * ui.mjs: what the server's own pages (the signing dialog and the playground) share: their translator, element
 * creation, distinguished names and dates. An ES module: `import {el, pageTranslator} from "./ui.mjs";`.
 * Everything here puts text into the page as text (textContent), never as HTML.
 *
 * troubleshoot.js and i18n.js are classic scripts, imported here for their side effects as scs.mjs imports
 * scs.js: troubleshoot.js sets globalThis.SCSTroubleshoot, which carries the one translator (it must stay a
 * standalone public library, so the translator lives there); i18n.js sets globalThis.I18N.STRINGS.
 */
import "./troubleshoot.js";
import "./i18n.js";

/** SCSTroubleshoot (static/troubleshoot.js): diagnose, render, appendRich, translator. */
export const troubleshoot = globalThis.SCSTroubleshoot;

export const $ = (id) => document.getElementById(id);

/**
 * The page's translator over I18N.STRINGS: {lang, t, apply}. The language is `preferred` when given (the
 * server's setting as an API answer carries it), else the page's <meta name="language"> (the server's setting
 * filled into the template), else the browser's. apply(scope) puts t(key) into every [data-i18n] element and
 * sets <html lang>.
 */
export function pageTranslator(preferred) {
  const meta = document.querySelector('meta[name="language"]');
  const wanted = preferred !== undefined ? preferred : meta ? meta.content : "";
  const { lang, t } = troubleshoot.translator(globalThis.I18N.STRINGS, wanted);
  const apply = (scope) => {
    for (const node of (scope || document).querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    document.documentElement.lang = lang;
  };
  return { lang, t, apply };
}

/** A new element with an optional class and text (as text). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/** One attribute's value from an RFC 4514 DN ("CN=…,serialNumber=…,C=FI"), "" when it has none. */
export function dnAttribute(dn, name) {
  const match = new RegExp("(?:^|,)\\s*" + name + "=((?:\\\\,|[^,])*)", "i").exec(String(dn || ""));
  return match ? match[1].replace(/\\,/g, ",").trim() : "";
}

/** The CN of a DN, else the whole DN. */
export function commonName(dn) {
  return dnAttribute(dn, "CN") || String(dn || "");
}

/** "TIINA SPECIMEN-TESTINEN" from GN and SN, else the CN. */
export function personName(dn) {
  const given = dnAttribute(dn, "GN") || dnAttribute(dn, "givenName");
  const surname = dnAttribute(dn, "SN") || dnAttribute(dn, "surname");
  return given && surname ? given + " " + surname : commonName(dn);
}

/**
 * A date ("2030-12-31", or a full ISO time) in the page's language (British order for English); `options` as
 * for toLocaleDateString. An empty value gives "", one that is not a date is shown as it came: an invalid Date
 * does not throw, it formats as "Invalid Date", so this checks the time instead of catching.
 */
export function formatDate(iso, lang, options) {
  if (!iso) return "";
  const date = new Date(/T/.test(iso) ? iso : iso + "T00:00:00");
  if (isNaN(date.getTime())) return iso;
  return date.toLocaleDateString(lang === "en" ? "en-GB" : lang, options);
}
