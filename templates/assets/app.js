// scimbridge admin UI: copy buttons and a polite auto-refresh. No framework, no build
// step; every page works without it (it only adds conveniences).
(function () {
  "use strict";
  var live = document.getElementById("live");
  function say(text) {
    if (live) { live.textContent = ""; setTimeout(function () { live.textContent = text; }, 30); }
  }

  // Copy buttons: data-copy holds the value; the clipboard API needs a secure context,
  // so fall back to a selected textarea elsewhere (plain http on a LAN).
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var ta = document.createElement("textarea");
      ta.value = text; ta.setAttribute("readonly", ""); ta.style.position = "fixed"; ta.style.opacity = "0";
      document.body.appendChild(ta); ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-copy]");
    if (!b) { return; }
    var original = b.textContent;
    copy(b.getAttribute("data-copy")).then(function () {
      b.textContent = "Copied"; say("Copied " + b.getAttribute("data-copy"));
    }, function () {
      b.textContent = "Select and copy"; say("Copying failed; select the value and copy it");
    });
    setTimeout(function () { b.textContent = original; }, 1500);
  });

  // Auto-refresh (pages with data-refresh on <body>): reload every N seconds, but never
  // while the person is editing a form (focus in a field, or anything typed and not sent)
  // nor while the tab is hidden.
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    var dirty = false;
    document.addEventListener("input", function () { dirty = true; });
    document.addEventListener("submit", function () { dirty = false; });
    var note = document.getElementById("refresh-note");
    setInterval(function () {
      var a = document.activeElement;
      var editing = a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
      if (dirty || editing) {
        if (note) { note.textContent = "Auto-refresh paused while you edit."; }
        return;
      }
      if (document.visibilityState === "visible") { window.location.reload(); }
    }, every * 1000);
  }
})();
