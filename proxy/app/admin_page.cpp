// The live sessions page served at / on the admin address: one file, no external
// resources (it must work on a machine without internet access). Everything from
// a session is put on the page as text (textContent), never as HTML: IMAP lines
// are the client's and the server's words, not ours. The page holds no token: its
// requests carry the HttpOnly cookie set at "/?token=..." (admin_access.hpp).
#include "proxy/app/admin_api.hpp"

namespace imapscope::app {

const std::string& admin_page() {
  static const std::string page = R"page(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imapscope: live sessions</title>
<style>
body{font:13px system-ui,sans-serif;margin:0;color:#222}
header{background:#234;color:#fff;padding:6px 12px;display:flex;gap:16px;align-items:center}
header h1{font-size:15px;margin:0}
main{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:8px;padding:8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #ddd;white-space:nowrap}
tr[data-id]{cursor:pointer} tr.selected{background:#def} tr.closed{color:#888}
section{min-width:0;overflow:auto}
#conversation{font:12px ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;overflow:auto;max-height:80vh;border:1px solid #ccc;padding:4px}
.C{color:#036}.S{color:#063}.P{color:#a50}.note{color:#777;font-style:italic}.finding{color:#b00;font-weight:bold}.status{font-size:12px}
form{display:inline-flex;gap:4px} input{font:inherit;width:9em}
.down{color:#b00;font-weight:bold}.draining{color:#a50}.up{color:#063}
</style></head><body>
<header><h1>imapscope</h1><span id="status" class="status">connecting…</span></header>
<main>
<section>
<h2>Sessions <small id="count"></small></h2>
<table id="sessions"><thead><tr><th>id</th><th>client address</th><th>user</th><th>client</th><th>state</th>
<th>mailbox</th><th>last command</th><th>cmds</th><th>bytes in/out</th><th>age</th><th>capture</th></tr></thead><tbody></tbody></table>
<div id="backends-section" hidden>
<h2>Backends <small>routing mode: health checks, drain, kick</small></h2>
<table id="backends"><thead><tr><th>backend</th><th>state</th><th>sessions</th><th>last check</th><th>last error</th><th></th></tr></thead><tbody></tbody></table>
</div>
<h2>Captures</h2>
<form id="capture"><input name="user" placeholder="user"><input name="client" placeholder="client family">
<input name="address" placeholder="address/CIDR"><input name="duration_s" placeholder="seconds" value="600">
<button>capture</button></form>
<table id="captures"><thead><tr><th>id</th><th>user</th><th>client</th><th>address</th><th>sessions</th><th>left</th><th></th></tr></thead><tbody></tbody></table>
<h2>Findings <small>costly client behaviour (docs/diagnostics.md)</small></h2>
<table id="findings"><thead><tr><th>when</th><th>session</th><th>user</th><th>client</th><th>finding</th><th>detail</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Conversation <small id="chosen"></small></h2><div id="conversation"></div></section>
</main>
<script>
"use strict";
const hash = new URLSearchParams(location.hash.slice(1));
let chosen = hash.get("session") ? Number(hash.get("session")) : null;
let tail = null, finished = null;  // the live tail; the session whose tail has ended
let lastEvent = 0, tailStart = null;  // of the chosen session: a tail cut by its time limit goes on from there
const json = {"Content-Type": "application/json"};  // changes are JSON (the server refuses others)

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }
function status(text) { document.getElementById("status").textContent = text; }
function age(s) { return s < 90 ? s.toFixed(0) + " s" : s < 5400 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h"; }

function sessionRow(s, closed) {
  const tr = document.createElement("tr");
  tr.dataset.id = s.id;
  if (closed) tr.className = "closed";
  if (s.id === chosen) tr.classList.add("selected");
  const c = s.client;
  cell(tr, s.id); cell(tr, s.client_address); cell(tr, s.user || "");
  cell(tr, c.family + (c.version ? " " + c.version : "") + " (" + c.method + (c.settled ? "" : "?") + ")");
  cell(tr, closed ? "closed: " + s.close_reason : s.state); cell(tr, s.mailbox); cell(tr, s.last_command);
  cell(tr, s.commands); cell(tr, s.bytes.from_client + " / " + s.bytes.from_server); cell(tr, age(s.age_s));
  cell(tr, s.capture ? "#" + s.capture : "");
  tr.addEventListener("click", () => choose(s.id));
  return tr;
}

async function refresh() {
  try {
    const r = await fetch("/api/sessions");
    if (r.status === 401) { status("token needed: reload to log in"); return; }
    if (!r.ok) { status("error " + r.status); return; }
    const data = await r.json();
    const body = document.querySelector("#sessions tbody");
    body.replaceChildren(...data.sessions.map(s => sessionRow(s, false)), ...data.recent.reverse().map(s => sessionRow(s, true)));
    document.getElementById("count").textContent = data.sessions.length + " active, " + data.recent.length + " recently closed";
    status("live, " + new Date().toLocaleTimeString());
    if (chosen !== null && !tail && finished !== chosen) choose(chosen);
    refreshBackends();
    refreshCaptures();
    refreshFindings();
  } catch (e) { status("no answer: " + e); }
}

async function refreshFindings() {
  const r = await fetch("/api/findings");
  if (!r.ok) return;
  const data = await r.json();
  const body = document.querySelector("#findings tbody");
  body.replaceChildren(...data.recent.slice(-50).reverse().map(f => {
    const tr = document.createElement("tr");
    tr.dataset.id = f.session;
    cell(tr, new Date(f.at_ms).toLocaleTimeString()); cell(tr, f.session); cell(tr, f.user || "");
    cell(tr, f.client); cell(tr, f.finding); cell(tr, f.detail).style.whiteSpace = "normal";
    tr.addEventListener("click", () => choose(f.session));
    return tr;
  }));
}

async function refreshCaptures() {
  const r = await fetch("/api/captures");
  if (!r.ok) return;
  const data = await r.json();
  const body = document.querySelector("#captures tbody");
  body.replaceChildren(...data.captures.map(c => {
    const tr = document.createElement("tr");
    cell(tr, c.id); cell(tr, c.user || ""); cell(tr, c.client || ""); cell(tr, c.address || "");
    cell(tr, c.sessions); cell(tr, age(c.remaining_s));
    const button = document.createElement("button"); button.textContent = "stop";
    button.addEventListener("click", async () => { await fetch("/api/captures/" + c.id, {method: "DELETE", headers: json}); refresh(); });
    cell(tr, "").appendChild(button);
    return tr;
  }));
}

// Routing mode only: a 404 (transparent mode) hides the section for good.
let backendsAbsent = false;
async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: json, body: JSON.stringify(body)});
  if (!r.ok) status(path + " refused: " + ((await r.json().catch(() => ({}))).error || r.status));
  return r;
}

function button(text, action) {
  const b = document.createElement("button"); b.textContent = text;
  b.addEventListener("click", async () => { await action(); refresh(); });
  return b;
}

async function refreshBackends() {
  if (backendsAbsent) return;
  const r = await fetch("/api/backends");
  const section = document.getElementById("backends-section");
  if (r.status === 404) { backendsAbsent = true; section.hidden = true; return; }
  if (!r.ok) return;
  const data = await r.json();
  section.hidden = false;
  document.querySelector("#backends tbody").replaceChildren(...data.backends.map(b => {
    const tr = document.createElement("tr");
    cell(tr, b.name); cell(tr, b.state).className = b.state; cell(tr, b.sessions);
    cell(tr, b.last_check ? new Date(b.last_check).toLocaleTimeString() : "not yet");
    cell(tr, b.last_error || "").style.whiteSpace = "normal";
    const actions = cell(tr, "");
    const draining = b.state === "draining";
    actions.appendChild(button(draining ? "undrain" : "drain",
                               () => post("/api/backends/" + (draining ? "undrain" : "drain"), {backend: b.name})));
    actions.appendChild(button("kick all", async () => {
      if (confirm("End the " + b.sessions + " sessions on " + b.name + " (each with a BYE, spread over time)?")) {
        const k = await post("/api/kick", {backend: b.name});
        if (k.ok) status("kicking " + (await k.json()).kicked + " sessions on " + b.name);
      }
    }));
    return tr;
  }));
}

document.getElementById("capture").addEventListener("submit", async ev => {
  ev.preventDefault();
  const form = new FormData(ev.target), body = {};
  for (const [k, v] of form) if (v) body[k] = k === "duration_s" ? Number(v) : v;
  const r = await fetch("/api/captures", {method: "POST", headers: json, body: JSON.stringify(body)});
  if (!r.ok) status("capture refused: " + (await r.json()).error);
  refresh();
});

function describe(e, start) {
  const dt = "+" + ((e.t - start) / 1e6).toFixed(3) + " ";
  if (e.dir) {
    let text = e.text || "";
    if (e.literals) text += "  [" + e.literals.map(l => l.size + " bytes").join(", ") + "]";
    return [e.dir, dt + e.dir + ": " + text];
  }
  if (e.event === "finding") {
    return ["finding", dt + "!! " + e.finding + ": " + e.detail + "\n     what it means: " + e.meaning +
            "\n     what usually fixes it: " + e.fix];
  }
  const detail = Object.entries(e).filter(([k]) => !["t", "s", "event"].includes(k)).map(([k, v]) => k + "=" + v).join(" ");
  return ["note", dt + "-- " + e.event + " " + detail];
}

async function choose(id) {
  const resuming = id === chosen && lastEvent > 0;
  chosen = id;
  if (tail) tail.abort();
  const mine = tail = new AbortController();
  const box = document.getElementById("conversation");
  if (!resuming) { box.replaceChildren(); lastEvent = 0; tailStart = null; }
  document.getElementById("chosen").textContent = "session " + id;
  document.querySelectorAll("#sessions tr").forEach(tr => tr.classList.toggle("selected", Number(tr.dataset.id) === id));
  let buffer = "";
  try {
    const r = await fetch("/api/sessions/" + id + "/events?stream=1&after=" + lastEvent, {signal: mine.signal});
    if (!r.ok) { box.textContent = "no events (" + r.status + ")"; finished = id; if (tail === mine) tail = null; return; }
    const reader = r.body.getReader(), decoder = new TextDecoder();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;  // the session ended ("end" seen), or the stream's time limit: refresh() resumes
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
        if (block.startsWith("event: end")) { finished = id; continue; }
        const data = block.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
        const seq = block.split("\n").find(l => l.startsWith("id: "));
        if (seq) lastEvent = Number(seq.slice(4));
        if (!data) continue;
        const e = JSON.parse(data);
        if (tailStart === null) tailStart = e.t;
        const [cls, text] = describe(e, tailStart);
        const line = document.createElement("div");
        line.className = "line " + cls; line.textContent = text;
        box.appendChild(line);
        box.scrollTop = box.scrollHeight;
      }
    }
  } catch (e) { if (e.name !== "AbortError") box.appendChild(document.createTextNode("tail ended: " + e)); }
  if (tail === mine) tail = null;
}

refresh();
setInterval(refresh, 1000);
</script></body></html>
)page";
  return page;
}

}  // namespace imapscope::app
