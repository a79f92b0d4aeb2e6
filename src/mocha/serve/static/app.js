// The MOCHA page: enrol by drawing a box, see the gallery, detect on dropped photos. Plain JS, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
const MAX_W = 480, RESULT_W = 560;
const enrol = { blob: null, name: "", img: null, scale: 1, box: null, drag: null };

async function api(method, url, body) {
  const res = await fetch(url, { method, body });
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error((data && data.detail) || `${res.status} ${res.statusText}`);
  return data;
}

function say(el, text, ok) { el.textContent = text; el.className = ok ? "ok" : "error"; }

function colour(name) {  // a stable colour per instance name; unknowns grey
  if (!name) return "#9e9e9e";
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360}, 80%, 45%)`;
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file as an image"));
    img.src = URL.createObjectURL(blob);
  });
}

async function refreshHealth() {
  const h = await api("GET", "/health");
  $("health").textContent = `bundle ${h.bundle_digest.slice(0, 12)} · ${h.backend} · ${h.instances} instance(s)`;
  const sel = $("enroll-coarse");
  if (sel.options.length === 1) for (const c of h.classes) sel.add(new Option(c, c));
}

async function refreshInstances() {
  const { instances } = await api("GET", "/instances");
  const ul = $("instances");
  ul.replaceChildren();
  for (const inst of instances) {
    const li = document.createElement("li");
    li.dataset.name = inst.name;
    const pic = inst.thumbnail ? Object.assign(document.createElement("img"), { src: inst.thumbnail, alt: inst.name })
      : Object.assign(document.createElement("div"), { className: "nothumb", textContent: "no picture" });
    const b = Object.assign(document.createElement("b"), { textContent: inst.name });
    const info = Object.assign(document.createElement("span"), { textContent: `${inst.coarse} · ${inst.shots} shot(s)` });
    const rm = Object.assign(document.createElement("button"), { type: "button", textContent: "remove", className: "remove" });
    rm.onclick = async () => {
      try { await api("DELETE", `/instances/${encodeURIComponent(inst.name)}`); } catch (e) { say($("enroll-msg"), e.message); }
      await refresh();
    };
    li.append(pic, b, info, rm);
    ul.append(li);
  }
  if (!instances.length) ul.textContent = "nothing enrolled yet";
}

async function refresh() { await Promise.all([refreshHealth(), refreshInstances()]); }

// ---------------------------------------------------------------- enrolment: photo + box drawn by mouse
async function setEnrolPhoto(blob, name) {
  enrol.blob = blob; enrol.name = name; enrol.box = null;
  enrol.img = await loadImage(blob);
  const c = $("enroll-canvas");
  enrol.scale = Math.min(1, MAX_W / enrol.img.naturalWidth);
  c.width = Math.round(enrol.img.naturalWidth * enrol.scale);
  c.height = Math.round(enrol.img.naturalHeight * enrol.scale);
  drawEnrol();
}

function drawEnrol() {
  const c = $("enroll-canvas"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (enrol.img) g.drawImage(enrol.img, 0, 0, c.width, c.height);
  const b = enrol.drag || enrol.box;
  if (b) {
    const s = enrol.scale;
    g.lineWidth = 3; g.strokeStyle = "#ff1744";
    g.strokeRect(b[0] * s, b[1] * s, (b[2] - b[0]) * s, (b[3] - b[1]) * s);
  }
  $("enroll-box").textContent = enrol.box ? `your box: ${enrol.box.join(", ")}`
    : "no box drawn: the detector's best box";
}

function imagePoint(ev) {  // mouse position → original-image pixels
  const c = $("enroll-canvas"), r = c.getBoundingClientRect();
  const x = (ev.clientX - r.left) * (c.width / r.width) / enrol.scale;
  const y = (ev.clientY - r.top) * (c.height / r.height) / enrol.scale;
  const W = enrol.img.naturalWidth, H = enrol.img.naturalHeight;
  return [Math.max(0, Math.min(W, x)), Math.max(0, Math.min(H, y))];
}

function boxOf(a, b) { return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])]; }

function wireDrawing() {
  const c = $("enroll-canvas");
  let start = null;
  c.addEventListener("mousedown", (ev) => { if (enrol.img) { start = imagePoint(ev); enrol.drag = [...start, ...start]; } });
  c.addEventListener("mousemove", (ev) => { if (start) { enrol.drag = boxOf(start, imagePoint(ev)); drawEnrol(); } });
  window.addEventListener("mouseup", (ev) => {
    if (!start) return;
    const b = boxOf(start, imagePoint(ev));
    start = null; enrol.drag = null;
    if (b[2] - b[0] >= 2 && b[3] - b[1] >= 2) enrol.box = b.map((v) => Math.round(v * 10) / 10);
    drawEnrol();
  });
}

async function doEnrol() {
  const msg = $("enroll-msg");
  if (!enrol.blob) return say(msg, "pick a photo first");
  const form = new FormData();
  form.append("name", $("enroll-name").value);
  form.append("images", enrol.blob, enrol.name);
  if (enrol.box) form.append("boxes", JSON.stringify([enrol.box]));
  if ($("enroll-coarse").value) form.append("coarse", $("enroll-coarse").value);
  form.append("append", $("enroll-append").checked ? "true" : "false");
  try {
    const r = await api("POST", "/instances", form);
    const shot = r.shots[0];
    say(msg, `enrolled "${r.instance.name}" (${r.instance.coarse}, ${r.instance.shots} shot(s)) with ` +
      (shot.box_source === "user" ? "your box" : `the detector's best box (conf ${shot.det_conf.toFixed(2)})`), true);
    await refresh();
  } catch (e) { say(msg, e.message); }
}

