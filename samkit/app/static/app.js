// samkit app: prompt SAM on images and videos, see the masks, save the dataset on every change.
// Plain browser JavaScript, no libraries: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
  [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195]];
const DRAG_PIXELS = 6; // a press that moves farther than this (on screen) draws a box

// What the page knows; window.samkit exposes it to scripts and tests (timings: click to mask drawn, ms).
const S = {
  project: null, kind: null, index: 0, frame: 0, width: 0, height: 0,
  objects: [], prompts: [], selected: null, hidden: new Set(), cls: 0,
  undo: 0, redo: 0, busy: 0, drawn: 0, timings: [], phases: [], errors: [], tracking: null, frameMasks: null,
};
window.samkit = S;

// ------------------------------------------------------------------ requests
function setBusy(delta) {
  S.busy += delta;
  document.body.dataset.pending = String(S.busy);
}

async function api(path, body) {
  setBusy(1);
  try {
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
    if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
    return data;
  } finally {
    setBusy(-1);
  }
}

let chain = Promise.resolve();
// Edits run one after the other, each seeing the state the previous one left.
function queue(fn) {
  chain = chain.then(fn).catch(showError);
  return chain;
}

function status(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

function showError(e) {
  S.errors.push(String(e.message || e));
  status(String(e.message || e), true);
}

// ------------------------------------------------------------------ drawing
function colorOf(id) {
  return PALETTE[(id - 1 + PALETTE.length) % PALETTE.length];
}

function fitCanvases() {
  const stage = $("stage");
  const box = $("canvases");
  if (!S.width) return;
  const scale = Math.min((stage.clientWidth - 16) / S.width, (stage.clientHeight - 16) / S.height);
  box.style.width = `${Math.max(1, Math.floor(S.width * scale))}px`;
  box.style.height = `${Math.max(1, Math.floor(S.height * scale))}px`;
}

function sizeCanvases(w, h) {
  if (S.width === w && S.height === h) return;
  S.width = w;
  S.height = h;
  for (const id of ["picture", "masks", "marks"]) {
    $(id).width = w;
    $(id).height = h;
  }
  fitCanvases();
}

async function drawPicture(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${res.statusText}`);
  const bitmap = await createImageBitmap(await res.blob());
  sizeCanvases(bitmap.width, bitmap.height);
  $("picture").getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
}

const B64 = new Uint8Array(128);
for (let i = 0; i < 64; i++) {
  B64["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".charCodeAt(i)] = i;
}

function base64Bytes(text) {
  let n = text.length;
  while (n && text.charCodeAt(n - 1) === 61) n--; // "=" padding
  const out = new Uint8Array((n * 3) >> 2);
  let j = 0;
  for (let i = 0; i < n; i += 4) {
    const a = B64[text.charCodeAt(i)], b = B64[text.charCodeAt(i + 1)];
    const c = B64[text.charCodeAt(i + 2)], d = B64[text.charCodeAt(i + 3)];
    out[j++] = (a << 2) | (b >> 4);
    if (j < out.length) out[j++] = ((b & 15) << 4) | (c >> 2);
    if (j < out.length) out[j++] = ((c & 3) << 6) | d;
  }
  return out;
}

// A mask's runs: base64 of little-endian uint32 run lengths, row-major, zeros first (decoded once per object).
function runsOf(o) {
  if (o.decoded === undefined) {
    const bytes = base64Bytes(o.runs || "");
    o.decoded = new Uint32Array(bytes.buffer, 0, bytes.length >> 2);
  }
  return o.decoded;
}

// Paint every shown object's mask from its runs, then the prompts.
function drawMasks() {
  const ctx = $("masks").getContext("2d");
  const w = S.width, h = S.height;
  if (!w) return;
  const img = ctx.createImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  for (const o of S.objects) {
    if (S.hidden.has(o.id) || !o.runs) continue;
    const runs = runsOf(o);
    const [r, g, b] = colorOf(o.id);
    const a = o.id === S.selected ? 170 : 120;
    const value = ((a << 24) | (b << 16) | (g << 8) | r) >>> 0; // RGBA bytes, little-endian
    let pos = 0;
    for (let k = 0; k < runs.length; k++) {
      const n = runs[k];
      if (k % 2 === 1) px.fill(value, pos, pos + n);
      pos += n;
    }
  }
  ctx.putImageData(img, 0, 0);
  drawMarks();
  S.drawn += 1;
}

function drawMarks(dragBox) {
  const ctx = $("marks").getContext("2d");
  ctx.clearRect(0, 0, S.width, S.height);
  const unit = Math.max(S.width, S.height) / 200;
  const prompts = S.kind === "video" ? S.prompts : S.objects;
  for (const o of prompts) {
    if (S.hidden.has(o.id)) continue;
    const [r, g, b] = colorOf(o.id);
    if (o.box) {
      ctx.strokeStyle = `rgb(${r},${g},${b})`;
      ctx.lineWidth = unit * 0.6;
      ctx.strokeRect(o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1]);
    }
    for (const [x, y, label] of o.points || []) {
      ctx.beginPath();
      ctx.arc(x, y, unit * 1.4, 0, 2 * Math.PI);
      ctx.fillStyle = label ? "#2ecc40" : "#ff4136";
      ctx.fill();
      ctx.lineWidth = unit * 0.4;
      ctx.strokeStyle = o.id === S.selected ? "#ffffff" : "#111111";
      ctx.stroke();
    }
  }
  if (dragBox) {
    ctx.setLineDash([unit * 2, unit]);
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = unit * 0.5;
    ctx.strokeRect(dragBox[0], dragBox[1], dragBox[2] - dragBox[0], dragBox[3] - dragBox[1]);
    ctx.setLineDash([]);
  }
}

// ------------------------------------------------------------------ side panel
function renderNames() {
  const sel = $("cls");
  const names = S.project.names;
  sel.innerHTML = "";
  for (const [k, v] of Object.entries(names).sort((a, b) => a[0] - b[0])) {
    const opt = document.createElement("option");
    opt.value = k;
    opt.textContent = `${k}: ${v}`;
    sel.appendChild(opt);
  }
  sel.value = String(S.cls);
}

function listed() {
  if (S.kind !== "video") return S.objects;
  return (S.project.objects || []).map((o) => ({ id: o.id, cls: o.cls }));
}

function renderObjects() {
  const ul = $("objects");
  ul.innerHTML = "";
  for (const o of listed()) {
    const li = document.createElement("li");
    li.dataset.id = o.id;
    li.className = (o.id === S.selected ? "selected " : "") + (S.hidden.has(o.id) ? "hidden" : "");
    const [r, g, b] = colorOf(o.id);
    const name = S.project.names[o.cls] ?? o.cls;
    li.innerHTML = `<span class="swatch" style="background: rgb(${r},${g},${b})"></span>` +
      `<span class="label">#${o.id} ${escapeHtml(name)}</span>` +
      `<button class="eye" title="show / hide">${S.hidden.has(o.id) ? "show" : "hide"}</button>`;
    li.addEventListener("click", (ev) => {
      if (ev.target.classList.contains("eye")) {
        if (S.hidden.has(o.id)) S.hidden.delete(o.id); else S.hidden.add(o.id);
      } else {
        select(o.id); // N or "New object" deselects
      }
      renderObjects();
      drawMasks();
    });
    ul.appendChild(li);
  }
  $("undo").disabled = !S.undo;
  $("redo").disabled = !S.redo;
  $("delete").disabled = S.selected === null;
}

