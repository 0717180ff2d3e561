// Tally dashboard: the only script. It refreshes a motion's live results while the vote is open;
// every page works without it.
"use strict";
(function () {
  const REFRESH_MS = 3000;
  function refresh(section) {
    const url = section.getAttribute("data-live");
    if (!url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        const box = document.createElement("div");
        box.innerHTML = html; // our own server's escaped markup, same origin
        const fresh = box.querySelector("#results");
        if (fresh) { section.replaceWith(fresh); schedule(fresh); }
        else schedule(section);
      })
      .catch(() => schedule(section));
  }
  function schedule(section) {
    if (section.getAttribute("data-live")) setTimeout(() => refresh(section), REFRESH_MS);
  }
  document.addEventListener("DOMContentLoaded", () => {
    const section = document.getElementById("results");
    if (section) schedule(section);
  });
})();
