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
  noteClock(response);
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

// The server's clock minus this browser's, from the Date header of its answers, so "due in"
// and "overdue" agree with the server even when this computer's clock is off.
let skew = 0;

function now() { return Date.now() + skew; }

function noteClock(response) {
  const date = Date.parse(response.headers.get("Date") || "");
  // The header has whole seconds: only a larger difference is a wrong clock.
  if (!Number.isNaN(date) && Math.abs(date - Date.now()) > 2000) skew = date - Date.now();
  else skew = 0;
}

function age(iso) {
  const seconds = Math.max(0, (now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} days ago`;
}

// A span of time in words: "less than a minute", "40 min", "3 h 5 min", "2 days".
function span(ms) {
  const minutes = Math.floor(Math.max(0, ms) / 60000);
  if (minutes < 1) return "less than a minute";
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  return `${Math.floor(minutes / 1440)} days`;
}

function localTime(iso) {
  return new Date(iso).toLocaleString(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  });
}

// When an open message is due, in words, and whether it is due or overdue (for the colour).
function dueState(m) {
  if (m.status === "processed") return { text: "—", kind: "closed" };
  const t = now();
  const due = Date.parse(m.dueAt);
  const over = Date.parse(m.overdueAt);
  if (t >= over) return { text: `Overdue by ${span(t - over)}`, kind: "overdue" };
  if (t >= due) return { text: `Due now; overdue in ${span(over - t)}`, kind: "due" };
  return { text: `Due in ${span(due - t)}`, kind: "later" };
}

function attemptText(m) {
  if (m.status === "processed") return m.attempts === 1 ? "1 attempt" : `${m.attempts} attempts`;
  const next = m.attempts + 1;
  return `Attempt ${next} of ${m.maxAttempts}` + (next >= m.maxAttempts ? " (last)" : "");
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

// The number to dial: digits and a leading "+", nothing else from the stored text.
function telLink(phone) {
  const a = document.createElement("a");
  a.href = "tel:" + phone.trim().replace(/[^\d+]/g, "").replace(/(?!^)\+/g, "");
  a.textContent = phone;
  return a;
}

function paintDue(tr, td, m) {
  const state = dueState(m);
  td.textContent = state.text;
  td.dataset.kind = state.kind;
  tr.classList.toggle("overdue", state.kind === "overdue");
}

const RESULTS = [
  ["reached", "Reached"], ["no_answer", "No answer"], ["busy", "Busy"],
  ["voicemail", "Voicemail"], ["wrong_number", "Wrong number"], ["spam", "Spam"],
];
const OUTCOMES = ["called_back", "no_answer", "wrong_number", "spam"];

function render(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = m.id;
  tr.dataset.sig = JSON.stringify(m);
  tr.dataset.at = m.receivedAt;
  const received = cell(age(m.receivedAt));
  received.title = m.receivedAt;
  received.dataset.received = m.receivedAt;
  received.className = "age";
  const phone = document.createElement("td");
  phone.className = "phone";
  phone.append(telLink(m.phoneNo));
  const status = m.status + (m.assignedTo ? ` (${m.assignedTo})` : "") + (m.outcome ? `: ${m.outcome}` : "");
  const due = cell("", "due");
  if (m.status !== "processed") {
    due.title = `Due ${localTime(m.dueAt)}; overdue from ${localTime(m.overdueAt)}`;
  }
  paintDue(tr, due, m);
  tr.append(cell(m.id), received, phone, cell(m.userName), cell(m.leaveMessage, "text"),
            cell(status + (m.note ? ` — ${m.note}` : ""), "text status"), due,
            cell(attemptText(m), "attempt"));
  const actions = document.createElement("div");
  actions.className = "actions";
  if (m.status === "pending") {
    actions.append(button("Claim", () => change(m.id, "claim")));
  } else if (m.status === "assigned") {
    const note = document.createElement("input");
    note.type = "text";
    note.placeholder = "Note (optional)";
    note.maxLength = 2000;
    note.setAttribute("aria-label", `Note on the call to message ${m.id} (optional)`);
    const results = document.createElement("div");
    results.className = "results";
    results.setAttribute("role", "group");
    results.setAttribute("aria-label", `Result of the call to message ${m.id}`);
    for (const [result, label] of RESULTS) {
      const b = button(label, () => attempt(m.id, result, label, note.value), result !== "reached");
      b.dataset.result = result;
      results.append(b);
    }
    const outcome = document.createElement("select");
    outcome.setAttribute("aria-label", `Close message ${m.id} without another call, as`);
    for (const o of OUTCOMES) {
      const opt = document.createElement("option");
      opt.value = o;
      opt.textContent = o.replace("_", " ");
      outcome.append(opt);
    }
    actions.append(note, results, button("Release", () => change(m.id, "release"), true),
      outcome, button("Close", () => change(m.id, "process", { outcome: outcome.value, note: note.value }), true));
  }
  const history = button("History", () => toggleHistory(m.id), true);
  history.className = "secondary history-toggle";
  history.setAttribute("aria-expanded", "false");
  history.setAttribute("aria-controls", `history-${m.id}`);
  actions.append(history);
  const td = document.createElement("td");
  td.append(actions);
  tr.append(td);
  return tr;
}

// A message's history, read when asked for, in a row under the message's.
const HISTORY_WORDS = {
  stored: () => "Message stored",
  claim: (h) => `Claimed by ${h.actor}`,
  assign: (h) => `Assigned to ${h.assignedTo || "?"} by ${h.actor}`,
  release: (h) => (h.reason === "agent_disabled"
    ? `Released: ${h.assignedTo || "the agent"} can no longer sign in`
    : `Released by ${h.actor}`),
  attempt: (h) => `Call by ${h.actor}: ${(h.result || "").replace("_", " ")}`
    + (h.toStatus === "processed" ? ` (closed as ${(h.outcome || "").replace("_", " ")})` : ""),
  process: (h) => `Closed by ${h.actor} as ${(h.outcome || "").replace("_", " ")}`,
};

async function toggleHistory(id) {
  const row = shown.get(id);
  if (!row) return;
  const open = document.getElementById(`history-${id}`);
  if (open) {
    open.remove();
    row.querySelector(".history-toggle").setAttribute("aria-expanded", "false");
    return;
  }
  await showHistory(id);
}

async function showHistory(id) {
  const response = await api(`${API}/${id}/history`);
  if (!response.ok) return problem(response);
  const items = (await response.json()).items;
  const row = shown.get(id);
  if (!row) return;
  document.getElementById(`history-${id}`)?.remove();
  const tr = document.createElement("tr");
  tr.id = `history-${id}`;
  tr.className = "history";
  const td = document.createElement("td");
  td.colSpan = 9;
  const list = document.createElement("ol");
  list.setAttribute("aria-label", `History of message ${id}`);
  for (const h of items) {
    const li = document.createElement("li");
    const words = (HISTORY_WORDS[h.action] || ((x) => `${x.action} by ${x.actor}`))(h);
    li.textContent = `${localTime(h.at)}: ${words}` + (h.note ? ` — “${h.note}”` : "");
    list.append(li);
  }
  td.append(list);
  tr.append(td);
  row.after(tr);
  row.querySelector(".history-toggle").setAttribute("aria-expanded", "true");
}

// Messages this console claimed stay in the list while they are assigned to this agent,
// whatever the filter, until a result is recorded or they are released.
const WORKING = "leavemsg.working";
const working = new Set(JSON.parse(sessionStorage.getItem(WORKING) || "[]"));

function keepWorking() { sessionStorage.setItem(WORKING, JSON.stringify([...working])); }

function sticky(m) { return working.has(m.id) && m.status === "assigned"; }

function order(a, b) {
  return (Date.parse(a.receivedAt) - Date.parse(b.receivedAt)) || (a.id - b.id);
}

function drop(id) {
  shown.get(id)?.remove();
  document.getElementById(`history-${id}`)?.remove();
  shown.delete(id);
}

// Shows `m` in list order. A row whose message did not change is left as it is, so a note
// being typed survives a reload.
function put(m) {
  if (shown.size === 0 && $("notice").textContent === "No messages match.") notice("", "");
  const old = shown.get(m.id);
  const sig = JSON.stringify(m);
  if (old && old.dataset.sig === sig) return;
  const row = render(m);
  if (old) {
    old.replaceWith(row);
    shown.set(m.id, row);
    if (document.getElementById(`history-${m.id}`)) showHistory(m.id).catch(() => {});
    return;
  }
  // The first row that comes after `m` in list order (received time, then id).
  const key = (r) => ({ receivedAt: r.dataset.at, id: Number(r.dataset.id) });
  let before = null;
  for (const r of shown.values()) {
    if (order(key(r), m) > 0 && (!before || order(key(r), key(before)) < 0)) before = r;
  }
  if (before) before.before(row); else $("rows").append(row);
  shown.set(m.id, row);
}

function filterQuery() {
  const q = new URLSearchParams();
  const view = $("f-status").value;
  if (view === "due") { q.set("status", "pending"); q.set("due", "true"); }
  else if (view === "later") { q.set("status", "pending"); q.set("due", "false"); }
  else if (view === "overdue") q.set("overdue", "true");
  else if (view) q.set("status", view);
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
  const view = $("f-status").value;
  const t = now();
  if (view === "due" && !(m.status === "pending" && Date.parse(m.dueAt) <= t)) return false;
  if (view === "later" && !(m.status === "pending" && Date.parse(m.dueAt) > t)) return false;
  if (view === "overdue" && !(m.status !== "processed" && Date.parse(m.overdueAt) <= t)) return false;
  if (["pending", "assigned", "processed"].includes(view) && m.status !== view) return false;
  const phone = $("f-phone").value.replace(/\D/g, "");
  if (phone && m.phoneNo.replace(/\D/g, "") !== phone) return false;
  return true;
}

// Views whose members change with the clock alone (a message becomes due, or overdue): no
// event says so, so the list is read again when the queue's counts move.
function viewFollowsClock() { return ["due", "later", "overdue"].includes($("f-status").value); }

// Messages that arrived (from the live stream, or as the answer to this agent's own action)
// while a reload was under way: the reloaded page may have been read before, so they are
// applied again on top of it.
let liveDuringReload = [];
let reloading = 0;

// Shows a message as it is now, or takes it out of the list if it no longer matches.
function show(m) {
  if (working.has(m.id) && m.status !== "assigned") { working.delete(m.id); keepWorking(); }
  if (matchesFilters(m) || sticky(m)) put(m);
  else drop(m.id);
}

function arrived(m) {
  show(m);
  if (reloading > 0) liveDuringReload.push(m);
  queueSoon();
}

// Reads the first page again (reset) or the next one. `quiet`: a reload the agent did not ask
// for (the live stream's or the clock's), which leaves the notice alone.
async function load(reset, quiet) {
  if (!reset) return loadPage(false, quiet);
  reloading += 1;
  $("rows").setAttribute("aria-busy", "true");
  const mark = liveDuringReload.length;
  try {
    return await loadPage(true, quiet, mark);
  } finally {
    reloading -= 1;
    if (reloading === 0) {
      liveDuringReload = [];
      $("rows").removeAttribute("aria-busy");
    }
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
    // Merged into what is shown, so the list never shows empty meanwhile and unchanged rows
    // stay as they are.
    const listed = new Set(page.items.map((m) => m.id));
    for (const id of [...shown.keys()]) if (!listed.has(id) && !working.has(id)) drop(id);
    const others = [...working].filter((id) => !listed.has(id));
    for (const m of page.items) put(m);
    for (const id of others) {
      const one = await api(`${API}/${id}`);
      if (one.ok) show(await one.json());
      else if (one.status === 404) { working.delete(id); keepWorking(); drop(id); }
    }
  } else {
    for (const m of page.items) put(m);
  }
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
  if (m.status === "assigned") { working.add(m.id); keepWorking(); }
  notice("success", `Message ${m.id} is now ${m.status}.`);
  arrived(m);
}

async function attempt(id, result, label, note) {
  const body = { result };
  if (note.trim()) body.note = note;
  const response = await api(`${API}/${id}/attempts`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) return problem(response);
  const m = await response.json();
  if (m.status === "processed") {
    notice("success", `Message ${m.id} is now processed (${m.outcome.replace("_", " ")}) after ${attemptText(m)}.`);
  } else {
    notice("success", `Message ${m.id}: ${label.toLowerCase()} on attempt ${m.attempts} of `
      + `${m.maxAttempts}. It is pending again, due ${localTime(m.dueAt)} (in ${span(Date.parse(m.dueAt) - now())}).`);
  }
  arrived(m);
  // The row may have left the list with the button that had the focus: keyboard users go on
  // from "Claim next".
  if (!document.activeElement || document.activeElement === document.body) $("claim-next").focus();
}

async function claimNext() {
  const response = await api(`${API}/claim-next`, { method: "POST" });
  if (response.status === 204) return notice("", "Nothing is due now.");
  if (!response.ok) return problem(response);
  const m = await response.json();
  working.add(m.id);
  keepWorking();
  notice("success", `You have message ${m.id}: call ${m.phoneNo}.`);
  arrived(m);
}

// The counts on top: read when the console starts, shortly after any change it hears of, and
// every 10 s (a message becomes due or overdue by the clock alone).
let queueTimer = null;
let lastCounts = null;

function queueSoon() {
  if (queueTimer === null) queueTimer = setTimeout(refreshQueue, 1500);
}

async function refreshQueue() {
  clearTimeout(queueTimer);
  queueTimer = null;
  if (!apiKey()) return;
  let counts;
  try {
    const response = await api("/api/v1/queue");
    if (!response.ok) return;
    counts = await response.json();
  } catch (_) { return; }
  for (const k of ["pending", "due", "overdue", "assigned", "mine"]) $(`q-${k}`).textContent = counts[k];
  $("q-overdue").parentElement.classList.toggle("alert", counts.overdue > 0);
  $("q-oldest").textContent = counts.due > 0
    ? `The longest-waiting due message has waited ${span(counts.oldestDueAgeSeconds * 1000)}.` : "";
  const moved = lastCounts && (lastCounts.due !== counts.due || lastCounts.overdue !== counts.overdue
    || lastCounts.pending !== counts.pending);
  lastCounts = counts;
  if (moved && viewFollowsClock()) load(true, true).catch(() => {});
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
  working.clear();
  keepWorking();
  lastCounts = null;
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
  refreshQueue();
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
for (const count of document.querySelectorAll("button.count")) {
  count.addEventListener("click", () => {
    $("f-status").value = count.dataset.view;
    load(true).catch(() => {});
  });
}
setInterval(() => {
  for (const td of document.querySelectorAll("td.age")) td.textContent = age(td.dataset.received);
  for (const [, tr] of shown) paintDue(tr, tr.querySelector("td.due"), JSON.parse(tr.dataset.sig));
}, 30000);
setInterval(() => { if (apiKey()) refreshQueue(); }, 10000);

if (apiKey()) start(); else { $("sign-in").hidden = false; }