// ---------------------------------------------------------------- detection: drop / pick / snapshot
async function detectOne(blob, name) {
  const msg = $("detect-msg");
  const form = new FormData();
  form.append("image", blob, name);
  const q = new URLSearchParams();
  if ($("detect-minsim").value !== "") q.set("min_similarity", $("detect-minsim").value);
  if ($("detect-conf").value !== "") q.set("conf", $("detect-conf").value);
  try {
    const [res, img] = await Promise.all([api("POST", `/detect?${q}`, form), loadImage(blob)]);
    $("results").prepend(drawResult(res, img));
    const named = res.detections.filter((d) => d.instance).length;
    say(msg, `${name}: ${res.detections.length} box(es), ${named} named`, true);
  } catch (e) { say(msg, `${name}: ${e.message}`); }
}

function drawResult(res, img) {
  const fig = document.createElement("figure");
  fig.className = "result";
  fig.dataset.source = res.source;
  const c = document.createElement("canvas");
  const s = Math.min(1, RESULT_W / res.width);
  c.width = Math.round(res.width * s); c.height = Math.round(res.height * s);
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0, c.width, c.height);
  const shown = res.detections.filter((d) => d.instance || $("detect-unknown").checked);
  shown.sort((a, b) => (a.instance ? 1 : 0) - (b.instance ? 1 : 0));  // named boxes drawn last, on top
  g.font = "bold 13px system-ui, sans-serif";
  for (const d of shown) {
    const [x1, y1, x2, y2] = d.box.map((v) => v * s);
    g.lineWidth = d.instance ? 3 : 1; g.strokeStyle = colour(d.instance);
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (d.instance) {
      const text = `${d.name} ${d.score.toFixed(2)}`;
      g.fillStyle = colour(d.instance);
      g.fillRect(x1, Math.max(0, y1 - 16), g.measureText(text).width + 6, 16);
      g.fillStyle = "#fff"; g.fillText(text, x1 + 3, Math.max(12, y1 - 4));
    }
  }
  const cap = document.createElement("figcaption");
  const ul = document.createElement("ul");
  for (const d of res.detections.filter((d) => d.instance)) {
    const li = Object.assign(document.createElement("li"), {
      textContent: `${d.name} — score ${d.score.toFixed(2)}, similarity ${d.similarity.toFixed(2)}` });
    li.dataset.name = d.name;
    ul.append(li);
  }
  const unknown = res.detections.length - ul.children.length;
  cap.append(Object.assign(document.createElement("b"), { textContent: res.source }), ul,
    Object.assign(document.createElement("span"), { className: "hint", textContent: `${unknown} unknown box(es)` }));
  fig.append(c, cap);
  return fig;
}

function wireDetect() {
  $("detect-file").addEventListener("change", async (ev) => {
    for (const f of ev.target.files) await detectOne(f, f.name);
    ev.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (ev) => {
    ev.preventDefault(); drop.classList.remove("over");
    for (const f of ev.dataTransfer.files) await detectOne(f, f.name);
  });
}

// ---------------------------------------------------------------- webcam (where the browser allows it)
async function snapshot() {
  const v = $("webcam");
  if (!v.srcObject) {
    v.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    await new Promise((r) => { v.onloadeddata = r; });
  }
  const c = Object.assign(document.createElement("canvas"), { width: v.videoWidth, height: v.videoHeight });
  c.getContext("2d").drawImage(v, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, "image/jpeg", 0.92));
}

function wireWebcam() {
  const can = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  for (const id of ["enroll-webcam", "detect-webcam"]) {
    $(id).disabled = !can;
    if (!can) $(id).title = "this browser gives no camera here (it needs localhost or https)";
  }
  const stamp = () => `webcam-${new Date().toISOString().replace(/[:.]/g, "-")}.jpg`;
  $("enroll-webcam").onclick = async () => {
    try { await setEnrolPhoto(await snapshot(), stamp()); } catch (e) { say($("enroll-msg"), `webcam: ${e.message}`); }
  };
  $("detect-webcam").onclick = async () => {
    try { await detectOne(await snapshot(), stamp()); } catch (e) { say($("detect-msg"), `webcam: ${e.message}`); }
  };
}

window.addEventListener("DOMContentLoaded", () => {
  $("enroll-file").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    if (f) { try { await setEnrolPhoto(f, f.name); } catch (e) { say($("enroll-msg"), e.message); } }
  });
  $("enroll-clear").onclick = () => { enrol.box = null; drawEnrol(); };
  $("enroll-btn").onclick = doEnrol;
  wireDrawing(); wireDetect(); wireWebcam();
  refresh().catch((e) => say($("health"), `server unreachable: ${e.message}`));
});
