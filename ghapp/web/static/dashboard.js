// ghapp dashboard: confirmation before destroy/redeploy, and the live log of a running run.
// Everything works without this file except the live log (the server asks for confirmation on a page).
"use strict";

// Action buttons carry data-confirm; a confirmed submit tells the server so, which then skips its own page.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.dataset.confirm;
  if (!question) return;
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  event.target.elements.confirmed.value = "yes";
});

(function liveLog() {
  const log = document.getElementById("log");
  if (!log || log.dataset.live !== "true") return watchForRuns();
  const runId = log.dataset.run;
  let after = Number(log.dataset.after);
  let done = false;

  function append(lines) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const entry of lines) {
      if (entry.seq <= after) continue;
      log.appendChild(document.createTextNode(entry.line + "\n"));
      after = entry.seq;
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function finish(end) {
    if (done) return;
    done = true;
    log.dataset.live = "false";
    setBadge(document.getElementById("run-state"), end.state, { succeeded: "active", failed: "failed" }[end.state] || "pending");
    setBadge(document.getElementById("env-status"), end.status, end.status);
    note("Run " + end.state + (end.error ? ": " + end.error : "") + ".");
  }

  function poll() {  // the fallback for proxies that buffer or cut event streams
    if (done) return;
    fetch("/api/runs/" + runId + "/log?after=" + after, { headers: { Accept: "application/json" } })
      .then((response) => response.json())
      .then((body) => {
        append(body.lines);
        if (body.run.state !== "running" && body.lines.length === 0) {
          return fetch("/api/environments/" + log.closest("main").querySelector("#env").dataset.env)
            .then((r) => r.json())
            .then((env) => finish({ state: body.run.state, error: body.run.error, status: env.status }));
        }
        setTimeout(poll, 1000);
      })
      .catch(() => setTimeout(poll, 3000));
  }

  if (!("EventSource" in window)) return poll();
  const source = new EventSource("/api/runs/" + runId + "/stream?after=" + after);
  let greeted = false;
  const fallback = () => { source.close(); if (!done) poll(); };
  const noHello = setTimeout(() => { if (!greeted) fallback(); }, 5000);
  source.addEventListener("hello", () => { greeted = true; clearTimeout(noHello); });
  source.addEventListener("lines", (e) => append(JSON.parse(e.data)));
  source.addEventListener("end", (e) => { source.close(); finish(JSON.parse(e.data)); });
  source.onerror = () => { if (!greeted || source.readyState === EventSource.CLOSED) fallback(); };
})();

// An environment due to converge without a running run: reload when its next run starts (or it converges).
function watchForRuns() {
  const env = document.getElementById("env");
  if (!env || env.dataset.watch !== "true") return;
  const timer = setInterval(() => {
    fetch("/api/environments/" + env.dataset.env)
      .then((r) => r.json())
      .then((body) => {
        const latest = body.runs.length ? String(body.runs[0].id) : "";
        if (latest !== env.dataset.latestRun || body.converged) {
          clearInterval(timer);
          window.location.reload();
        }
      })
      .catch(() => {});
  }, 2000);
}

const SYMBOLS = { pending: "◷", creating: "▶", active: "●", destroying: "▼", destroyed: "○", failed: "✕" };

function setBadge(badge, word, cls) {
  if (!badge) return;
  badge.className = "status s-" + cls;
  if (badge.id === "env-status") badge.firstChild.textContent = SYMBOLS[cls] || "";
  badge.lastChild.textContent = " " + word;
}

function note(text) {
  const el = document.getElementById("log-note");
  if (el) el.textContent = text;
}
