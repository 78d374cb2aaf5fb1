// The agents' console. Every stored text is inserted with textContent, never as HTML.
"use strict";

const API = "/api/v1/messages";
const KEY = "leavemsg.apiKey";
const $ = (id) => document.getElementById(id);
let cursor = null;
let streamAbort = null;
const shown = new Map(); // id -> row element

function apiKey() { return sessionStorage.getItem(KEY); }

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers = Object.assign({ Authorization: `Bearer ${apiKey()}` }, opts.headers);
  const response = await fetch(path, opts);
  if (response.status === 401) {
    signOut("Your API key was not accepted. Please sign in again.");
    throw new Error("unauthorized");
  }
  return response;
}

function notice(kind, text) {
  const n = $("notice");
  n.className = `notice ${kind}`;
  n.textContent = text;
}

async function problem(response) {
  let text = `The request failed (${response.status}).`;
  try { text = (await response.json()).message || text; } catch (_) { /* keep default */ }
  notice("error", text);
}

function age(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} days ago`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function button(label, onClick, secondary) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (secondary) b.className = "secondary";
  b.addEventListener("click", onClick);
  return b;
}

function render(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = m.id;
  const received = cell(age(m.receivedAt));
  received.title = m.receivedAt;
  received.dataset.received = m.receivedAt;
  received.className = "age";
  const status = m.status + (m.assignedTo ? ` (${m.assignedTo})` : "") + (m.outcome ? `: ${m.outcome}` : "");
  tr.append(cell(m.id), received, cell(m.phoneNo), cell(m.userName), cell(m.leaveMessage, "text"),
            cell(status + (m.note ? ` — ${m.note}` : ""), "text"));
  const actions = document.createElement("div");
  actions.className = "actions";
  if (m.status === "pending") {
    actions.append(button("Claim", () => change(m.id, "claim")));
  } else if (m.status === "assigned") {
    const outcome = document.createElement("select");
    outcome.setAttribute("aria-label", `Outcome for message ${m.id}`);
    for (const o of ["called_back", "no_answer", "wrong_number", "spam"]) {
      const opt = document.createElement("option");
      opt.value = o;
      opt.textContent = o.replace("_", " ");
      outcome.append(opt);
    }
    const note = document.createElement("input");
    note.type = "text";
    note.placeholder = "Note";
    note.maxLength = 2000;
    note.setAttribute("aria-label", `Note for message ${m.id}`);
    actions.append(outcome, note,
      button("Done", () => change(m.id, "process", { outcome: outcome.value, note: note.value })),
      button("Release", () => change(m.id, "release"), true));
  }
  const td = document.createElement("td");
  td.append(actions);
  tr.append(td);
  return tr;
}

function put(m, atEnd) {
  if (shown.size === 0 && $("notice").textContent === "No messages match.") notice("", "");
  const row = render(m);
  const old = shown.get(m.id);
  if (old) old.replaceWith(row);
  else if (atEnd) $("rows").append(row);
  else $("rows").append(row); // list order is oldest first: new messages go last
  shown.set(m.id, row);
}

function filterQuery() {
  const q = new URLSearchParams();
  if ($("f-status").value) q.set("status", $("f-status").value);
  if ($("f-phone").value.trim()) q.set("phoneNo", $("f-phone").value.trim());
  if ($("f-from").value) q.set("from", new Date(`${$("f-from").value}T00:00:00`).toISOString());
  if ($("f-to").value) {
    const end = new Date(`${$("f-to").value}T00:00:00`);
    end.setDate(end.getDate() + 1);
    q.set("to", end.toISOString());
  }
  return q;
}

function matchesFilters(m) {
  const status = $("f-status").value;
  if (status && m.status !== status) return false;
  const phone = $("f-phone").value.replace(/\D/g, "");
  if (phone && m.phoneNo.replace(/\D/g, "") !== phone) return false;
  return true;
}

async function load(reset) {
  if (reset) {
    cursor = null;
    shown.clear();
    $("rows").replaceChildren();
  }
  const q = filterQuery();
  q.set("limit", "100");
  if (cursor) q.set("cursor", cursor);
  const response = await api(`${API}?${q}`);
  if (!response.ok) return problem(response);
  const page = await response.json();
  for (const m of page.items) put(m, true);
  cursor = page.nextCursor;
  $("more").hidden = !cursor;
  if (reset) notice("", shown.size ? "" : "No messages match.");
}

async function change(id, action, body) {
  const options = { method: "POST" };
  if (body) {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  const response = await api(`${API}/${id}/${action}`, options);
  if (!response.ok) return problem(response);
  const m = await response.json();
  notice("success", `Message ${m.id} is now ${m.status}.`);
  if (matchesFilters(m)) put(m); else { shown.get(m.id)?.remove(); shown.delete(m.id); }
}

async function claimNext() {
  const response = await api(`${API}/claim-next`, { method: "POST" });
  if (response.status === 204) return notice("", "Nothing is waiting.");
  if (!response.ok) return problem(response);
  const m = await response.json();
  notice("success", `You have message ${m.id}: call ${m.phoneNo}.`);
  if (matchesFilters(m)) put(m); else { shown.get(m.id)?.remove(); shown.delete(m.id); }
}

async function exportCsv() {
  const response = await api(`${API}/export.csv?${filterQuery()}`);
  if (!response.ok) return problem(response);
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = "messages.csv";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Server-sent events over fetch, so the key travels in a header and never in a URL.
async function stream() {
  while (apiKey()) {
    streamAbort = new AbortController();
    try {
      const response = await api(`${API}/stream`, { signal: streamAbort.signal });
      if (!response.ok) throw new Error(`stream ${response.status}`);
      $("live").textContent = "Live updates: on";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = event.split("\n");
          if (!lines.includes("event: message")) continue;
          const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          const m = JSON.parse(data);
          if (matchesFilters(m)) put(m);
        }
      }
    } catch (error) {
      if (error.message === "unauthorized" || !apiKey()) return;
    }
    $("live").textContent = "Live updates: reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function signOut(text) {
  sessionStorage.removeItem(KEY);
  if (streamAbort) streamAbort.abort();
  $("work").hidden = true;
  $("sign-in").hidden = false;
  if (text) notice("error", text);
  $("api-key").focus();
}

async function start() {
  $("sign-in").hidden = true;
  $("work").hidden = false;
  try {
    await load(true);
    stream();
  } catch (_) { /* signOut already explained */ }
}

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("api-key").value.trim());
  $("api-key").value = "";
  notice("", "");
  start();
});
$("filters").addEventListener("submit", (event) => { event.preventDefault(); load(true).catch(() => {}); });
$("more").addEventListener("click", () => load(false).catch(() => {}));
$("claim-next").addEventListener("click", () => claimNext().catch(() => {}));
$("export").addEventListener("click", () => exportCsv().catch(() => {}));
$("sign-out").addEventListener("click", () => signOut(""));
setInterval(() => {
  for (const td of document.querySelectorAll("td.age")) td.textContent = age(td.dataset.received);
}, 30000);

if (apiKey()) start(); else { $("sign-in").hidden = false; }
