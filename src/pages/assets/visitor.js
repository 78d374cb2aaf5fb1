// The visitor's leave-a-message form: applyToken, then doLeaveMessage.
"use strict";

const BASE = "/service-cloud/rest/webadapter/v1/webadapterfacade";
const MAX_CHARS = 2000;
const page = document.getElementById("form-page");
const form = document.getElementById("leave-message");
const phone = document.getElementById("phone");
const message = document.getElementById("message");
const count = document.getElementById("message-count");
const phoneError = document.getElementById("phone-error");
const messageError = document.getElementById("message-error");
const result = document.getElementById("result");
const send = document.getElementById("send");
const whenLater = document.getElementById("when-later");
const whenDay = document.getElementById("when-day");
const whenTime = document.getElementById("when-time");
const whenHint = document.getElementById("when-hint");
const whenError = document.getElementById("when-error");
const DAYS_AHEAD = 30;
const channelId = page.dataset.channel;
let token = null;
let sending = false;

// A visitor id kept in this browser, so the same visitor gets one token at a time.
function visitorId() {
  const key = "leavemsg.visitor";
  let id = null;
  try { id = localStorage.getItem(key); } catch (_) { /* storage may be blocked */ }
  if (!id) {
    id = crypto.randomUUID().replace(/-/g, "");
    try { localStorage.setItem(key, id); } catch (_) { /* keep it for this page only */ }
  }
  return id;
}

function characters(text) {
  return Array.from(text).length;
}

function updateCount() {
  const n = characters(message.value.trim());
  count.textContent = `${n} / ${MAX_CHARS} characters`;
  count.classList.toggle("over", n > MAX_CHARS);
}

// "As soon as possible", or not before a day and time in the visitor's own time zone, sent as
// callbackAfter: an RFC 3339 time with this browser's offset on that day.
function laterChosen() {
  return form.elements.when.value === "later";
}

function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function chosenTime() {
  if (!whenDay.value || !whenTime.value) return null;
  const time = whenTime.value.length === 5 ? `${whenTime.value}:00` : whenTime.value;
  const local = new Date(`${whenDay.value}T${time}`);
  return Number.isNaN(local.getTime()) ? null : { local, text: `${whenDay.value}T${time}` };
}

