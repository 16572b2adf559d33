// The streamdiff page: a camera or a shared window to img2img over the demo's WebSocket
// protocol (docs/protocol.md), the output as MJPEG, live controls, and txt2img as you type.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => (token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url);

let settings = null;   // GET /api/settings
let media = null;      // the MediaStream being sent
let ws = null;
let sessionId = null;
let statsTimer = null;
const canvas = document.createElement("canvas");

function warn(message) {
  $("warning").textContent = message;
  $("warning").hidden = !message;
}

// ---- controls ------------------------------------------------------------------------------

const controlIds = ["prompt", "negative_prompt", "guidance_scale", "delta", "seed",
                    "similarity_filter", "similarity_threshold"];

function fillControls() {
  const p = settings.input_params.properties;
  for (const id of controlIds) {
    const el = $(id);
    if (!el || !p[id]) continue;
    if (el.type === "checkbox") el.checked = !!p[id].default;
    else el.value = p[id].default;
  }
  $("t_index_list").value = p.t_index_list.default.join(",");
  const sd = settings.streamdiff || {};
  const m = sd.size_multiple || 64, max = sd.max_size || 1024;
  for (const s of [256, 384, 512, 640, 768, 1024]) {
    if (s % m || s > max) continue;
    const o = new Option(`${s} × ${s}`, s);
    if (s === p.width.default) o.selected = true;
    $("size").add(o);
  }
  document.querySelectorAll("input[type=range]").forEach(updateOutput);
  $("txt_prompt").value = p.prompt.default;
  $("page-content").innerHTML = settings.page_content || "";
}

function updateOutput(input) {
  const out = document.querySelector(`output[for=${input.id}]`);
  if (out) out.textContent = input.value;
}

function params() {
  const p = {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    guidance_scale: Number($("guidance_scale").value),
    delta: Number($("delta").value),
    seed: Number($("seed").value) || 0,
    similarity_filter: $("similarity_filter").checked,
    similarity_threshold: Number($("similarity_threshold").value),
    width: Number($("size").value),
    height: Number($("size").value),
  };
  const t = $("t_index_list").value.split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n));
  if (t.length) p.t_index_list = t;
  const second = $("prompt2").value.trim(), w = Number($("blend").value);
  p.prompt_blend = second && w > 0 ? [[p.prompt, 1 - w], [second, w]] : [];
  if (p.prompt_blend.length) p.blend = "slerp";
  return p;
}

// ---- the input ------------------------------------------------------------------------------

async function listCameras() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const select = $("camera");
  const current = select.value;
  select.innerHTML = "";
  devices.filter((d) => d.kind === "videoinput").forEach((d, i) => {
    select.add(new Option(d.label || `Camera ${i + 1}`, d.deviceId));
  });
  if (current) select.value = current;
}

async function openSource() {
  if (!navigator.mediaDevices) {
    throw new Error("This browser offers no camera here: browsers allow the camera and screen " +
                    "capture only on http://localhost or over HTTPS. Open the page as " +
                    "http://localhost:PORT on this machine, or put the server behind HTTPS.");
  }
  const size = Number($("size").value);
  if ($("source").value === "screen") {
    return navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: false });
  }
  const id = $("camera").value;
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: size }, height: { ideal: size }, ...(id ? { deviceId: { exact: id } } : {}) },
    audio: false,
  });
}

// The current video frame, scaled to cover the session's size and centre-cropped, as a JPEG.
function grabFrame() {
  const video = $("input");
  const size = Number($("size").value);
  canvas.width = canvas.height = size;
  const vw = video.videoWidth, vh = video.videoHeight;
  if (!vw || !vh) return Promise.resolve(new Blob([]));  // no frame yet: the server asks again
  const scale = Math.max(size / vw, size / vh);
  const w = vw * scale, h = vh * scale;
  canvas.getContext("2d").drawImage(video, (size - w) / 2, (size - h) / 2, w, h);
  return new Promise((resolve) => canvas.toBlob((b) => resolve(b || new Blob([])), "image/jpeg", 0.9));
}

// ---- the session -----------------------------------------------------------------------------

