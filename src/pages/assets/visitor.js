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

function clearErrors() {
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
  sending = true;
  send.disabled = true;
  showResult("pending", "Sending…");
  try {
    const { status, json } = await leaveMessage(body);
    if (status === 200 && json.resultCode === "0") {
      showResult("success", "Thank you. Your message was received; we will call you back.");
      form.reset();
      updateCount();
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
updateCount();
