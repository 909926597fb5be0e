// The relying party's page logic, shared by index.html (scs.js as a classic script) and module.html (scs.mjs).
// installRelyingParty(scs, loadedAs) wires the form and exposes window.run* functions for the tests; each
// returns {ok: true, value} or {ok: false, error} and also shows the outcome in the page.
(function () {
  "use strict";

  function describe(error) {
    return {
      name: error && error.name, message: String(error && error.message || error),
      isSCSError: Boolean(error && error.reasonCode !== undefined),
      reasonCode: error && error.reasonCode, reasonText: error && error.reasonText,
      diagnosis: error && error.diagnosis, response: error && error.response,
    };
  }

  function show(id, text) {
    document.getElementById(id).textContent = text;
  }

  window.installRelyingParty = function (scs, loadedAs) {
    window.loadedAs = loadedAs;
    show("loaded-as", loadedAs);

    async function run(label, action) {
      show("status", label + "…");
      show("result", "");
      show("error", "");
      document.body.dataset.state = "busy";
      try {
        const value = await action();
        show("status", label + ": ok");
        show("result", JSON.stringify(value, null, 2));
        document.body.dataset.state = "ok";
        return { ok: true, value: value };
      } catch (error) {
        const info = describe(error);
        show("status", label + ": failed");
        show("error", info.isSCSError ? "reasonCode " + info.reasonCode + ": " + info.reasonText : info.message);
        show("result", JSON.stringify(info, null, 2));
        document.body.dataset.state = "failed";
        return { ok: false, error: info };
      }
    }

    window.runDiscover = (options) => run("discover", () => scs.discover(options));
    window.runWaitForCard = (options) => run("waitForCard", () => scs.waitForCard(options));
    window.runSign = (request) => run("sign", () => scs.sign(request));
    window.runSignText = (text, extra) => run("sign text", () =>
      scs.sign(Object.assign({ version: "1.1", content: scs.base64FromText(text) }, extra || {})));
    window.runDigestSign = (text, algorithm, extra) => run("sign digest", async () => {
      const file = new File([text], "document.txt", { type: "text/plain" });
      const content = await scs.digestFile(file, algorithm);
      return scs.sign(Object.assign({ version: "1.1", content: content, contentType: "digest",
                                     hashAlgorithm: algorithm }, extra || {}));
    });
    window.runHelpers = async () => ({
      text: scs.base64FromText("Hyvää päivää €"),
      bytes: scs.base64FromBytes(new Uint8Array([0, 1, 2, 250, 255])),
      buffer: scs.base64FromBytes(new Uint8Array([104, 105]).buffer),
      file: await scs.base64FromFile(new Blob(["file ✓"])),
      sha256: await scs.digestBytes(new TextEncoder().encode("abc"), "SHA256"),
      sha512: await scs.digestFile(new Blob(["abc"]), "SHA-512"),
      list: scs.parseList("SHA1, SHA256,signature"),
      errorIsError: new scs.SCSError(400, "x") instanceof Error,
    });

    document.getElementById("sign-form").addEventListener("submit", (event) => {
      event.preventDefault();
      window.runSignText(document.getElementById("text").value,
                         { selector: { keyusages: ["nonrepudiation"] } });
    });
    document.getElementById("find").addEventListener("click", () => window.runDiscover());
    document.body.dataset.ready = "1";
  };
})();