async function start() {
  warn("");
  try {
    media = await openSource();
  } catch (e) {
    warn(e.message || String(e));
    return;
  }
  $("input").srcObject = media;
  listCameras();
  sessionId = crypto.randomUUID ? crypto.randomUUID() : fallbackUuid();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(withToken(`${proto}://${location.host}/api/ws/${sessionId}`));
  ws.onmessage = async (event) => {
    const data = JSON.parse(event.data);
    switch (data.status) {
      case "connected":
        $("output").src = withToken(`/api/stream/${sessionId}`);
        $("view-link").href = withToken(`/view/${sessionId}`);
        $("view-link").hidden = false;
        $("snapshot").disabled = false;
        statsTimer = setInterval(showStats, 1000);
        break;
      case "send_frame": {
        const blob = await grabFrame();
        if (!ws || ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ status: "next_frame" }));
        ws.send(JSON.stringify(params()));
        ws.send(blob);
        break;
      }
      case "timeout":
        warn("The session timed out. Press Start to begin again.");
        stop();
        break;
      case "error":
        warn(data.message);
        stop();
        break;
    }
  };
  ws.onclose = () => stop();
  $("start").textContent = "Stop";
}

function stop() {
  if (ws) { ws.onclose = null; ws.close(); ws = null; }
  if (media) { media.getTracks().forEach((t) => t.stop()); media = null; }
  clearInterval(statsTimer);
  $("overlay").textContent = "";
  $("start").textContent = "Start";
}

async function showStats() {
  try {
    const s = await (await fetch(withToken("/api/stats"))).json();
    const me = s.sessions.find((x) => x.id === sessionId);
    if (me) {
      $("overlay").textContent = `${me.fps.toFixed(1)} fps · ${me.latency_ms.p50.toFixed(0)} ms · ${me.width}×${me.height}`;
    }
    $("queue").textContent = `${s.queue_size} / ${settings.max_queue_size} clients`;
  } catch (e) { /* the next tick tries again */ }
}

function snapshot() {
  const img = $("output");
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  c.getContext("2d").drawImage(img, 0, 0);
  c.toBlob((b) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(b);
    a.download = `streamdiff-${Date.now()}.png`;
    a.click();
  }, "image/png");
}

function fallbackUuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---- txt2img as you type ------------------------------------------------------------------------

let txtTimer = null, txtBusy = false, txtAgain = false;
function txtChanged() {
  clearTimeout(txtTimer);
  txtTimer = setTimeout(generate, 300);
}
async function generate() {
  if (txtBusy) { txtAgain = true; return; }
  txtBusy = true;
  const t0 = performance.now();
  try {
    const r = await fetch(withToken("/api/predict"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: $("txt_prompt").value, seed: Number($("txt_seed").value) || 0 }),
    });
    const j = await r.json();
    if (!r.ok) throw new Error(j.detail || r.statusText);
    $("txt_output").src = "data:image/jpeg;base64," + j.base64_image;
    $("txt_status").textContent = `${(performance.now() - t0).toFixed(0)} ms`;
  } catch (e) {
    $("txt_status").textContent = e.message;
  } finally {
    txtBusy = false;
    if (txtAgain) { txtAgain = false; generate(); }
  }
}

// ---- wiring -----------------------------------------------------------------------------------------

document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
  document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== "panel-" + tab.dataset.panel; });
  if (tab.dataset.panel === "txt" && !$("txt_output").src) generate();
}));
document.querySelectorAll("input[type=range]").forEach((r) => r.addEventListener("input", () => updateOutput(r)));
$("start").addEventListener("click", () => (ws ? stop() : start()));
$("snapshot").addEventListener("click", snapshot);
$("reseed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e9); });
$("txt_prompt").addEventListener("input", txtChanged);
$("txt_seed").addEventListener("input", txtChanged);

(async function init() {
  if (!window.isSecureContext) {
    warn("This page is not a secure context (it was opened on a network address over plain " +
         "HTTP), so the browser will not give it a camera or screen: open it as " +
         "http://localhost on the server's machine, or serve it over HTTPS.");
  }
  try {
    settings = await (await fetch(withToken("/api/settings"))).json();
  } catch (e) {
    warn("Cannot reach the server: " + e.message);
    return;
  }
  fillControls();
  listCameras().catch(() => {});
})();
