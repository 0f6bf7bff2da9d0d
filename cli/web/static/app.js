// slashcat upload page: drop or pick images, classify each through /api/classify.
"use strict";

const PARALLEL = 3;
let health = null;
const queue = [];
let running = 0;

const $ = (sel, root = document) => root.querySelector(sel);

function mib(n) {
  return `${(n / 1048576).toFixed(n < 1048576 ? 2 : 1)} MiB`;
}

function showPageError(message) {
  const el = $("#page-error");
  el.textContent = message;
  el.hidden = !message;
}

async function loadHealth() {
  try {
    const r = await fetch("/api/health");
    if (!r.ok) throw new Error(`health check answered ${r.status}`);
    health = await r.json();
    $("#model-version").textContent = health.model.version;
    $("#model-classes").textContent = `· ${health.model.classes.length} categories`;
    $("#limits").textContent =
      `up to ${health.limits.max_files} at once, ${mib(health.limits.max_file_bytes)} each`;
  } catch (err) {
    showPageError(`Cannot reach the server: ${err.message}`);
  }
}

function addFiles(files) {
  if (!files || !files.length) return;
  showPageError("");
  for (const file of files) {
    const card = makeCard(file);
    $("#results").prepend(card.el);
    queue.push(card);
  }
  $("#toolbar").hidden = false;
  pump();
}

function makeCard(file) {
  const el = $("#card").content.firstElementChild.cloneNode(true);
  $(".filename", el).textContent = file.name || "pasted image";
  el.classList.add("pending");
  return { el, file };
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const card = queue.shift();
    running += 1;
    classify(card).finally(() => {
      running -= 1;
      pump();
    });
  }
}

function fail(card, message) {
  card.el.classList.remove("pending");
  card.el.classList.add("failed");
  $(".status", card.el).textContent = "Not classified";
  const err = $(".error", card.el);
  err.textContent = message;
  err.hidden = false;
}

async function readError(r) {
  try {
    const body = await r.json();
    if (body.error) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `the server answered ${r.status}`;
}

async function classify(card) {
  const limit = health && health.limits.max_file_bytes;
  if (limit && card.file.size > limit) {
    fail(card, `${card.file.name}: too large (${mib(card.file.size)}; at most ${mib(limit)})`);
    return;
  }
  const form = new FormData();
  form.append("files", card.file, card.file.name);
  const title = document.getElementById("title").value.trim();
  if (title) form.append("title", title);
  let r;
  try {
    r = await fetch("/api/classify", { method: "POST", body: form });
  } catch (err) {
    fail(card, `Upload failed: ${err.message}`);
    return;
  }
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    fail(card, `the server answered ${r.status}`);
    return;
  }
  const result = body.results && body.results[0];
  if (!result) {
    fail(card, body.error ? body.error.message : `the server answered ${r.status}`);
    return;
  }
  if (!result.ok) {
    fail(card, result.error.message);
    return;
  }
  render(card, result, body.model_version);
}

function render(card, result, version) {
  const el = card.el;
  el.classList.remove("pending");
  el.classList.add("done");
  // The thumbnail is drawn only once the server has accepted the bytes as a sane image.
  const img = $(".thumb img", el);
  img.src = URL.createObjectURL(card.file);
  img.alt = card.file.name;
  $(".status", el).innerHTML = "";
  const status = $(".status", el);
  status.append("model ");
  const v = document.createElement("span");
  v.className = "version";
  v.textContent = version;
  status.append(v);
  const list = $(".guesses", el);
  for (const g of result.top_k) {
    const li = document.createElement("li");
    li.className = "guess";
    const name = document.createElement("span");
    name.className = "category";
    name.textContent = g.category;
    const pct = document.createElement("span");
    pct.className = "confidence";
    pct.textContent = `${(g.confidence * 100).toFixed(1)}%`;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(1, Math.round(g.confidence * 100))}%`;
    bar.append(fill);
    li.append(name, pct, bar);
    list.append(li);
  }
  if (health && health.allow_save) setUpSave(card, result);
}

function setUpSave(card, result) {
  const form = $("form.save", card.el);
  const select = $("select", form);
  for (const c of health.model.classes) {
    const opt = document.createElement("option");
    opt.value = c;
    opt.textContent = c;
    select.append(opt);
  }
  select.value = result.top_k[0].category;
  form.hidden = false;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = $("button", form);
    const status = $(".save-status", form);
    button.disabled = true;
    status.className = "save-status";
    status.textContent = "Saving…";
    const data = new FormData();
    data.append("file", card.file, card.file.name);
    data.append("category", select.value);
    try {
      const r = await fetch("/api/save", { method: "POST", body: data });
      if (!r.ok) throw new Error(await readError(r));
      const saved = await r.json();
      status.classList.add("saved");
      status.textContent = `Saved as “${saved.category}” (product #${saved.product_id})`;
    } catch (err) {
      status.classList.add("error");
      status.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}

function init() {
  const drop = $("#drop");
  const picker = $("#picker");
  picker.addEventListener("change", () => {
    addFiles(picker.files);
    picker.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    addFiles(ev.dataTransfer.files);
  });
  // A file dropped outside the zone must not navigate away from the page.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
  $("#clear").addEventListener("click", () => {
    for (const img of document.querySelectorAll(".thumb img")) {
      if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    }
    $("#results").replaceChildren();
    $("#toolbar").hidden = true;
  });
  loadHealth();
}

document.addEventListener("DOMContentLoaded", init);
