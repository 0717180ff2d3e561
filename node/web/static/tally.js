// Tally dashboard: the only script. It refreshes a motion's live results while the vote is open, and
// labels each table cell with its column's header (shown when a phone stacks a table's rows);
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
  function label(table) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => {
        if (heads[i] && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", heads[i]);
      });
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("main table").forEach(label);
    const section = document.getElementById("results");
    if (section) schedule(section);
  });
})();