function withOffset(chosen) {
  const minutes = -chosen.local.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  const pad = (n) => String(n).padStart(2, "0");
  return `${chosen.text}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function spoken(date) {
  return date.toLocaleString(undefined, {
    weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
  });
}

function zoneName() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { return ""; }
}

function updateWhen(event) {
  if (event && whenError.textContent) {
    whenError.textContent = "";
    whenDay.removeAttribute("aria-invalid");
  }
  whenLater.hidden = !laterChosen();
  const today = new Date();
  whenDay.min = isoDay(today);
  whenDay.max = isoDay(new Date(today.getTime() + DAYS_AHEAD * 86400000));
  if (!laterChosen()) {
    whenHint.textContent = "We will call you as soon as someone is free.";
    return;
  }
  const chosen = chosenTime();
  const zone = zoneName();
  whenHint.textContent = chosen
    ? `We will not call you before ${spoken(chosen.local)}, your time${zone ? ` (${zone})` : ""}.`
    : `Choose a day and a time, in your time zone${zone ? ` (${zone})` : ""}, within the next ${DAYS_AHEAD} days.`;
}

// callbackAfter to send: null for "as soon as possible"; throws the words to show otherwise.
function callbackAfter() {
  if (!laterChosen()) return null;
  const chosen = chosenTime();
  if (!chosen) throw new Error("Please choose a day and a time, or “As soon as possible”.");
  if (chosen.local.getTime() <= Date.now()) {
    throw new Error("That time has passed. Please choose a later one, or “As soon as possible”.");
  }
  if (chosen.local.getTime() > Date.now() + DAYS_AHEAD * 86400000) {
    throw new Error(`Please choose a time within the next ${DAYS_AHEAD} days.`);
  }
  return withOffset(chosen);
}

function clearErrors() {
  whenError.textContent = "";
  whenDay.removeAttribute("aria-invalid");
  for (const [input, error] of [[phone, phoneError], [message, messageError]]) {
    error.textContent = "";
    input.removeAttribute("aria-invalid");
  }
  result.textContent = "";
  result.className = "";
}

function showFieldError(input, error, text) {
  error.textContent = text;
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

// resultDesc names the field first ("phoneNo must …"); say it in words next to that field.
function showProblem(desc) {
  if (desc.startsWith("phoneNo ")) {
    showFieldError(phone, phoneError, "Phone number " + desc.slice("phoneNo ".length) + ".");
  } else if (desc.startsWith("callbackAfter ")) {
    showFieldError(whenDay, whenError, "The time " + desc.slice("callbackAfter ".length) + ".");
  } else if (desc.startsWith("leaveMessage ")) {
    showFieldError(message, messageError, "Message " + desc.slice("leaveMessage ".length) + ".");
  } else {
    showResult("error", "Your message could not be sent: " + desc + ".");
  }
}

function showResult(kind, text) {
  result.className = kind;
  result.textContent = text;
}

async function post(call, body, headers) {
  const response = await fetch(`${BASE}/${call}`, {
    method: "POST",
    credentials: "same-origin",
    headers: Object.assign({ "Content-Type": "application/json; charset=UTF-8" }, headers || {}),
    body: JSON.stringify(body),
  });
  let json = {};
  try { json = await response.json(); } catch (_) { /* not JSON: handled by status */ }
  return { status: response.status, json };
}

async function applyToken() {
  const { status, json } = await post("applyToken", {
    userId: visitorId(),
    userName: "Web visitor",
    channelId,
    locale: navigator.language || "en",
  });
  if (status !== 200 || json.resultCode !== "0") {
    throw new Error(json.resultDesc || "the form is not available right now");
  }
  token = json.token;
}

async function leaveMessage(body) {
  if (!token) await applyToken();
  let reply = await post("doLeaveMessage", body, { "ccmessaging-token": token });
  if (reply.status === 401) {
    // The token expired or was replaced: get a new one and try once more.
    await applyToken();
    reply = await post("doLeaveMessage", body, { "ccmessaging-token": token });
  }
  return reply;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (sending) return; // a double click sends once
  clearErrors();
  const body = { phoneNo: phone.value, leaveMessage: message.value };
  if (!body.phoneNo.trim()) return showFieldError(phone, phoneError, "Please enter your phone number.");
  if (!body.leaveMessage.trim()) return showFieldError(message, messageError, "Please write a message.");
  try {
    const after = callbackAfter();
    if (after) body.callbackAfter = after;
  } catch (error) {
    return showFieldError(whenDay, whenError, error.message);
  }
  sending = true;
  send.disabled = true;
  showResult("pending", "Sending…");
  try {
    const { status, json } = await leaveMessage(body);
    if (status === 200 && json.resultCode === "0") {
      showResult("success", body.callbackAfter
        ? `Thank you. Your message was received; we will call you back, not before ${spoken(new Date(body.callbackAfter))}.`
        : "Thank you. Your message was received; we will call you back.");
      form.reset();
      updateCount();
      updateWhen();
    } else if (status === 200 && json.resultCode === "3") {
      result.textContent = "";
      showProblem(json.resultDesc || "");
    } else if (status === 429) {
      showResult("error", "Too many messages in a short time. Please wait a minute and try again.");
    } else if (status === 503) {
      showResult("error", "We could not save your message just now. Please try again in a moment.");
    } else {
      showResult("error", "Your message could not be sent: " + (json.resultDesc || `error ${status}`) + ".");
    }
  } catch (error) {
    showResult("error", "Your message could not be sent: " + error.message + ".");
  } finally {
    sending = false;
    send.disabled = false;
  }
});

message.addEventListener("input", updateCount);
for (const input of [...form.elements.when, whenDay, whenTime]) {
  input.addEventListener("change", updateWhen);
  input.addEventListener("input", updateWhen);
}
updateCount();
updateWhen();