function escapeHtml(text) {
  const d = document.createElement("div");
  d.textContent = String(text);
  return d.innerHTML;
}

function select(id) {
  S.selected = id;
  const o = listed().find((x) => x.id === id);
  if (o) {
    S.cls = o.cls;
    $("cls").value = String(o.cls);
  }
}

function applyImageState(data) {
  // Objects whose masks did not change come without runs: keep the ones drawn.
  const old = new Map(S.objects.map((o) => [o.id, o]));
  S.objects = data.objects.map((o) => (o.runs === undefined && old.has(o.id)
    ? { ...o, runs: old.get(o.id).runs, decoded: old.get(o.id).decoded } : o));
  S.undo = data.undo;
  S.redo = data.redo;
  if (S.selected !== null && !S.objects.some((o) => o.id === S.selected)) S.selected = null;
  renderObjects();
  drawMasks();
}

function saved(what) {
  status(`saved ${what}`);
  $("saving").textContent = `saving ${S.project.format} to ${S.project.out}`;
}

// ------------------------------------------------------------------ images
async function openImage(i) {
  const n = S.project.items.length;
  i = Math.max(0, Math.min(n - 1, i));
  S.index = i;
  S.selected = null;
  S.hidden = new Set(); // ids are per image: another image's #1 is another object
  history.replaceState(null, "", `${location.pathname}${location.search}#${i}`);
  $("position").textContent = `${i + 1} / ${n}`;
  $("name").textContent = S.project.items[i];
  status("encoding…");
  const [state] = await Promise.all([api(`/api/images/${i}`), drawPicture(`/api/images/${i}/pixels`)]);
  if (S.index !== i) return; // another image was opened meanwhile
  S.objects = [];
  applyImageState(state);
  status(`${state.objects.length} object(s)`);
}

