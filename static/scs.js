/**
 * scs.js: a dependency-free client for SCS v1.1 local signing servers (digisign-web, DigiSign/mPollux and
 * other servers that speak DVV's "Signature Creation Service" protocol: GET /version, POST /sign).
 *
 * How to load it
 * --------------
 * This file is a classic script with a UMD-style wrapper. It contains no `export` statement, because `export`
 * is a syntax error in a classic `<script>` and no single file can be both a classic script and an ES module
 * with exports. So:
 *
 *   - classic script:  <script src="scs.js"></script>            sets window.SCS (globalThis.SCS)
 *   - ES module:       import SCS, {discover, sign} from "./scs.mjs";
 *                      scs.mjs is a three-line wrapper that imports this file for its side effect and
 *                      re-exports globalThis.SCS as the default export and as named exports.
 *   - CommonJS:        const SCS = require("./scs.js");           module.exports (globalThis is left alone)
 *
 * `import "./scs.js"` (as a module, without scs.mjs) also works and sets globalThis.SCS, but has no exports.
 *
 * What it relies on
 * -----------------
 * Only the published SCS fields: the six /version fields (version, httpMethods, contentTypes, signatureTypes,
 * selectorAvailable, hashAlgorithms), `hashAlgorithms === ""` as "no card", and the /sign answer's status,
 * reasonCode and reasonText. It needs fetch, AbortController, Promise, TextEncoder and (for digests) WebCrypto,
 * which needs a secure context (https:, or http://localhost / 127.0.0.1).
 *
 * Example
 * -------
 *   const info = await SCS.discover();                     // {base: "https://localhost:53952", version: ...}
 *   await SCS.waitForCard({timeout: 60000});
 *   const answer = await SCS.sign({version: "1.1", content: SCS.base64FromText("hello"),
 *                                  selector: {keyusages: ["nonrepudiation"]}});
 *   // answer.signature, answer.chain[0] (the signer's certificate, base64 DER), answer.signatureAlgorithm
 *   // failures throw SCSError: e.reasonCode (400, 401, 403, 404, 500, ...), e.reasonText, e.response
 *
 * Local Network Access: in Chromium 142 and later a page on a public origin needs the user's permission to
 * reach a loopback address. Until it is granted (or when it is denied), every probe fails as a plain
 * "TypeError: Failed to fetch", exactly as for a server that is not running or a certificate that is not
 * trusted: the browser does not tell the page which it was. `error.diagnosis` lists these as kind "network".
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module !== null && typeof module.exports === "object") {
    module.exports = api;
  } else if (root) {
    root.SCS = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : typeof self !== "undefined" ? self : this, function () {
  "use strict";

  /** HTTPS bases, in probe order (docs/decisions.md F17, D1): 53952, 23124 and 8089, each as localhost and
   * 127.0.0.1. */
  const HTTPS_URLS = Object.freeze([
    "https://localhost:53952", "https://127.0.0.1:53952",
    "https://localhost:23124", "https://127.0.0.1:23124",
    "https://localhost:8089", "https://127.0.0.1:8089",
  ]);

  /** Plain-HTTP bases, probed after the HTTPS ones and only from a page that is itself http:. */
  const HTTP_URLS = Object.freeze([
    "http://localhost:53951", "http://127.0.0.1:53951",
    "http://localhost:23123", "http://127.0.0.1:23123",
    "http://localhost:8088", "http://127.0.0.1:8088",
  ]);

  /** The six /version fields every SCS server publishes; a server missing one is not taken for SCS. */
  const VERSION_FIELDS = Object.freeze([
    "version", "httpMethods", "contentTypes", "signatureTypes", "selectorAvailable", "hashAlgorithms",
  ]);

  const HASHES = Object.freeze({ SHA1: "SHA-1", SHA256: "SHA-256", SHA384: "SHA-384", SHA512: "SHA-512" });

  /**
   * An SCS failure: a `status: "failed"` answer from the server, or one made up by this client
   * (reasonCode 500 "SCS not available" / "SCS not responding", as VRK's scs.js did).
   */
  class SCSError extends Error {
    /**
     * @param {number} reasonCode  the server's reasonCode, or 500 for transport failures
     * @param {string} reasonText  the server's reasonText, or this client's explanation
     * @param {{response?: object, diagnosis?: Array<{url: string, kind: string, detail: string}>, cause?: *}} [extra]
     */
    constructor(reasonCode, reasonText, extra) {
      const more = extra || {};
      super(reasonText, more.cause !== undefined ? { cause: more.cause } : undefined);
      this.name = "SCSError";
      /** @type {number} */
      this.reasonCode = reasonCode;
      /** @type {string} */
      this.reasonText = reasonText;
      /** The parsed server answer, when there was one. @type {object|undefined} */
      this.response = more.response;
      /**
       * For discovery failures: one entry per probed base, in probe order, with `kind` one of
       * "timeout", "network" (server down, TLS certificate not trusted, Local Network Access or CORS refused:
       * the browser does not say which), "http-<status>", "not-scs" (an answer without the six fields).
       * @type {Array<{url: string, kind: string, detail: string}>|undefined}
       */
      this.diagnosis = more.diagnosis;
    }
  }

  let cachedBase = null;
  let pendingDiscovery = null;

  function pageProtocol() {
    try {
      return globalThis.location ? globalThis.location.protocol : "";
    } catch (e) {
      return "";
    }
  }

  /** The bases discover() probes by default: the HTTPS list, plus the HTTP list when the page is http:. */
  function defaultUrls() {
    return pageProtocol() === "http:" ? HTTPS_URLS.concat(HTTP_URLS) : HTTPS_URLS.slice();
  }

  function trimBase(url) {
    return String(url).replace(/\/+$/, "");
  }

  function isVersionInfo(body) {
    return body !== null && typeof body === "object" && !Array.isArray(body) &&
      VERSION_FIELDS.every((field) => body[field] !== undefined && body[field] !== null);
  }

  function abortError(signal) {
    if (signal && signal.reason !== undefined) return signal.reason;
    return new DOMException("The operation was aborted.", "AbortError");
  }

  /** A timer-plus-caller-signal AbortController; `timedOut()` tells the two apart afterwards. */
  function linkedController(timeout, signal) {
    const controller = new AbortController();
    let timedOut = false;
    let timer = null;
    const onAbort = () => controller.abort(abortError(signal));
    if (signal) {
      if (signal.aborted) controller.abort(abortError(signal));
      else signal.addEventListener("abort", onAbort, { once: true });
    }
    if (timeout !== undefined && timeout !== null && timeout !== Infinity) {
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort(new DOMException("timed out", "TimeoutError"));
      }, timeout);
    }
    return {
      signal: controller.signal,
      abort: () => controller.abort(),
      timedOut: () => timedOut,
      done: () => {
        if (timer !== null) clearTimeout(timer);
        if (signal) signal.removeEventListener("abort", onAbort);
      },
    };
  }

  /**
   * GET <base>/version once. Never throws: resolves {ok: true, info} or {ok: false, kind, detail}.
   * The request is a "simple" CORS request (no custom headers), so it needs no preflight.
   */
  async function probe(base, timeout, signal, externalSignal) {
    const link = linkedController(timeout, signal);
    try {
      const response = await fetch(base + "/version", {
        method: "GET", cache: "no-store", credentials: "omit", mode: "cors", signal: link.signal,
      });
      if (!response.ok) return { ok: false, kind: "http-" + response.status, detail: response.statusText };
      let body;
      try {
        body = await response.json();
      } catch (e) {
        return { ok: false, kind: "not-scs", detail: "the answer is not JSON" };
      }
      if (!isVersionInfo(body)) {
        const why = body && body.status === "failed" ?
          "refused: " + body.reasonCode + " " + body.reasonText :
          "the answer lacks some of " + VERSION_FIELDS.join(", ");
        return { ok: false, kind: "not-scs", detail: why };
      }
      return { ok: true, info: body };
    } catch (error) {
      if (externalSignal && externalSignal.aborted) throw abortError(externalSignal);
      if (link.timedOut()) return { ok: false, kind: "timeout", detail: "no answer within " + timeout + " ms" };
      if (error && error.name === "AbortError") return { ok: false, kind: "aborted", detail: "superseded" };
      return { ok: false, kind: "network", detail: String(error && error.message || error) };
    } finally {
      link.done();
    }
  }

  /**
   * Finds the local SCS server: probes `GET <base>/version` on every base in parallel, each with its own
   * timeout, and picks the first base IN PROBE ORDER that answered with all six version fields (a later base
   * is accepted only once every earlier one has failed). Remembers the base for sign() and waitForCard().
   *
   * @param {{timeout?: number, urls?: string[], signal?: AbortSignal}} [options]
   *   timeout: ms per probe (1500); urls: bases to probe instead of the standard list; signal: cancels.
   * @returns {Promise<{base: string, version: string, httpMethods: string, contentTypes: string,
   *   signatureTypes: string, selectorAvailable: boolean, hashAlgorithms: string}>}
   * @throws {SCSError} reasonCode 500 "SCS not available", with `.diagnosis`, when no base answered.
   */
  async function discover(options) {
    const opts = options || {};
    const timeout = opts.timeout === undefined ? 1500 : opts.timeout;
    const urls = (opts.urls && opts.urls.length ? Array.from(opts.urls) : defaultUrls()).map(trimBase);
    const signal = opts.signal;
    if (signal && signal.aborted) throw abortError(signal);
    const shared = new AbortController();  // stops the losers once a winner is known
    const onAbort = () => shared.abort();
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    const probes = urls.map((base) => probe(base, timeout, shared.signal, signal));
    probes.forEach((p) => p.catch(() => {}));  // settled in order below; avoid unhandled rejections
    const diagnosis = [];
    try {
      for (let i = 0; i < urls.length; i++) {
        const result = await probes[i];
        if (result.ok) {
          cachedBase = urls[i];
          return Object.assign({ base: urls[i] }, result.info);
        }
        diagnosis.push({ url: urls[i], kind: result.kind, detail: result.detail });
      }
    } finally {
      shared.abort();
      if (signal) signal.removeEventListener("abort", onAbort);
    }
    cachedBase = null;
    throw new SCSError(500, "SCS not available", { diagnosis: diagnosis });
  }

  /** The cached base, discovering it (once, shared by concurrent callers) when there is none. */
  async function ensureBase(options) {
    if (options && options.base) return trimBase(options.base);
    if (cachedBase) return cachedBase;
    if (!pendingDiscovery) {
      pendingDiscovery = discover(options && options.discover).finally(() => { pendingDiscovery = null; });
    }
    return (await pendingDiscovery).base;
  }

  /**
   * GET /version from the discovered (or given) server.
   * @param {{base?: string, timeout?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<object>} the version info, with `base`
   * @throws {SCSError} 500 "SCS not responding" on a transport failure (the cached base is then forgotten)
   */
  async function version(options) {
    const opts = options || {};
    const base = await ensureBase(opts);
    const result = await probe(base, opts.timeout === undefined ? 5000 : opts.timeout, opts.signal, opts.signal);
    if (!result.ok) {
      if (base === cachedBase) cachedBase = null;
      const diagnosis = [{ url: base, kind: result.kind, detail: result.detail }];
      throw new SCSError(500, "SCS not responding", { diagnosis: diagnosis });
    }
    return Object.assign({ base: base }, result.info);
  }

  /**
   * Sends a sign request: POST <base>/sign with a JSON body (Content-Type: application/json; this makes the
   * browser send a CORS preflight first, which SCS servers answer).
   *
   * @param {object} request  the SCS request, e.g. {version: "1.1", content: "<base64>", contentType: "data",
   *   hashAlgorithm: "SHA256", signatureType: "signature", selector: {keyusages: ["nonrepudiation"]}}
   * @param {{base?: string, signal?: AbortSignal, discover?: object}} [options]
   * @returns {Promise<{version: string, signatureAlgorithm: string, signatureType: string, signature: string,
   *   chain: string[], status: "ok", reasonCode: number, reasonText: string}>}
   * @throws {SCSError} the server's reasonCode/reasonText when status is not "ok"; 500 "SCS not responding"
   *   on a transport failure; 500 "SCS not available" when discovery fails.
   */
  async function sign(request, options) {
    if (request === null || typeof request !== "object") {
      throw new TypeError("SCS.sign expects a request object, e.g. {content: SCS.base64FromText(text)}");
    }
    const opts = options || {};
    const base = await ensureBase(opts);
    let response;
    try {
      response = await fetch(base + "/sign", {
        method: "POST", cache: "no-store", credentials: "omit", mode: "cors", signal: opts.signal,
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      });
    } catch (error) {
      if (opts.signal && opts.signal.aborted) throw abortError(opts.signal);
      if (base === cachedBase) cachedBase = null;  // it may have moved to another port: rediscover next time
      throw new SCSError(500, "SCS not responding", { cause: error });
    }
    let body;
    try {
      body = await response.json();
    } catch (error) {
      throw new SCSError(response.ok ? 500 : response.status,
        "SCS answered HTTP " + response.status + " without a JSON body", { cause: error });
    }
    if (body && typeof body.status === "string" && body.status.toLowerCase() === "ok") return body;
    const code = body && typeof body.reasonCode === "number" ? body.reasonCode :
      response.ok ? 500 : response.status;
    const text = body && body.reasonText ? String(body.reasonText) : "Operation failed";
    throw new SCSError(code, text, { response: body });
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) return reject(abortError(signal));
      const onAbort = () => { clearTimeout(timer); reject(abortError(signal)); };
      const timer = setTimeout(() => {
        if (signal) signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Waits until a usable card is present: polls GET /version every `interval` ms until `hashAlgorithms`,
   * trimmed, is not empty. Transport failures are retried (with rediscovery) until the timeout.
   *
   * @param {{interval?: number, timeout?: number, signal?: AbortSignal, base?: string,
   *   onPoll?: function(object|SCSError): void}} [options]  onPoll sees every answer or error (for a UI).
   * @returns {Promise<object>} the version info with `base`
   * @throws {SCSError} on timeout: the last transport error, or 404 "No card present".
   */
  async function waitForCard(options) {
    const opts = options || {};
    const interval = opts.interval === undefined ? 1000 : opts.interval;
    const deadline = opts.timeout === undefined || opts.timeout === null ? Infinity : Date.now() + opts.timeout;
    let last = null;
    for (;;) {
      if (opts.signal && opts.signal.aborted) throw abortError(opts.signal);
      try {
        const info = await version({ base: opts.base, signal: opts.signal,
          timeout: Math.max(1, Math.min(5000, deadline - Date.now())) });
        last = null;
        if (opts.onPoll) opts.onPoll(info);
        if (String(info.hashAlgorithms).trim() !== "") return info;
      } catch (error) {
        if (!(error instanceof SCSError)) throw error;
        last = error;
        if (opts.onPoll) opts.onPoll(error);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw last || new SCSError(404, "No card present");
      await sleep(Math.min(interval, left), opts.signal);
    }
  }

  /**
   * Standard base64 of bytes.
   * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data
   * @returns {string}
   */
  function base64FromBytes(data) {
    let bytes;
    if (data instanceof Uint8Array) bytes = data;
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else throw new TypeError("base64FromBytes expects a Uint8Array or an ArrayBuffer");
    if (typeof bytes.toBase64 === "function") return bytes.toBase64();
    let binary = "";
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
  }

  /**
   * Base64 of the UTF-8 encoding of a string (what SCS `content` expects for text).
   * @param {string} text
   * @returns {string}
   */
  function base64FromText(text) {
    return base64FromBytes(new TextEncoder().encode(String(text)));
  }

  /**
   * Base64 of a File or Blob's bytes.
   * @param {Blob} blob
   * @returns {Promise<string>}
   */
  async function base64FromFile(blob) {
    return base64FromBytes(new Uint8Array(await blob.arrayBuffer()));
  }

  /**
   * The WebCrypto name for an SCS hashAlgorithm value: "SHA256", "sha-256" and "SHA-256" all give "SHA-256".
   * SHA224 is valid SCS but WebCrypto cannot compute it.
   */
  function webCryptoHash(algorithm) {
    const key = String(algorithm || "SHA256").toUpperCase().replace(/[-_\s]/g, "");
    const name = HASHES[key];
    if (!name) throw new SCSError(501, "hash algorithm " + algorithm + " is not available in WebCrypto");
    return name;
  }

  /**
   * Base64 of the digest of bytes, for `contentType: "digest"` requests.
   * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data
   * @param {string} [algorithm="SHA256"]  SHA1, SHA256, SHA384 or SHA512 (SCS spelling or WebCrypto's)
   * @returns {Promise<string>}
   */
  async function digestBytes(data, algorithm) {
    const subtle = globalThis.crypto && globalThis.crypto.subtle;
    if (!subtle) {
      throw new SCSError(500, "WebCrypto is not available: the page must be a secure context " +
        "(https:, or http://localhost)");
    }
    const bytes = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : null;
    if (!bytes) throw new TypeError("digestBytes expects a Uint8Array or an ArrayBuffer");
    return base64FromBytes(await subtle.digest(webCryptoHash(algorithm), bytes));
  }

  /**
   * Base64 of the digest of a File or Blob (read whole into memory: WebCrypto cannot stream).
   * @param {Blob} file
   * @param {string} [algorithm="SHA256"]
   * @returns {Promise<string>}
   */
  async function digestFile(file, algorithm) {
    webCryptoHash(algorithm);  // fail before reading a large file
    return digestBytes(await file.arrayBuffer(), algorithm);
  }

  /**
   * Splits an SCS list field ("SHA1, SHA256" or "signature,cms") into trimmed, non-empty items.
   * @param {string} value
   * @returns {string[]}
   */
  function parseList(value) {
    return String(value === undefined || value === null ? "" : value).split(",")
      .map((item) => item.trim()).filter((item) => item !== "");
  }

  /** The base found by the last discover(), or null. */
  function getBase() {
    return cachedBase;
  }

  /** Uses this base (e.g. "https://localhost:53952") without discovery; null forgets it. */
  function setBase(base) {
    cachedBase = base ? trimBase(base) : null;
  }

  return Object.freeze({
    SCSError: SCSError,
    HTTPS_URLS: HTTPS_URLS,
    HTTP_URLS: HTTP_URLS,
    VERSION_FIELDS: VERSION_FIELDS,
    defaultUrls: defaultUrls,
    discover: discover,
    version: version,
    sign: sign,
    waitForCard: waitForCard,
    base64FromText: base64FromText,
    base64FromBytes: base64FromBytes,
    base64FromFile: base64FromFile,
    digestBytes: digestBytes,
    digestFile: digestFile,
    parseList: parseList,
    getBase: getBase,
    setBase: setBase,
  });
});
