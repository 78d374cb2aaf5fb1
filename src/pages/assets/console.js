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

// Messages that arrived (from the live stream, or as the answer to this agent's own action)
// while a reload was under way: the reloaded page may have been read before, so they are
// applied again on top of it.
let liveDuringReload = [];
let reloading = 0;

// Shows a message as it is now, or takes it out of the list if it no longer matches.
function show(m) {
  if (matchesFilters(m)) put(m);
  else { shown.get(m.id)?.remove(); shown.delete(m.id); }
}

function arrived(m) {
  show(m);
  if (reloading > 0) liveDuringReload.push(m);
}

// Reads the first page again (reset) or the next one. `quiet`: a reload the agent did not ask
// for (the live stream's), which leaves the notice alone.
async function load(reset, quiet) {
  if (!reset) return loadPage(false, quiet);
  reloading += 1;
  const mark = liveDuringReload.length;
  try {
    return await loadPage(true, quiet, mark);
  } finally {
    reloading -= 1;
    if (reloading === 0) liveDuringReload = [];
  }
}

async function loadPage(reset, quiet, mark) {
  const q = filterQuery();
  q.set("limit", "100");
  if (cursor && !reset) q.set("cursor", cursor);
  const response = await api(`${API}?${q}`);
  if (!response.ok) return quiet ? undefined : problem(response);
  const page = await response.json();
  if (reset) {
    // Replaced only once the new page is here, so the list never shows empty meanwhile.
    shown.clear();
    $("rows").replaceChildren();
  }
  for (const m of page.items) put(m, true);
  if (reset) for (const m of liveDuringReload.slice(mark)) show(m);
  cursor = page.nextCursor;
  $("more").hidden = !cursor;
  if (!reset) return;
  if (shown.size === 0) {
    if (!quiet || !$("notice").textContent) notice("", "No messages match.");
  } else if (!quiet || $("notice").textContent === "No messages match.") {
    notice("", "");
  }
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
  arrived(m);
}

async function claimNext() {
  const response = await api(`${API}/claim-next`, { method: "POST" });
  if (response.status === 204) return notice("", "Nothing is waiting.");
  if (!response.ok) return problem(response);
  const m = await response.json();
  notice("success", `You have message ${m.id}: call ${m.phoneNo}.`);
  arrived(m);
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

// Server-sent events over fetch, so the key travels in a header and never in a URL. fetch
// does not resume by itself as EventSource does: the console remembers the stream's last `id:`
// and sends it back as Last-Event-ID, so the server first replays what was stored meanwhile.
let lastEventId = null;
let retryBase = 3000; // the server's `retry:` advice, in ms
const RETRY_MAX = 30000;
// Heartbeats come every 10 s: this long without a byte means the connection is dead.
const SILENCE = 25000;

function liveStatus(on, text) {
  const live = $("live");
  live.textContent = text;
  live.classList.toggle("off", !on);
}

// Splits SSE text into events; returns what is left of an unfinished one.
function parseEvents(buffer, onEvent) {
  let end;
  while ((end = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    const event = { type: "message", data: [], id: null, comments: [] };
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) { event.comments.push(line.slice(1).trim()); continue; }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "id" && !value.includes("\0")) event.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) retryBase = Number(value);
    }
    onEvent(event);
  }
  return buffer;
}

// Reads one connection until it ends; true once it said it was connected.
async function readStream(response, resumed) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let connected = false;
  let watchdog = setTimeout(() => streamAbort.abort(), SILENCE);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return connected;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => streamAbort.abort(), SILENCE);
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n"), (event) => {
        if (event.id !== null) lastEventId = event.id;
        if (event.comments.includes("connected")) {
          connected = true;
          liveStatus(true, "Live updates on");
          // Without a position nothing was replayed: what was stored before this connection
          // is only in the list, so read it again.
          if (!resumed) load(true, true).catch(() => {});
        }
        if (event.data.length === 0) return;
        if (event.type === "message") {
          const m = JSON.parse(event.data.join("\n"));
          arrived(m);
        } else if (event.type === "reset" || event.type === "lagged") {
          // Some updates were not (or cannot be) sent: the list is read again instead.
          load(true, true).catch(() => {});
        }
      });
    }
  } finally {
    clearTimeout(watchdog);
  }
}

let streamRun = 0; // a sign-out and sign-in ends the previous loop

async function stream() {
  const run = ++streamRun;
  let delay = retryBase;
  while (apiKey() && run === streamRun) {
    streamAbort = new AbortController();
    let why = "the connection to the server was lost";
    let wait = 0;
    try {
      const resumed = lastEventId !== null;
      const headers = resumed ? { "Last-Event-ID": lastEventId } : {};
      const response = await api(`${API}/stream`, { signal: streamAbort.signal, headers });
      if (response.status === 429) {
        why = "this key has too many live connections open";
        wait = 1000 * (Number(response.headers.get("Retry-After")) || 0);
      } else if (!response.ok) {
        why = `the server answered ${response.status}`;
      } else if (await readStream(response, resumed)) {
        delay = retryBase;
      }
    } catch (error) {
      if (error.message === "unauthorized" || !apiKey()) return;
    }
    if (!apiKey() || run !== streamRun) return;
    // Jitter, so consoles that lost one server do not all come back at once.
    const pause = Math.max(wait, delay * (0.8 + 0.4 * Math.random()));
    liveStatus(false, `Live updates are off — ${why}; reconnecting in ${Math.round(pause / 1000)} s…`);
    await new Promise((resolve) => setTimeout(resolve, pause));
    if (run === streamRun) liveStatus(false, "Live updates are off — reconnecting…");
    delay = Math.min(RETRY_MAX, delay * 2);
  }
}

function signOut(text) {
  sessionStorage.removeItem(KEY);
  lastEventId = null;
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
  } catch (error) {
    if (error.message === "unauthorized") return; // signOut explained
  }
  // Also when the list could not be read: the stream says in words whether the server answers.
  stream();
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
