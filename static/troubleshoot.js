/**
 * troubleshoot.js: tells a user (or an integrator) why a page could not sign with the local SCS server,
 * and what to do about it. Classic script, no dependencies; works with scs.js's SCS.SCSError.
 *
 *   <script src="scs.js"></script>
 *   <script src="troubleshoot.js"></script>
 *   try { await SCS.sign(request); }
 *   catch (error) {
 *     const help = await SCSTroubleshoot.diagnose(error, {lang: "fi"});  // {layer, title, fixes[], details[]}
 *     SCSTroubleshoot.render(help, document.getElementById("help"));     // or build your own markup
 *   }
 *
 * A failed fetch looks the same to a page whether the server is not running, its certificate is not trusted,
 * the browser's Local Network Access permission was refused, or the server's CORS policy refused the origin.
 * diagnose() narrows it down with what a page CAN observe:
 *   1. an SCS answer with a reasonCode: the server itself refused (layer "request", "user", "policy", "card",
 *      "server-error");
 *   2. scs.js's per-URL diagnosis: "timeout" (layer "timeout") or an answer that is not SCS ("not-scs");
 *   3. navigator.permissions.query({name: "local-network-access"}): "denied" or "prompt" on a page that is not
 *      itself on a loopback address (layer "local-network-access");
 *   4. a fetch with mode "no-cors": it succeeds when the server is up and TLS is trusted, so then only CORS
 *      (the server's allowedOrigins) is left (layer "cors");
 *   5. otherwise: the server is not running or the browser does not trust its certificate
 *      (layer "server-or-certificate").
 *
 * Each fix is a string; text between backticks is a command or a value (render() shows it as <code>), and a
 * https:// address becomes a link. The texts exist in English, Finnish and Swedish (options.lang, else the
 * browser's language).
 *
 * This file also holds digisign-web's one translator, SCSTroubleshoot.translator(tables, preferred): the
 * language choice (preferred, else the browser's languages, else English) and the lookup with English as
 * fallback and {name} placeholders. It lives here because this library must work from a single <script src>;
 * the server's own pages use the same function through static/ui.mjs (pageTranslator).
 */
