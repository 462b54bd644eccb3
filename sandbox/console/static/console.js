// The sandbox console: the live channel, and a composer that acts as the chosen user.
// Plain JS, no build step; the server renders messages, this script places them and sends actions.
"use strict";

const $ = (id) => document.getElementById(id);
const STRING = 3, INTEGER = 4, BOOLEAN = 5, USER = 6, CHANNEL = 7, NUMBER = 10, ATTACHMENT = 11;
let users = [], commands = [], current = null, activeSuggestion = 0;

function me() { return $("user").value; }

function toast(text, kind) {
  const t = $("toast");
  t.textContent = text;
  t.className = kind || "";
  t.hidden = !text;
  clearTimeout(toast.timer);
  if (text) toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

async function post(path, body) {
  const resp = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                  body: JSON.stringify(body)});
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {error: `HTTP ${resp.status}`}; }
  return data;
}

// -- what the user sees after acting: nothing, a modal, or a failure ------------------------------
function outcome(data) {
  if (data.error) { toast(data.error); return false; }
  if (data.failed) { toast(data.failed); return false; }
  if (data.modal) openModal(data.modal);
  return true;
}

// -- the channel ----------------------------------------------------------------------------------
function applyVisibility(el) {
  const to = el.dataset.visibleTo;
  el.hidden = Boolean(to) && to !== me();
}

function place(msg) {
  const channel = $("channel");
  const old = document.getElementById("m" + msg.id);
  if (msg.deleted) { if (old) old.remove(); return; }
  const holder = document.createElement("div");
  holder.innerHTML = msg.html;
  const el = holder.firstElementChild;
  const nearBottom = channel.scrollHeight - channel.scrollTop - channel.clientHeight < 80;
  if (old) {
    const wasOpen = old.querySelector("details.timeline")?.open;
    const details = el.querySelector("details.timeline");
    if (wasOpen && details) details.open = true;
    old.replaceWith(el);
  } else {
    const id = BigInt(msg.id);
    const after = [...channel.children].find((c) => BigInt(c.dataset.id) > id);
    channel.insertBefore(el, after || null);
  }
  applyVisibility(el);
  refreshTimes(el);
  if (nearBottom) {
    channel.scrollTop = channel.scrollHeight;
    for (const media of el.querySelectorAll("img,video")) {
      media.addEventListener("load", () => { channel.scrollTop = channel.scrollHeight; }, {once: true});
    }
  }
}

function relative(unix) {
  const diff = Math.round(unix - Date.now() / 1000);
  const abs = Math.abs(diff);
  const [n, unit] = abs < 60 ? [abs, "second"] : abs < 3600 ? [Math.round(abs / 60), "minute"]
    : abs < 86400 ? [Math.round(abs / 3600), "hour"] : [Math.round(abs / 86400), "day"];
  const words = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return diff >= 0 ? `in ${words}` : `${words} ago`;
}

function refreshTimes(root) {
  for (const t of (root || document).querySelectorAll("time[data-style=R]")) {
    t.textContent = relative(Number(t.dataset.unix));
  }
}

function connect() {
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  ws.onopen = () => { $("link-state").textContent = "live"; $("link-state").className = "link-state live"; };
  ws.onclose = () => {
    $("link-state").textContent = "reconnecting…"; $("link-state").className = "link-state";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "message") place(data);
    if (data.type === "users") setUsers(data.users);
  };
}

// -- users ----------------------------------------------------------------------------------------
function setUsers(list) {
  users = list;
  const keep = me() || localStorage.getItem("console-user");
  $("user").innerHTML = "";
  for (const u of list) $("user").add(new Option(u.name, u.id));
  if (list.some((u) => u.id === keep)) $("user").value = keep;
}

$("user").addEventListener("change", () => {
  localStorage.setItem("console-user", me());
  for (const el of $("channel").children) applyVisibility(el);
});

$("add-user").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await post("/api/users", {name: $("new-user").value, manager: $("new-user-manager").checked});
  if (data.error) return toast(data.error);
  $("new-user").value = "";
  await loadState();
  $("user").value = data.id;
  $("user").dispatchEvent(new Event("change"));
});

async function loadState() {
  const data = await (await fetch("/api/state")).json();
  setUsers(data.users);
  commands = data.commands;
  return data;
}

