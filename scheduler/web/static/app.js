// The dashboard's only script (served from /static: the Content-Security-Policy forbids
// inline script). Two jobs: follow a running run through server-sent events, and refresh
// pages that ask for it (data-refresh on <main>), both by replacing DOM text, never by
// writing HTML from data.
"use strict";

function replaceMain(html) {
  // The server's HTML is escaped already; DOMParser runs no script, and the CSP would block it.
  const doc = new DOMParser().parseFromString(html, "text/html");
  const fresh = doc.getElementById("main");
  const main = document.getElementById("main");
  if (fresh && main) {
    main.replaceWith(document.adoptNode(fresh));
    start();
  }
}

function busy() {
  const el = document.activeElement;
  return el && el.closest && el.closest("#main form") && el.tagName !== "BUTTON";
}

let timer = null;

function scheduleRefresh() {
  const main = document.getElementById("main");
  const every = main ? parseFloat(main.dataset.refresh || "0") : 0;
  if (timer) clearTimeout(timer);
  if (!every) return;
  timer = setTimeout(async () => {
    if (document.hidden || busy()) { scheduleRefresh(); return; }
    try {
      const response = await fetch(location.href, { headers: { "x-refresh": "1" } });
      if (response.ok) { replaceMain(await response.text()); return; }
    } catch (e) { /* the server went away for a moment: try again later */ }
    scheduleRefresh();
  }, every * 1000);
}

function follow(head) {
  const source = new EventSource(head.dataset.live);
  const output = document.getElementById("output");
  const status = document.getElementById("run-status");
  const bytes = document.getElementById("output-bytes");
  source.addEventListener("output", (event) => {
    const data = JSON.parse(event.data);
    if (output) output.textContent = visible(data.output);
    if (status) {
      status.textContent = "";
      const badge = document.createElement("span");
      badge.className = "st st-" + data.status;
      badge.textContent = data.status;
      status.appendChild(badge);
    }
    if (bytes) bytes.textContent = data.bytes ? "(" + data.bytes + " bytes written)" : "";
    const none = document.getElementById("no-output");
    if (none && data.output) none.remove();
  });
  source.addEventListener("final", async () => {
    source.close();
    const response = await fetch(location.href);
    if (response.ok) replaceMain(await response.text());
  });
}

// The same mapping as the server's `visible` filter: control characters as symbols.
function visible(text) {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (ch) =>
    ch === "\u007f" ? "\u2421" : String.fromCharCode(0x2400 + ch.charCodeAt(0)));
}

function start() {
  const head = document.querySelector("[data-live]");
  if (head) follow(head);
  scheduleRefresh();
}

document.addEventListener("DOMContentLoaded", start);