(function (root) {
  "use strict";

  const TEXT = {
    en: {
      "layer.request": "request",
      "layer.user": "user",
      "layer.policy": "server policy",
      "layer.card": "card",
      "layer.server-error": "server",
      "layer.timeout": "server",
      "layer.not-scs": "port",
      "layer.local-network-access": "browser permission",
      "layer.cors": "CORS",
      "layer.server-or-certificate": "connection",
      "layer.page": "page",
      "request.title": "The server refused the request ({code})",
      "request.fix1": "The server says: {text}",
      "request.fix2": "Check the request's fields: `content` is base64, `contentType` is `data` or `digest`, a digest has the hash's length, SHA-1 works only for `signature`/`signature-plain`, `cms-pades` needs `digest` and `xml` needs `data`.",
      "user.title": "Not signed: the user cancelled, or the PIN was wrong or blocked",
      "user.fix1": "The server says: {text}",
      "user.fix2": "Ask again only when the user wants to; a wrong PIN is never retried automatically. A blocked PIN is unblocked with the PUK code.",
      "policy.title": "The server refused this page ({code})",
      "policy.fix1": "The server says: {text}",
      "policy.fix2": "If the origin is not allowed: add it to `allowedOrigins` in DigiSign.conf and restart the server.",
      "policy.fix3": "The authentication key (`digitalsignature`) signs only `data` that is this page's origin, then `;`, then at least 64 bytes.",
      "policy.fix4": "“Busy” or “too many cancels”: wait a moment and try again.",
      "card.title": "No usable card, or no certificate matches ({code})",
      "card.fix1": "The server says: {text}",
      "card.fix2": "Insert the ID card into the reader and wait until the status shows it.",
      "card.fix3": "Check the request's `selector` (keyusages, keyalgorithms, issuers, akis): each member must match one certificate.",
      "server-error.title": "The card or the server failed ({code})",
      "server-error.fix1": "The server says: {text}",
      "server-error.fix2": "Keep the card in the reader during signing, and look at the server's log.",
      "timeout.title": "The signing server did not answer in time",
      "timeout.fix1": "It may be busy with another request, or hung: wait a moment and try again.",
      "timeout.fix2": "If it stays silent, restart it: `digisign-web serve`.",
      "not-scs.title": "Another program answers on the signing server's port",
      "not-scs.fix1": "Something at {url} answered, but not as an SCS server: {detail}",
      "not-scs.fix2": "Stop that program, or start digisign-web on another port: `digisign-web serve --port 23124`.",
      "lna.title.denied": "The browser does not let this page reach the signing server on this computer",
      "lna.title.prompt": "The browser has not yet let this page reach the signing server on this computer",
      "lna.fix1": "The browser's Local Network Access permission is “{state}” for this site. Click the icon left of the address bar, open the site settings, set “Local network access” to Allow, and reload the page.",
      "lna.fix2": "Then, if it still fails: the server may not be running or its certificate may not be trusted (see below).",
      "cors.title": "The signing server is running, but refused this page's origin",
      "cors.fix1": "The server at {url} answers, but its CORS answer did not allow {origin}.",
      "cors.fix2": "With digisign-web: add the origin to `allowedOrigins` in DigiSign.conf (space-separated wildcards, e.g. `https://*.example.fi`) and restart the server.",
      "cors.fix3": "With another SCS server: check its list of allowed origins.",
      "server.title": "The signing server is not running, or this browser does not trust its certificate",
      "server.fix1": "Start the server: `digisign-web serve` (with no card: `digisign-web serve --virtual-card fineid-v4`).",
      "server.fix2": "Let this browser trust the server's local certificate: `digisign-web trust install`, then restart the browser.",
      "server.fix3": "Open {url} in a new tab and look for a certificate warning: if there is one, the certificate is not trusted yet.",
      "page.title": "The page failed before anything reached the server",
      "page.fix1": "{text}",
      "detail.lna": "Local Network Access permission: {state}",
      "detail.noCors": "no-cors probe of {url}: {result}",
      "detail.up": "answered",
      "detail.down": "failed",
    },
    fi: {
      "layer.request": "pyyntö",
      "layer.user": "käyttäjä",
      "layer.policy": "palvelimen käytäntö",
      "layer.card": "kortti",
      "layer.server-error": "palvelin",
      "layer.timeout": "palvelin",
      "layer.not-scs": "portti",
      "layer.local-network-access": "selaimen lupa",
      "layer.cors": "CORS",
      "layer.server-or-certificate": "yhteys",
      "layer.page": "sivu",
      "request.title": "Palvelin hylkäsi pyynnön ({code})",
      "request.fix1": "Palvelin sanoo: {text}",
      "request.fix2": "Tarkista pyynnön kentät: `content` on base64-muodossa, `contentType` on `data` tai `digest`, tiivisteen pituus vastaa algoritmia, SHA-1 käy vain tyypeille `signature`/`signature-plain`, `cms-pades` vaatii `digest`-tyypin ja `xml` `data`-tyypin.",
      "user.title": "Ei allekirjoitettu: käyttäjä peruutti, tai PIN-koodi oli väärä tai lukittu",
      "user.fix1": "Palvelin sanoo: {text}",
      "user.fix2": "Pyydä uudelleen vain käyttäjän halutessa; väärää PIN-koodia ei koskaan yritetä automaattisesti uudelleen. Lukittu PIN-koodi avataan PUK-koodilla.",
      "policy.title": "Palvelin hylkäsi tämän sivun ({code})",
      "policy.fix1": "Palvelin sanoo: {text}",
      "policy.fix2": "Jos alkuperää ei sallita: lisää se DigiSign.conf-tiedoston `allowedOrigins`-asetukseen ja käynnistä palvelin uudelleen.",
      "policy.fix3": "Tunnistusavain (`digitalsignature`) allekirjoittaa vain `data`-sisällön, joka on tämän sivun alkuperä, sitten `;` ja vähintään 64 tavua.",
      "policy.fix4": "”Varattu” tai ”liian monta peruutusta”: odota hetki ja yritä uudelleen.",
      "card.title": "Käyttökelpoista korttia tai sopivaa varmennetta ei ole ({code})",
      "card.fix1": "Palvelin sanoo: {text}",
      "card.fix2": "Aseta henkilökortti lukijaan ja odota, että tila näyttää sen.",
      "card.fix3": "Tarkista pyynnön `selector` (keyusages, keyalgorithms, issuers, akis): jokaisen ehdon on täsmättävä samaan varmenteeseen.",
      "server-error.title": "Kortti tai palvelin epäonnistui ({code})",
      "server-error.fix1": "Palvelin sanoo: {text}",
      "server-error.fix2": "Pidä kortti lukijassa allekirjoituksen ajan ja katso palvelimen lokia.",
      "timeout.title": "Allekirjoituspalvelin ei vastannut ajoissa",
      "timeout.fix1": "Se voi olla varattu toisella pyynnöllä tai jumissa: odota hetki ja yritä uudelleen.",
      "timeout.fix2": "Jos se ei vastaa, käynnistä se uudelleen: `digisign-web serve`.",
      "not-scs.title": "Allekirjoituspalvelimen portissa vastaa toinen ohjelma",
      "not-scs.fix1": "Osoitteessa {url} vastasi jokin muu kuin SCS-palvelin: {detail}",
      "not-scs.fix2": "Pysäytä se ohjelma tai käynnistä digisign-web toisessa portissa: `digisign-web serve --port 23124`.",
      "lna.title.denied": "Selain ei anna tämän sivun ottaa yhteyttä tämän tietokoneen allekirjoituspalvelimeen",
      "lna.title.prompt": "Selain ei ole vielä antanut tämän sivun ottaa yhteyttä tämän tietokoneen allekirjoituspalvelimeen",
      "lna.fix1": "Selaimen paikallisverkon käyttölupa (Local Network Access) on tälle sivustolle ”{state}”. Napsauta osoiterivin vasemmalla puolella olevaa kuvaketta, avaa sivuston asetukset, salli ”Paikallisverkon käyttö” ja lataa sivu uudelleen.",
      "lna.fix2": "Jos se ei vieläkään toimi: palvelin ei ehkä ole käynnissä tai sen varmenteeseen ei luoteta (katso alla).",
      "cors.title": "Allekirjoituspalvelin on käynnissä, mutta se hylkäsi tämän sivun alkuperän",
      "cors.fix1": "Palvelin osoitteessa {url} vastaa, mutta sen CORS-vastaus ei sallinut alkuperää {origin}.",
      "cors.fix2": "digisign-web: lisää alkuperä DigiSign.conf-tiedoston `allowedOrigins`-asetukseen (välilyönnein eroteltuja jokerimerkkejä, esim. `https://*.example.fi`) ja käynnistä palvelin uudelleen.",
      "cors.fix3": "Muu SCS-palvelin: tarkista sen sallittujen alkuperien luettelo.",
      "server.title": "Allekirjoituspalvelin ei ole käynnissä, tai tämä selain ei luota sen varmenteeseen",
      "server.fix1": "Käynnistä palvelin: `digisign-web serve` (ilman korttia: `digisign-web serve --virtual-card fineid-v4`).",
      "server.fix2": "Anna tämän selaimen luottaa palvelimen paikalliseen varmenteeseen: `digisign-web trust install`, ja käynnistä selain uudelleen.",
      "server.fix3": "Avaa {url} uudessa välilehdessä ja katso, näkyykö varmennevaroitus: jos näkyy, varmenteeseen ei vielä luoteta.",
      "page.title": "Sivu epäonnistui ennen kuin mitään lähti palvelimelle",
      "page.fix1": "{text}",
      "detail.lna": "Paikallisverkon käyttölupa: {state}",
      "detail.noCors": "no-cors-koetus {url}: {result}",
      "detail.up": "vastasi",
      "detail.down": "epäonnistui",
    },
    sv: {
      "layer.request": "begäran",
      "layer.user": "användare",
      "layer.policy": "serverns policy",
      "layer.card": "kort",
      "layer.server-error": "server",
      "layer.timeout": "server",
      "layer.not-scs": "port",
      "layer.local-network-access": "webbläsarens tillstånd",
      "layer.cors": "CORS",
      "layer.server-or-certificate": "anslutning",
      "layer.page": "sida",
      "request.title": "Servern avvisade begäran ({code})",
      "request.fix1": "Servern säger: {text}",
      "request.fix2": "Kontrollera fälten: `content` är base64, `contentType` är `data` eller `digest`, ett fingeravtryck har hashens längd, SHA-1 fungerar bara för `signature`/`signature-plain`, `cms-pades` kräver `digest` och `xml` kräver `data`.",
      "user.title": "Inte signerat: användaren avbröt, eller PIN-koden var fel eller spärrad",
      "user.fix1": "Servern säger: {text}",
      "user.fix2": "Fråga igen bara när användaren vill; en fel PIN-kod prövas aldrig om automatiskt. En spärrad PIN-kod låses upp med PUK-koden.",
      "policy.title": "Servern avvisade den här sidan ({code})",
      "policy.fix1": "Servern säger: {text}",
      "policy.fix2": "Om ursprunget inte är tillåtet: lägg till det i `allowedOrigins` i DigiSign.conf och starta om servern.",
      "policy.fix3": "Autentiseringsnyckeln (`digitalsignature`) signerar bara `data` som är sidans ursprung, sedan `;` och minst 64 byte till.",
      "policy.fix4": "”Upptagen” eller ”för många avbrott”: vänta en stund och försök igen.",
      "card.title": "Inget användbart kort, eller inget certifikat passar ({code})",
      "card.fix1": "Servern säger: {text}",
      "card.fix2": "Sätt in id-kortet i läsaren och vänta tills statusen visar det.",
      "card.fix3": "Kontrollera begärans `selector` (keyusages, keyalgorithms, issuers, akis): varje villkor måste passa samma certifikat.",
      "server-error.title": "Kortet eller servern misslyckades ({code})",
      "server-error.fix1": "Servern säger: {text}",
      "server-error.fix2": "Låt kortet sitta kvar i läsaren under signeringen och titta i serverns logg.",
      "timeout.title": "Signeringsservern svarade inte i tid",
      "timeout.fix1": "Den kan vara upptagen med en annan begäran eller ha hängt sig: vänta en stund och försök igen.",
      "timeout.fix2": "Om den förblir tyst, starta om den: `digisign-web serve`.",
      "not-scs.title": "Ett annat program svarar på signeringsserverns port",
      "not-scs.fix1": "Något på {url} svarade, men inte som en SCS-server: {detail}",
      "not-scs.fix2": "Stoppa det programmet, eller starta digisign-web på en annan port: `digisign-web serve --port 23124`.",
      "lna.title.denied": "Webbläsaren låter inte den här sidan nå signeringsservern på den här datorn",
      "lna.title.prompt": "Webbläsaren har ännu inte låtit den här sidan nå signeringsservern på den här datorn",
      "lna.fix1": "Webbläsarens tillstånd för lokal nätverksåtkomst (Local Network Access) är ”{state}” för webbplatsen. Klicka på ikonen till vänster om adressfältet, öppna webbplatsinställningarna, tillåt ”Lokal nätverksåtkomst” och ladda om sidan.",
      "lna.fix2": "Om det ändå misslyckas: servern kanske inte körs eller dess certifikat är inte betrott (se nedan).",
      "cors.title": "Signeringsservern körs, men avvisade sidans ursprung",
      "cors.fix1": "Servern på {url} svarar, men dess CORS-svar tillät inte {origin}.",
      "cors.fix2": "Med digisign-web: lägg till ursprunget i `allowedOrigins` i DigiSign.conf (mellanslagsseparerade jokertecken, t.ex. `https://*.example.fi`) och starta om servern.",
      "cors.fix3": "Med en annan SCS-server: kontrollera dess lista över tillåtna ursprung.",
      "server.title": "Signeringsservern körs inte, eller så litar webbläsaren inte på dess certifikat",
      "server.fix1": "Starta servern: `digisign-web serve` (utan kort: `digisign-web serve --virtual-card fineid-v4`).",
      "server.fix2": "Låt webbläsaren lita på serverns lokala certifikat: `digisign-web trust install`, och starta om webbläsaren.",
      "server.fix3": "Öppna {url} i en ny flik och se om en certifikatvarning visas: i så fall är certifikatet inte betrott ännu.",
      "page.title": "Sidan misslyckades innan något nådde servern",
      "page.fix1": "{text}",
      "detail.lna": "Tillstånd för lokal nätverksåtkomst: {state}",
      "detail.noCors": "no-cors-prov av {url}: {result}",
      "detail.up": "svarade",
      "detail.down": "misslyckades",
    },
  };

  const DEFAULT_BASE = "https://localhost:53952";

  /**
   * The language to show: the first of `preferred` (a setting; may be empty) and the browser's languages whose
   * first two letters name a table in `tables`; else "en".
   */
  function chooseLanguage(tables, preferred) {
    const nav = root.navigator || {};
    const wanted = [preferred].concat(nav.languages || [nav.language]);
    for (const tag of wanted) {
      const code = String(tag || "").slice(0, 2).toLowerCase();
      if (tables[code]) return code;
    }
    return "en";
  }

  /**
   * A translator over `tables` ({en: {key: text}, fi: {...}, ...}): {lang, t}. t(key, vars) is the text in
   * `lang`, else in English, else the key itself, with every {name} replaced by String(vars.name).
   */
  function translator(tables, preferred) {
    const lang = chooseLanguage(tables, preferred);
    const table = tables[lang] || {};
    const english = tables.en || {};
    const t = (key, vars) => {
      let text = table[key] !== undefined ? table[key] : english[key] !== undefined ? english[key] : key;
      for (const name of Object.keys(vars || {})) text = text.split("{" + name + "}").join(String(vars[name]));
      return text;
    };
    return { lang: lang, t: t };
  }

  function isLoopbackHost(host) {
    const name = String(host || "").toLowerCase();
    return name === "localhost" || name.endsWith(".localhost") || name === "[::1]" || name === "::1" ||
      /^127\.\d+\.\d+\.\d+$/.test(name);
  }

  /** The Local Network Access permission state: "granted", "denied", "prompt", or "unsupported". */
  async function localNetworkAccessState() {
    try {
      const status = await root.navigator.permissions.query({ name: "local-network-access" });
      return status.state;
    } catch (e) {
      return "unsupported";  // an unknown permission name is a TypeError in browsers without LNA
    }
  }

  /** GET <base>/version with mode "no-cors": resolves true when the server answered at all over trusted TLS. */
  async function noCorsProbe(base, timeout) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    try {
      await root.fetch(base + "/version", { mode: "no-cors", cache: "no-store", credentials: "omit",
        signal: controller.signal });
      return true;
    } catch (e) {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  function originOf(url) {
    try {
      return new URL(url).origin;
    } catch (e) {
      return null;
    }
  }

  /** The bases worth probing: options.base(s); else the URLs scs.js tried; else scs.js's cached base. */
  function basesFor(error, options) {
    const bases = [];
    const add = (url) => {
      const origin = url && originOf(url);
      if (origin && !bases.includes(origin)) bases.push(origin);
    };
    (Array.isArray(options.bases) ? options.bases : []).forEach(add);
    add(options.base);
    if (!bases.length) {
      const diagnosis = error && Array.isArray(error.diagnosis) ? error.diagnosis : [];
      diagnosis.filter((d) => d.kind === "network").forEach((d) => add(d.url));
    }
    if (!bases.length && root.SCS && typeof root.SCS.getBase === "function") add(root.SCS.getBase());
    if (!bases.length) add(DEFAULT_BASE);
    return bases.slice(0, 6);
  }

  function fromAnswer(error, t) {
    const code = error.reasonCode;
    const vars = { code: code, text: error.reasonText };
    let layer;
    let fixes;
    if (code === 401) {
      layer = "user";
      fixes = [t("user.fix1", vars), t("user.fix2")];
    } else if (code === 403) {
      layer = "policy";
      fixes = [t("policy.fix1", vars), t("policy.fix2"), t("policy.fix3"), t("policy.fix4")];
    } else if (code === 404) {
      layer = "card";
      fixes = [t("card.fix1", vars), t("card.fix2"), t("card.fix3")];
    } else if (code === 400 || code === 413 || code === 501) {
      layer = "request";
      fixes = [t("request.fix1", vars), t("request.fix2")];
    } else {
      layer = "server-error";
      fixes = [t("server-error.fix1", vars), t("server-error.fix2")];
    }
    return { layer: layer, layerName: t("layer." + layer), title: t(layer + ".title", vars), fixes: fixes,
      details: [code + " " + error.reasonText] };
  }

  /**
   * Explains an error from SCS.discover/version/sign (or anything else thrown around them).
   * @param {*} error
   * @param {{lang?: string, base?: string, bases?: string[], timeout?: number, checkLocalNetworkAccess?: boolean}}
   *   [options] base(s): the server address(es) to probe (default: the ones scs.js tried, else
   *   https://localhost:53952); timeout: ms per probe (3000); checkLocalNetworkAccess: query the permission
   *   (default: unless the page itself is on a loopback address, where the permission does not apply)
   * @returns {Promise<{layer: string, layerName: string, title: string, fixes: string[], details: string[],
   *   localNetworkAccess: string, reachable: string|null}>}
   */
  async function diagnose(error, options) {
    const opts = options || {};
    const t = translator(TEXT, opts.lang).t;
    const isScsError = error && (error.name === "SCSError" || (root.SCS && error instanceof root.SCS.SCSError));
    if (isScsError && error.response && typeof error.reasonCode === "number") {
      return Object.assign({ localNetworkAccess: null, reachable: null }, fromAnswer(error, t));
    }
    if (!isScsError) {
      const text = String(error && error.message || error);
      return { layer: "page", layerName: t("layer.page"), title: t("page.title"), fixes: [t("page.fix1", { text })],
        details: [String(error && error.name || "Error") + ": " + text], localNetworkAccess: null, reachable: null };
    }
    const details = (Array.isArray(error.diagnosis) ? error.diagnosis : [])
      .map((d) => d.url + ": " + d.kind + (d.detail ? " (" + d.detail + ")" : ""));
    if (error.cause) details.push(String(error.cause && error.cause.message || error.cause));
    const diagnosis = Array.isArray(error.diagnosis) ? error.diagnosis : [];
    const pick = (layer, fixes, vars, prefix) => ({ layer: layer, layerName: t("layer." + layer),
      title: t((prefix || layer) + ".title", vars), fixes: fixes, details: details });

    const notScs = diagnosis.find((d) => d.kind === "not-scs" || /^http-/.test(d.kind));
    if (notScs && !diagnosis.some((d) => d.kind === "network" || d.kind === "timeout")) {
      const vars = { url: notScs.url, detail: notScs.detail || notScs.kind };
      return Object.assign(pick("not-scs", [t("not-scs.fix1", vars), t("not-scs.fix2")]),
        { localNetworkAccess: null, reachable: notScs.url });
    }
    if (diagnosis.length && diagnosis.every((d) => d.kind === "timeout")) {
      return Object.assign(pick("timeout", [t("timeout.fix1"), t("timeout.fix2")]),
        { localNetworkAccess: null, reachable: null });
    }

    const bases = basesFor(error, opts);
    const pageIsLocal = root.location ? isLoopbackHost(root.location.hostname) : false;
    const checkLna = opts.checkLocalNetworkAccess !== undefined ? Boolean(opts.checkLocalNetworkAccess) : !pageIsLocal;
    const [lna, probes] = await Promise.all([
      checkLna ? localNetworkAccessState() : Promise.resolve("not needed"),
      Promise.all(bases.map((base) => noCorsProbe(base, opts.timeout || 3000))),
    ]);
    details.push(t("detail.lna", { state: lna }));
    bases.forEach((base, i) => details.push(t("detail.noCors", { url: base, result: t(probes[i] ? "detail.up" : "detail.down") })));
    const reachable = bases.find((base, i) => probes[i]) || null;
    const url = bases[0] + "/";
    const serverFixes = [t("server.fix1"), t("server.fix2"), t("server.fix3", { url: url })];
    let result;
    if (reachable) {
      const origin = root.location ? root.location.origin : "this page";
      result = pick("cors", [t("cors.fix1", { url: reachable, origin: origin }), t("cors.fix2"), t("cors.fix3")]);
    } else if (lna === "denied" || lna === "prompt") {
      result = { layer: "local-network-access", layerName: t("layer.local-network-access"),
        title: t("lna.title." + lna), fixes: [t("lna.fix1", { state: lna }), t("lna.fix2")].concat(serverFixes),
        details: details };
    } else {
      result = pick("server-or-certificate", serverFixes, {}, "server");
    }
    return Object.assign(result, { localNetworkAccess: lna, reachable: reachable });
  }

  /** Appends text to a node: `backticks` become <code>, https:// addresses become links. Never HTML. */
  function appendRich(node, text) {
    String(text).split("`").forEach((part, index) => {
      if (index % 2 === 1) {
        const code = root.document.createElement("code");
        code.textContent = part;
        node.append(code);
        return;
      }
      const pieces = part.split(/(https?:\/\/[^\s“”"')]+[^\s“”"').,:;])/);
      pieces.forEach((piece, j) => {
        if (j % 2 === 1) {
          const link = root.document.createElement("a");
          link.href = piece;
          link.target = "_blank";
          link.rel = "noopener";
          link.textContent = piece;
          node.append(link);
        } else if (piece) {
          node.append(root.document.createTextNode(piece));
        }
      });
    });
  }

  /**
   * Renders a diagnose() result into an element (replacing its children): a heading, the fixes as a numbered
   * list, and the raw observations in a <details>. For pages that do not want to build their own markup.
   */
  function render(result, element, options) {
    const opts = options || {};
    const doc = root.document;
    const heading = doc.createElement(opts.heading || "h3");
    heading.textContent = result.title;
    const list = doc.createElement("ol");
    for (const fix of result.fixes) {
      const item = doc.createElement("li");
      appendRich(item, fix);
      list.append(item);
    }
    element.replaceChildren(heading, list);
    if (result.details && result.details.length && opts.details !== false) {
      const more = doc.createElement("details");
      const summary = doc.createElement("summary");
      summary.textContent = opts.detailsLabel || "Details";
      const pre = doc.createElement("pre");
      pre.textContent = result.details.join("\n");
      more.append(summary, pre);
      element.append(more);
    }
    return element;
  }

  root.SCSTroubleshoot = Object.freeze({ diagnose: diagnose, render: render, appendRich: appendRich,
    localNetworkAccessState: localNetworkAccessState, noCorsProbe: noCorsProbe, translator: translator, TEXT: TEXT });
})(typeof window !== "undefined" ? window : globalThis);