// -- choosing a command ---------------------------------------------------------------------------
function matches() {
  const typed = $("composer").value.replace(/^\//, "").trim().toLowerCase();
  return commands.filter((c) => c.path.startsWith(typed) || c.path.includes(typed));
}

function showSuggestions() {
  const box = $("suggestions");
  if (!$("composer").value.startsWith("/")) { box.hidden = true; return; }
  const found = matches();
  box.innerHTML = "";
  if (!commands.length) box.textContent = "No commands registered yet: run `python -m bot sync`.";
  found.forEach((c, i) => {
    const row = document.createElement("div");
    row.className = "suggestion" + (i === activeSuggestion ? " active" : "");
    row.dataset.path = c.path;
    row.innerHTML = `<b>/${c.path}</b><span class="desc"></span>`;
    row.querySelector(".desc").textContent = c.description;
    row.addEventListener("mousedown", (e) => { e.preventDefault(); choose(c.path); });
    box.appendChild(row);
  });
  box.hidden = false;
}

$("composer").addEventListener("focus", async () => { await loadState(); showSuggestions(); });
$("composer").addEventListener("input", () => { activeSuggestion = 0; showSuggestions(); });
$("composer").addEventListener("blur", () => setTimeout(() => { $("suggestions").hidden = true; }, 150));
$("composer").addEventListener("keydown", (event) => {
  const found = matches();
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    activeSuggestion = (activeSuggestion + (event.key === "ArrowDown" ? 1 : -1) + found.length) % Math.max(found.length, 1);
    showSuggestions();
    event.preventDefault();
  } else if ((event.key === "Enter" || event.key === "Tab") && found.length && $("composer").value.startsWith("/")) {
    event.preventDefault();
    const exact = found.find((c) => "/" + c.path === $("composer").value.trim());
    choose((exact || found[activeSuggestion] || found[0]).path);
  }
});

function choose(path) {
  current = commands.find((c) => c.path === path);
  $("composer").value = "/" + path;
  $("suggestions").hidden = true;
  $("command-name").textContent = "/" + path;
  $("command-desc").textContent = current.description;
  const box = $("command-options");
  box.innerHTML = "";
  for (const spec of current.options) box.appendChild(optionField(spec));
  $("command").hidden = false;
  const first = box.querySelector("input,select");
  if (first) first.focus();
}

function closeCommand() { current = null; $("command").hidden = true; $("composer").value = ""; }
$("command-close").addEventListener("click", closeCommand);

// -- one option field per registered option -------------------------------------------------------
function optionField(spec) {
  const wrap = document.createElement("div");
  wrap.className = "option";
  wrap.dataset.option = spec.name;
  wrap.innerHTML = `<span class="oname"></span>`;
  wrap.querySelector(".oname").textContent = spec.name;
  if (spec.required) wrap.querySelector(".oname").insertAdjacentHTML("beforeend", '<span class="req"> *</span>');
  let input;
  if (spec.choices && spec.choices.length) {
    input = document.createElement("select");
    input.add(new Option("", ""));
    for (const c of spec.choices) input.add(new Option(c.name, c.value));
  } else if (spec.type === BOOLEAN) {
    input = document.createElement("select");
    for (const [label, value] of [["", ""], ["True", "true"], ["False", "false"]]) input.add(new Option(label, value));
  } else if (spec.type === USER) {
    input = document.createElement("select");
    input.add(new Option("", ""));
    for (const u of users) input.add(new Option(u.name, u.id));
  } else if (spec.type === ATTACHMENT) {
    input = document.createElement("input");
    input.type = "file";
    input.addEventListener("change", () => upload(input, wrap));
  } else {
    input = document.createElement("input");
    if (spec.type === INTEGER || spec.type === NUMBER) {
      input.type = "number";
      input.step = spec.type === INTEGER ? "1" : "any";
      if (spec.min_value !== undefined) input.min = spec.min_value;
      if (spec.max_value !== undefined) input.max = spec.max_value;
    }
    if (spec.max_length) input.maxLength = spec.max_length;
    if (spec.autocomplete) autocomplete(input, wrap, spec);
  }
  input.className = "ovalue";
  input.name = spec.name;
  wrap.appendChild(input);
  const help = document.createElement("span");
  help.className = spec.type === ATTACHMENT ? "ofile" : "ohelp";
  help.textContent = spec.description;
  wrap.appendChild(help);
  return wrap;
}

