/* WebSigner result pages: hand the result back to the relying party.
 * form_post: submit the hidden form to returnUrl (a <noscript> button does the same by hand).
 * post_message: post the result to window.opener at the relying party's origin only, then close. */
(function () {
  "use strict";
  const form = document.getElementById("websigner-form");
  if (form) {
    form.submit();
    return;
  }
  const data = document.getElementById("websigner-result");
  if (!data) return;
  const { origin, result } = JSON.parse(data.textContent);
  const status = document.getElementById("websigner-status");
  if (window.opener && !window.opener.closed) {
    window.opener.postMessage(result, origin);
    status.textContent = "The result was returned to the page. This window closes.";
    setTimeout(() => window.close(), 300);
  } else {
    status.textContent = "The page that asked is gone, so the result could not be returned.";
  }
})();