function objectById(id) {
  return S.objects.find((o) => o.id === id);
}

// A click or a box for the selected object (a new object when none is selected).
function promptImage(click, box, t0) {
  const index = S.index;
  return queue(async () => {
    const o = S.selected === null ? null : objectById(S.selected);
    const points = o ? o.points.slice() : [];
    if (click) points.push(click);
    const body = { points, box: box || (o ? o.box : null), cls: o ? o.cls : S.cls };
    if (o) body.id = o.id;
    const t1 = performance.now();
    const data = await api(`/api/images/${index}/object`, body);
    const t2 = performance.now();
    if (S.index !== index) return;
    if (data.changed && data.changed.length) S.selected = data.changed[0];
    applyImageState(data);
    const t3 = performance.now();
    requestAnimationFrame(() => {
      const t4 = performance.now();
      S.timings.push(t4 - t0);
      S.phases.push({ wait: t1 - t0, request: t2 - t1, paint: t3 - t2, frame: t4 - t3 });
    });
    saved(`object #${S.selected}`);
  });
}

function imageAction(path, body = {}) {
  const index = S.index;
  return queue(async () => {
    const data = await api(`/api/images/${index}/${path}`, body);
    if (S.index !== index) return;
    if (data.changed && data.changed.length === 1) S.selected = data.changed[0];
    applyImageState(data);
    if (path === "everything") status(`segment everything: ${data.changed.length} mask(s) added (saved)`);
    else saved(path);
  });
}

// ------------------------------------------------------------------ video
let pictureLoading = false;
let pictureWanted = null;

// Draw frame k and the given objects (or the saved ones); frames asked for while one loads: only the last.
async function showFrame(k, masks) {
  S.frame = k;
  $("scrub").value = String(k);
  $("frame").textContent = String(k);
  history.replaceState(null, "", `${location.pathname}${location.search}#f=${k}`);
  pictureWanted = [k, masks];
  if (pictureLoading) return;
  pictureLoading = true;
  try {
    while (pictureWanted) {
      const [f, m] = pictureWanted;
      pictureWanted = null;
      const data = m || await api(`/api/video/masks/${f}`);
      await drawPicture(`/api/video/frames/${f}`);
      if (S.frame !== f && pictureWanted) continue;
      S.objects = data.objects;
      S.prompts = data.prompts || [];
      renderObjects();
      drawMasks();
    }
  } catch (e) {
    showError(e);
  } finally {
    pictureLoading = false;
  }
}

function promptFrame(click, box, t0) {
  const frame = S.frame;
  return queue(async () => {
    const id = S.selected;
    const mine = S.prompts.find((p) => p.id === id);
    const points = mine ? mine.points.slice() : [];
    if (click) points.push(click);
    const body = { frame, points, box: box || (mine ? mine.box : null), cls: S.cls };
    if (id !== null) body.id = id;
    const data = await api("/api/video/prompt", body);
    S.project.objects = data.info.objects;
    S.selected = data.id;
    if (S.frame === frame) {
      S.objects = data.objects;
      S.prompts = data.prompts;
      renderObjects();
      drawMasks();
      requestAnimationFrame(() => S.timings.push(performance.now() - t0));
    }
    saved(`frame ${frame}`);
  });
}