async function upload(input, wrap) {
  const file = input.files[0];
  const note = wrap.querySelector(".ofile");
  delete input.dataset.value;
  if (!file) return;
  note.textContent = `uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  const resp = await fetch("/api/upload", {method: "POST", body: form});
  const data = await resp.json();
  if (data.error) { note.textContent = data.error; return toast(data.error); }
  input.dataset.value = data.id;
  note.textContent = `attached ${data.filename} · ${data.size.toLocaleString()} bytes`;
}

function collect(except) {
  const out = {};
  for (const input of $("command-options").querySelectorAll(".ovalue")) {
    if (input.name === except) continue;
    const value = input.type === "file" ? (input.dataset.value || "")
      : (input.dataset.value !== undefined ? input.dataset.value : input.value);
    if (value !== "") out[input.name] = value;
  }
  return out;
}

function autocomplete(input, wrap, spec) {
  const list = document.createElement("div");
  list.className = "choices";
  list.hidden = true;
  wrap.appendChild(list);
  let timer = null, asked = 0;
  const ask = async () => {
    const mine = ++asked;
    const data = await post("/api/autocomplete", {user: me(), command: current.path, focused: spec.name,
                                                  value: input.value, options: collect(spec.name)});
    if (mine !== asked) return;
    if (data.error) return toast(data.error);
    list.innerHTML = "";
    for (const c of data.choices || []) {
      const row = document.createElement("div");
      row.className = "choice";
      row.textContent = c.name;
      row.addEventListener("mousedown", (e) => {
        e.preventDefault();
        input.value = c.name;
        input.dataset.value = c.value;
        list.hidden = true;
      });
      list.appendChild(row);
    }
    list.hidden = !(data.choices || []).length;
  };
  input.addEventListener("input", () => { delete input.dataset.value; clearTimeout(timer); timer = setTimeout(ask, 200); });
  input.addEventListener("focus", ask);
  input.addEventListener("blur", () => setTimeout(() => { list.hidden = true; }, 150));
}

$("command").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  $("send").disabled = true;
  try {
    const ok = outcome(await post("/api/slash", {user: me(), command: current.path, options: collect()}));
    if (ok) closeCommand();
  } finally {
    $("send").disabled = false;
  }
});

// -- buttons and selects on messages --------------------------------------------------------------
$("channel").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-custom-id]");
  if (!button || button.disabled) return;
  button.disabled = true;
  try {
    outcome(await post("/api/click", {user: me(), message_id: button.dataset.messageId,
                                      custom_id: button.dataset.customId}));
  } finally {
    button.disabled = false;
  }
});

$("channel").addEventListener("change", async (event) => {
  const select = event.target.closest("select[data-custom-id]");
  if (!select || !select.value) return;
  outcome(await post("/api/click", {user: me(), message_id: select.dataset.messageId,
                                    custom_id: select.dataset.customId, values: [select.value]}));
});

// -- modals ---------------------------------------------------------------------------------------
let openModalId = null;

function modalInputs(modal) {
  const out = [];
  for (const row of modal.components || []) {
    if (row.type === 18 && row.component) out.push({...row.component, label: row.label});
    for (const c of row.components || []) out.push(c);
  }
  return out.filter((c) => c.type === 4);
}

function openModal(modal) {
  openModalId = modal.custom_id;
  $("modal-title").textContent = modal.title || "";
  const box = $("modal-fields");
  box.innerHTML = "";
  for (const c of modalInputs(modal)) {
    const label = document.createElement("label");
    label.textContent = c.label || c.custom_id;
    const input = document.createElement(c.style === 2 ? "textarea" : "input");
    input.name = c.custom_id;
    input.value = c.value || "";
    input.placeholder = c.placeholder || "";
    if (c.max_length) input.maxLength = c.max_length;
    input.required = c.required !== false;
    box.append(label, input);
  }
  $("modal-backdrop").hidden = false;
  const first = box.querySelector("input,textarea");
  if (first) first.focus();
}

$("modal-cancel").addEventListener("click", () => { $("modal-backdrop").hidden = true; });
$("modal").addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = {};
  for (const input of $("modal-fields").querySelectorAll("input,textarea")) values[input.name] = input.value;
  $("modal-backdrop").hidden = true;
  outcome(await post("/api/modal", {user: me(), custom_id: openModalId, values}));
});

// -- start ----------------------------------------------------------------------------------------
loadState().then(connect);
setInterval(() => refreshTimes(), 1000);
