/* digisign-web UI strings in English, Finnish and Swedish.
 * The language follows the server's Language setting, else the browser. Classic script: sets window.I18N. */
(function (root) {
  "use strict";
  const STRINGS = {
    en: {
      product: "digisign-web",
      loading: "Loading the request…",
      requestFrom: "Signature request from",
      noOrigin: "This request did not come from a web page but from a program on this computer.",
      localProgram: "A program on this computer",
      what: "What",
      fingerprint: "Fingerprint",
      relaxed: "The page asked for another key type; your card has none, so these keys are offered instead.",
      chooseCertificate: "Certificate",
      pin: "PIN",
      pinRule: "{min}–{max} digits",
      pinRuleAny: "{min}–{max} characters",
      triesLeft: "{n} tries left",
      oneTryLeft: "1 try left – after that the PIN is blocked",
      pinKept: "The card still has this PIN: no need to enter it again.",
      blocked: "This PIN is blocked. Unblock it with the PUK code (for example in DVV's card software) and try again.",
      wrongPin: "Wrong PIN. {n} tries left.",
      pinTooShort: "The PIN must have {min}–{max} digits.",
      pinDigits: "The PIN has digits only.",
      cancel: "Cancel",
      sign: "Sign",
      signing: "Signing…",
      signed: "Signed. The page that asked has the signature.",
      cancelled: "Cancelled. Nothing was signed.",
      failed: "Not signed: {text}",
      expired: "This dialog has expired or was already used.",
      closeTab: "You can close this tab.",
      expires: "expires {date}",
      expiresSoon: "expires soon ({date})",
      roleSignature: "Signature (non-repudiation)",
      roleAuthentication: "Authentication",
      bytes: "{n} bytes",
      digestOf: "a {hash} digest",
      signAs: "{what} as {type}",
      issuedBy: "issued by {issuer}",
    },
    fi: {
      product: "digisign-web",
      loading: "Ladataan pyyntöä…",
      requestFrom: "Allekirjoituspyyntö osoitteesta",
      noOrigin: "Pyyntö ei tullut verkkosivulta vaan tämän tietokoneen ohjelmalta.",
      localProgram: "Tämän tietokoneen ohjelma",
      what: "Mitä",
      fingerprint: "Tiiviste",
      relaxed: "Sivu pyysi toisen tyyppistä avainta; kortillasi ei ole sellaista, joten tarjolla ovat nämä.",
      chooseCertificate: "Varmenne",
      pin: "PIN-koodi",
      pinRule: "{min}–{max} numeroa",
      pinRuleAny: "{min}–{max} merkkiä",
      triesLeft: "{n} yritystä jäljellä",
      oneTryLeft: "1 yritys jäljellä – sen jälkeen PIN-koodi lukittuu",
      pinKept: "Kortti muistaa tämän PIN-koodin: sitä ei tarvitse syöttää uudelleen.",
      blocked: "PIN-koodi on lukittu. Avaa se PUK-koodilla (esimerkiksi DVV:n kortinlukijaohjelmistolla) ja yritä uudelleen.",
      wrongPin: "Väärä PIN-koodi. {n} yritystä jäljellä.",
      pinTooShort: "PIN-koodissa on {min}–{max} numeroa.",
      pinDigits: "PIN-koodissa on vain numeroita.",
      cancel: "Peruuta",
      sign: "Allekirjoita",
      signing: "Allekirjoitetaan…",
      signed: "Allekirjoitettu. Pyytänyt sivu sai allekirjoituksen.",
      cancelled: "Peruutettu. Mitään ei allekirjoitettu.",
      failed: "Ei allekirjoitettu: {text}",
      expired: "Tämä ikkuna on vanhentunut tai jo käytetty.",
      closeTab: "Voit sulkea tämän välilehden.",
      expires: "voimassa {date} asti",
      expiresSoon: "vanhenee pian ({date})",
      roleSignature: "Allekirjoitus (kiistämättömyys)",
      roleAuthentication: "Tunnistautuminen",
      bytes: "{n} tavua",
      digestOf: "{hash}-tiiviste",
      signAs: "{what} muodossa {type}",
      issuedBy: "myöntäjä {issuer}",
    },
    sv: {
      product: "digisign-web",
      loading: "Begäran laddas…",
      requestFrom: "Signeringsbegäran från",
      noOrigin: "Begäran kom inte från en webbsida utan från ett program på den här datorn.",
      localProgram: "Ett program på den här datorn",
      what: "Vad",
      fingerprint: "Fingeravtryck",
      relaxed: "Sidan bad om en annan nyckeltyp; kortet har ingen, så dessa nycklar erbjuds i stället.",
      chooseCertificate: "Certifikat",
      pin: "PIN-kod",
      pinRule: "{min}–{max} siffror",
      pinRuleAny: "{min}–{max} tecken",
      triesLeft: "{n} försök kvar",
      oneTryLeft: "1 försök kvar – därefter spärras PIN-koden",
      pinKept: "Kortet minns den här PIN-koden: du behöver inte ange den igen.",
      blocked: "PIN-koden är spärrad. Lås upp den med PUK-koden (till exempel i DVV:s kortprogram) och försök igen.",
      wrongPin: "Fel PIN-kod. {n} försök kvar.",
      pinTooShort: "PIN-koden har {min}–{max} siffror.",
      pinDigits: "PIN-koden består bara av siffror.",
      cancel: "Avbryt",
      sign: "Signera",
      signing: "Signerar…",
      signed: "Signerat. Sidan som bad om det har fått signaturen.",
      cancelled: "Avbrutet. Inget signerades.",
      failed: "Inte signerat: {text}",
      expired: "Den här dialogen har gått ut eller redan använts.",
      closeTab: "Du kan stänga den här fliken.",
      expires: "giltigt till {date}",
      expiresSoon: "går snart ut ({date})",
      roleSignature: "Signatur (oavvislighet)",
      roleAuthentication: "Autentisering",
      bytes: "{n} byte",
      digestOf: "ett {hash}-fingeravtryck",
      signAs: "{what} som {type}",
      issuedBy: "utfärdat av {issuer}",
    },
  };

  function pick(preferred) {
    const wanted = [preferred, ...(root.navigator ? root.navigator.languages || [root.navigator.language] : [])];
    for (const tag of wanted) {
      const code = String(tag || "").slice(0, 2).toLowerCase();
      if (STRINGS[code]) return code;
    }
    return "en";
  }

  function make(preferred) {
    const lang = pick(preferred);
    const table = STRINGS[lang];
    const t = (key, vars) => {
      let text = table[key] ?? STRINGS.en[key] ?? key;
      for (const [name, value] of Object.entries(vars || {})) text = text.split(`{${name}}`).join(String(value));
      return text;
    };
    const apply = (scope) => {
      for (const el of (scope || root.document).querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
      if (root.document) root.document.documentElement.lang = lang;
    };
    return { lang, t, apply };
  }

  root.I18N = { STRINGS, make, pick };
})(typeof window !== "undefined" ? window : globalThis);