async function track(reverse) {
  if (S.tracking) return;
  const body = { start: S.frame, reverse };
  S.tracking = true;
  $("stop").disabled = false;
  $("back").disabled = $("forward").disabled = true;
  setBusy(1);
  try {
    const res = await fetch("/api/video/propagate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      throw new Error(data.error || `${res.status} ${res.statusText}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const line = block.split("\n").find((l) => l.startsWith("data: "));
        if (line) onTrackEvent(JSON.parse(line.slice(6)));
      }
    }
  } catch (e) {
    showError(e);
  } finally {
    S.tracking = null;
    setBusy(-1);
    $("stop").disabled = true;
    $("back").disabled = $("forward").disabled = false;
  }
}

function onTrackEvent(ev) {
  if (ev.error) throw new Error(ev.error);
  if (ev.total) $("progress").max = ev.total;
  if (ev.event === "frame") {
    $("progress").value = ev.done;
    status(`tracking: ${ev.done} / ${ev.total} frames`);
    showFrame(ev.frame, ev);
  } else if (ev.event === "done") {
    status(`tracked ${ev.done} frames in ${ev.seconds} s (saved)`);
  } else if (ev.event === "stopped") {
    status(`stopped after ${ev.done} frames (saved)`);
  }
}

// ------------------------------------------------------------------ pointer and keys
function toImage(ev) {
  const r = $("marks").getBoundingClientRect();
  const x = ((ev.clientX - r.left) / r.width) * S.width;
  const y = ((ev.clientY - r.top) / r.height) * S.height;
  return [Math.min(Math.max(x, 0), S.width), Math.min(Math.max(y, 0), S.height)];
}

let press = null;

function onPointerDown(ev) {
  if (ev.button !== 0 && ev.button !== 2) return;
  ev.preventDefault();
  $("marks").setPointerCapture(ev.pointerId);
  press = { button: ev.button, shift: ev.shiftKey, x: ev.clientX, y: ev.clientY, at: toImage(ev), drag: false };
}

function onPointerMove(ev) {
  if (!press || press.button !== 0) return;
  if (Math.hypot(ev.clientX - press.x, ev.clientY - press.y) > DRAG_PIXELS) press.drag = true;
  if (press.drag) drawMarks(boxOf(press.at, toImage(ev)));
}

function boxOf(a, b) {
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
}

function onPointerUp(ev) {
  if (!press) return;
  const p = press;
  press = null;
  const t0 = performance.now();
  const send = S.kind === "video" ? promptFrame : promptImage;
  if (S.tracking) return showError(new Error("tracking is running: stop it first"));
  if (p.drag) {
    const box = boxOf(p.at, toImage(ev)).map((v) => Math.round(v * 10) / 10);
    send(null, box, t0);
  } else {
    const label = p.button === 2 || p.shift ? 0 : 1;
    send([Math.round(p.at[0] * 10) / 10, Math.round(p.at[1] * 10) / 10, label], null, t0);
  }
}

function deleteSelected() {
  if (S.selected === null) return;
  const id = S.selected;
  if (S.kind === "video") {
    queue(async () => {
      const info = await api("/api/video/delete", { id });
      S.project.objects = info.objects;
      S.selected = null;
      S.objects = S.objects.filter((o) => o.id !== id);
      S.prompts = S.prompts.filter((o) => o.id !== id);
      renderObjects();
      drawMasks();
      saved(`deletion of #${id}`);
    });
  } else {
    imageAction("delete", { id });
  }
}

function onKey(ev) {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  const key = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && key === "z") {
    ev.preventDefault();
    if (S.kind === "images") imageAction(ev.shiftKey ? "redo" : "undo");
  } else if ((ev.ctrlKey || ev.metaKey) && key === "y") {
    ev.preventDefault();
    if (S.kind === "images") imageAction("redo");
  } else if (key === "n") {
    select(null);
    renderObjects();
    drawMasks();
  } else if (key === "delete" || key === "backspace") {
    deleteSelected();
  } else if (S.kind === "images" && (key === "d" || key === "arrowright")) {
    queue(() => openImage(S.index + 1));
  } else if (S.kind === "images" && (key === "a" || key === "arrowleft")) {
    queue(() => openImage(S.index - 1));
  } else if (S.kind === "video" && (key === "d" || key === "arrowright")) {
    showFrame(Math.min(S.project.frames - 1, S.frame + 1));
  } else if (S.kind === "video" && (key === "a" || key === "arrowleft")) {
    showFrame(Math.max(0, S.frame - 1));
  }
}

