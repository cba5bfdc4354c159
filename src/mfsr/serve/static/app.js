// mfsr serve: the page. Plain JavaScript, no library, nothing loaded from outside this server.
"use strict";

const METHODS = [
  ["lr", "LR reference (nearest)"],
  ["bicubic", "bicubic"],
  ["classical", "classical fusion"],
  ["model", "model"],
  ["model_flip", "model + flip ensemble"],
];
const ZOOM = 3;
const clips = new Map(); // id -> last summary
let active = null; // clip id shown
let selected = null; // window index shown
let info = { max_bytes: Infinity }; // from /api/info
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `the server answered ${response.status}`);
  }
  return body;
}

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

async function upload(file) {
  $("clip").hidden = false;
  showError("");
  if (file.size > info.max_bytes) {
    showError(`${file.name}: ${(file.size / 1e6).toFixed(0)} MB, over the server's ` +
      `${(info.max_bytes / 1e6).toFixed(0)} MB limit (mfsr serve --max-upload-mb)`);
    return;
  }
  try {
    const reply = await api(`/api/clips?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file,
    });
    clips.set(reply.id, { id: reply.id, name: file.name, state: "queued" });
    select(reply.id);
    poll(reply.id);
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  }
}

async function poll(id) {
  try {
    const clip = await api(`/api/clips/${id}`);
    clips.set(id, clip);
    renderTabs();
    if (id === active) render(clip);
    if (clip.state === "queued" || clip.state === "running") setTimeout(() => poll(id), 400);
  } catch (e) {
    if (id === active) showError(e.message);
  }
}

function renderTabs() {
  const nav = $("clips");
  nav.replaceChildren();
  for (const clip of clips.values()) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = clip.id === active ? "active" : "";
    b.dataset.id = clip.id;
    b.textContent = clip.name;
    const s = document.createElement("span");
    s.className = "state";
    s.textContent = clip.state;
    b.append(s);
    b.onclick = () => { select(clip.id); };
    nav.append(b);
  }
}

function select(id) {
  active = id;
  selected = null;
  $("compare-box").hidden = true;
  renderTabs();
  render(clips.get(id));
}

function render(clip) {
  if (!clip) return;
  $("clip").hidden = false;
  const running = clip.state === "queued" || clip.state === "running";
  const fraction = clip.total ? clip.done / clip.total : 0;
  $("progress-bar").style.width = `${clip.state === "ready" ? 100 : Math.round(fraction * 100)}%`;
  $("progress-text").textContent = running
    ? `${clip.stage || "waiting"} ${clip.total ? `${clip.done}/${clip.total}` : ""}`
    : clip.state === "ready" ? `${clip.windows.length} windows in ${clip.frames} frames` : clip.state;
  $("cancel").hidden = !running;
  showError(clip.state === "failed" || clip.state === "cancelled" ? `${clip.name}: ${clip.message}` : "");
  $("note").hidden = !clip.note;
  $("note").textContent = clip.note || "";
  $("timeline-box").hidden = clip.state !== "ready";
  if (clip.state === "ready") renderTimeline(clip);
}

function colour(w) {
  const residual = Math.min(1, w.residual_lr_px / 0.5);
  const seen = w.detector_score === null ? 0 : Math.max(0, Math.min(1, (w.detector_score + 0.5) / 1.5));
  const good = Math.max(0, Math.min(1, 0.6 * (1 - residual) + 0.4 * seen - 0.2 * w.interpolated));
  return `hsl(${Math.round(good * 120)}, 60%, 45%)`;
}

function renderTimeline(clip) {
  const box = $("timeline");
  box.replaceChildren();
  const top = Math.max(...clip.windows.map((w) => Math.log1p(w.sharpness)), 1);
  clip.windows.forEach((w, k) => {
    const cell = document.createElement("div");
    cell.className = `window${k === selected ? " selected" : ""}`;
    cell.dataset.index = k;
    cell.tabIndex = 0;
    cell.setAttribute("role", "option");
    cell.style.height = `${Math.round(20 + 60 * Math.log1p(w.sharpness) / top)}px`;
    cell.style.background = colour(w);
    const when = w.time_s === null ? `frame ${w.reference_frame}` : `${w.time_s.toFixed(2)} s`;
    cell.title = `${when} (frame ${w.reference_frame})\nface ${w.face_px} px\n` +
      `sharpness ${w.sharpness}\nregistration residual ${w.residual_lr_px} LR px\n` +
      `detector score ${w.detector_score}\ninterpolated frames ${w.interpolated}`;
    cell.onclick = () => compare(k);
    cell.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") compare(k); };
    box.append(cell);
  });
}

function compare(k) {
  const clip = clips.get(active);
  selected = k;
  renderTimeline(clip);
  const w = clip.windows[k];
  const base = `/api/clips/${clip.id}/windows/${k}`;
  const when = w.time_s === null ? "" : ` at ${w.time_s.toFixed(2)} s`;
  $("compare-title").textContent = `Frame ${w.reference_frame}${when}`;
  const row = $("compare");
  row.replaceChildren();
  for (const [method, label] of METHODS) {
    const fig = document.createElement("figure");
    fig.className = method === "lr" ? "" : "smooth";
    const img = document.createElement("img");
    img.dataset.method = method;
    img.alt = label;
    img.src = `${base}/${method}.png`;
    img.onerror = () => showError(`${label}: the image could not be made`);
    const loupe = document.createElement("div");
    loupe.className = "loupe";
    const cap = document.createElement("figcaption");
    cap.textContent = label;
    fig.append(img, loupe, cap);
    row.append(fig);
  }
  const stem = clip.name.replace(/\.[^.]*$/, "");
  const frame = String(w.reference_frame).padStart(6, "0");
  $("export-sheet").href = `${base}/sheet.png`;
  $("export-sheet").download = `${stem}_frame${frame}_sheet.png`;
  $("export-record").href = `${base}/record.json`;
  $("export-record").download = `${stem}_frame${frame}_record.json`;
  $("frames").hidden = true;
  $("frames").replaceChildren();
  $("compare-box").hidden = false;
}

function showFrames() {
  const clip = clips.get(active);
  const box = $("frames");
  if (!box.hidden) { box.hidden = true; return; }
  box.replaceChildren();
  const w = clip.windows[selected];
  for (let i = 0; i < w.frames.length; i++) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.dataset.frame = i;
    img.src = `/api/clips/${clip.id}/windows/${selected}/frame${i}.png`;
    img.alt = `input frame ${w.frames[i]}`;
    const cap = document.createElement("figcaption");
    cap.textContent = `frame ${w.frames[i]}`;
    fig.append(img, cap);
    box.append(fig);
  }
  box.hidden = false;
}

// one loupe per image, all at the same spot: the methods compared detail for detail
function moveLoupes(event) {
  const img = event.target.closest("figure") && event.target.closest("figure").querySelector("img");
  const on = $("loupe-on").checked;
  const loupes = document.querySelectorAll("#compare .loupe");
  if (!img || !on) { loupes.forEach((l) => { l.style.display = "none"; }); return; }
  const r = img.getBoundingClientRect();
  const fx = (event.clientX - r.left) / r.width;
  const fy = (event.clientY - r.top) / r.height;
  document.querySelectorAll("#compare figure").forEach((fig) => {
    const pic = fig.querySelector("img");
    const loupe = fig.querySelector(".loupe");
    const size = 90;
    loupe.style.display = "block";
    loupe.style.left = `${fx * pic.width - size / 2}px`;
    loupe.style.top = `${fy * pic.height - size / 2}px`;
    loupe.style.backgroundImage = `url(${pic.src})`;
    loupe.style.backgroundSize = `${pic.width * ZOOM}px ${pic.height * ZOOM}px`;
    loupe.style.backgroundPosition = `${-(fx * pic.width * ZOOM - size / 2)}px ${-(fy * pic.height * ZOOM - size / 2)}px`;
    loupe.style.imageRendering = fig.className === "smooth" ? "auto" : "pixelated";
  });
}

function bestMoment() {
  const clip = clips.get(active);
  if (clip && clip.best && clip.best.length) compare(clip.best[0]);
}

function setUp() {
  const drop = $("drop");
  $("file-input").addEventListener("change", (e) => { [...e.target.files].forEach(upload); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    [...e.dataTransfer.files].forEach(upload);
  });
  $("cancel").onclick = () => active && api(`/api/clips/${active}/cancel`, { method: "POST" })
    .then(() => poll(active)).catch((e) => showError(e.message));
  $("best").onclick = bestMoment;
  $("show-frames").onclick = showFrames;
  $("compare").addEventListener("mousemove", moveLoupes);
  $("compare").addEventListener("mouseleave", () => document.querySelectorAll("#compare .loupe").forEach((l) => { l.style.display = "none"; }));
  api("/api/info").then((reply) => {
    info = reply;
    $("model").textContent = `model: ${reply.model}, x${reply.scale}, ${reply.n_frames} frames`;
  }).catch((e) => showError(e.message));
  // clips already open on the server (a reloaded page)
  api("/api/clips").then((list) => {
    list.forEach((c) => clips.set(c.id, c));
    if (list.length) { select(list[list.length - 1].id); list.forEach((c) => poll(c.id)); }
  }).catch((e) => showError(e.message));
}

setUp();
