// The M2FP page: upload a photo to POST api/parse, show the photo and the parse side by side.
// The parse is the server's PNG (result_url, palette colours); the slider only changes how it is drawn.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { body: null, photo: null, layer: null, mask: null, width: 0, height: 0 };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot display " + src));
    img.src = src;
  });
}

// A canvas of the parse with the background (palette index 0, black) transparent.
function parseLayer(img, w, h) {
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, w, h);
  const px = ctx.getImageData(0, 0, w, h);
  const d = px.data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] === 0 && d[i + 1] === 0 && d[i + 2] === 0) d[i + 3] = 0;
  }
  ctx.putImageData(px, 0, 0);
  return c;
}

function drawPhoto(ctx) {
  if (state.photo) ctx.drawImage(state.photo, 0, 0, state.width, state.height);
  else { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, state.width, state.height); }
}

function drawOverlay() {
  const alpha = Number($("alpha").value) / 100;
  $("alpha-value").textContent = alpha.toFixed(2);
  const c = $("overlay");
  const ctx = c.getContext("2d");
  ctx.globalAlpha = 1;
  drawPhoto(ctx);
  ctx.globalAlpha = alpha;
  ctx.drawImage(state.layer, 0, 0);
  ctx.globalAlpha = 1;
}

function showLegend(masks) {
  const total = state.width * state.height;
  $("legend").replaceChildren(...masks.map((m) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${m.color.join(",")})`;
    li.append(sw, `${m.label}: ${(100 * m.area / total).toFixed(1)} %, confidence ${m.confidence.toFixed(2)}`);
    return li;
  }));
  if (!masks.length) $("legend").textContent = "no person parts found";
}

function showPeople(persons) {
  $("people").replaceChildren(...persons.map((p) => {
    const li = document.createElement("li");
    const s = p.skin_tone;
    const ita = s.ita === null ? "" : `, ITA ${s.ita.toFixed(1)}°`;
    const monk = s.monk === null ? "" : `, Monk ${s.monk}`;
    li.textContent = `score ${p.score.toFixed(3)}, skin tone: ${s.group}${ita}${monk}`;
    return li;
  }));
  if (!persons.length) $("people").textContent = "no people found";
}

async function parse(file) {
  setStatus(`Parsing ${file.name}…`);
  const form = new FormData();
  form.append("image", file);
  form.append("format", "json");
  const t0 = performance.now();
  let response, body;
  try {
    response = await fetch("api/parse", { method: "POST", body: form });
    body = await response.json();
  } catch (e) {
    setStatus(`The server did not answer: ${e.message}`, true);
    return;
  }
  if (!response.ok || !body.success) {
    const retry = response.headers.get("Retry-After");
    setStatus(`${body.error || response.statusText} (${body.error_kind || response.status})` +
      (retry ? ` Retry in ${retry} s.` : ""), true);
    return;
  }
  const roundTrip = (performance.now() - t0) / 1000;
  state.body = body; state.width = body.width; state.height = body.height;
  const url = URL.createObjectURL(file);
  state.photo = await loadImage(url).catch(() => null);  // a format the browser cannot show: parse only
  state.layer = parseLayer(await loadImage(body.result_url), body.width, body.height);
  state.mask = await loadImage(body.people_mask_url);
  for (const id of ["photo", "overlay"]) { $(id).width = body.width; $(id).height = body.height; }
  drawPhoto($("photo").getContext("2d"));
  drawOverlay();
  showLegend(body.masks);
  showPeople(body.persons);
  $("timing").textContent = `inference ${body.inference_time.toFixed(2)} s (round trip ${roundTrip.toFixed(2)} s)`;
  $("dl-parse").href = body.result_url;
  $("result").hidden = false;
  setStatus(`${file.name}: ${body.width}x${body.height}, ${body.num_persons} people`);
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function peopleCanvas() {
  const c = document.createElement("canvas");
  c.width = state.width; c.height = state.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(state.mask, 0, 0);  // white where a person is
  const px = ctx.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < px.data.length; i += 4) px.data[i + 3] = px.data[i];
  ctx.putImageData(px, 0, 0);
  ctx.globalCompositeOperation = "source-in";
  drawPhoto(ctx);
  return c;
}

$("alpha").addEventListener("input", () => state.layer && drawOverlay());
$("file").addEventListener("change", (e) => e.target.files[0] && parse(e.target.files[0]));
$("dl-overlay").addEventListener("click", () => $("overlay").toBlob((b) => download(b, "overlay.png")));
$("dl-people").addEventListener("click", () => peopleCanvas().toBlob((b) => download(b, "people.png")));
$("dl-json").addEventListener("click", () =>
  download(new Blob([JSON.stringify(state.body, null, 1)], { type: "application/json" }), "parse.json"));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) parse(e.dataTransfer.files[0]);
});
fetch("api/info").then((r) => r.json()).then((info) => {
  const m = info.model;
  $("model").textContent = `${m.model_id || m.model} · checkpoint ${m.checkpoint_sha256.slice(0, 12)} · ` +
    `m2fp-batch ${info.version} · ${info.classes.length} classes`;
}).catch(() => { $("model").textContent = "model information unavailable"; });