// ------------------------------------------------------------------ start
function bind() {
  const marks = $("marks");
  marks.addEventListener("pointerdown", onPointerDown);
  marks.addEventListener("pointermove", onPointerMove);
  marks.addEventListener("pointerup", onPointerUp);
  marks.addEventListener("contextmenu", (ev) => ev.preventDefault());
  window.addEventListener("keydown", onKey);
  window.addEventListener("resize", fitCanvases);
  $("prev").onclick = () => queue(() => openImage(S.index - 1));
  $("next").onclick = () => queue(() => openImage(S.index + 1));
  $("undo").onclick = () => imageAction("undo");
  $("redo").onclick = () => imageAction("redo");
  $("everything").onclick = () => {
    status("segmenting everything… (a while on a CPU)");
    imageAction("everything", { cls: S.cls });
  };
  $("new-object").onclick = () => { select(null); renderObjects(); drawMasks(); };
  $("delete").onclick = deleteSelected;
  $("cls").onchange = () => {
    S.cls = Number($("cls").value);
    const id = S.selected;
    if (id === null) return;
    if (S.kind === "video") {
      queue(async () => {
        const info = await api("/api/video/class", { id, cls: S.cls });
        S.project.objects = info.objects;
        renderObjects();
        saved(`class of #${id}`);
      });
    } else {
      imageAction("class", { id, cls: S.cls });
    }
  };
  $("name-form").onsubmit = (ev) => {
    ev.preventDefault();
    const name = $("new-name").value.trim();
    if (!name) return;
    queue(async () => {
      const data = await api("/api/names", { name });
      S.project.names = data.names;
      S.cls = data.cls;
      $("new-name").value = "";
      renderNames();
      renderObjects();
      saved(`class ${name}`);
    });
  };
  $("text-form").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    status(`finding ${text}…`);
    queue(async () => {
      const data = await api(`/api/images/${S.index}/text`, { text });
      const info = await api("/api/project");
      S.project.names = info.names;
      renderNames();
      applyImageState(data);
      status(`${data.changed.length} × "${text}" found (saved)`);
    });
  };
  $("export").onclick = () => queue(async () => {
    const got = await api("/api/export", { format: $("export-format").value });
    status(`exported ${got.items} item(s) as ${got.format} to ${got.folder}`);
  });
  $("scrub").oninput = () => showFrame(Number($("scrub").value));
  $("forward").onclick = () => track(false);
  $("back").onclick = () => track(true);
  $("stop").onclick = () => api("/api/video/stop", {}).catch(showError);
}

async function start() {
  bind();
  S.project = await api("/api/project");
  S.kind = S.project.kind;
  document.body.classList.add(`mode-${S.kind}`);
  if (S.project.features.texts) document.body.classList.add("texts");
  if (S.project.features.everything) document.body.classList.add("everything");
  $("model").textContent = S.project.model;
  $("saving").textContent = `saving ${S.project.format} to ${S.project.out}`;
  S.cls = Number(Object.keys(S.project.names)[0] || 0);
  renderNames();
  const hash = location.hash.slice(1);
  if (S.kind === "video") {
    $("name").textContent = S.project.name;
    $("scrub").max = String(S.project.frames - 1);
    $("frames").textContent = String(S.project.frames - 1);
    const f = hash.startsWith("f=") ? Number(hash.slice(2)) : 0;
    await showFrame(Number.isInteger(f) && f >= 0 && f < S.project.frames ? f : 0);
  } else {
    const i = Number(hash);
    await openImage(Number.isInteger(i) ? i : 0);
  }
  document.body.dataset.ready = "1";
}

start().catch(showError);
