// The demo page: trains the digits MLP in the browser (wgrad compiled to wasm, on
// WebGPU), draws the curves after every epoch, and classifies what the user draws.
// URL parameters: epochs (default 40), device (gpu or cpu), seed, lr, batch, dropout.
// window.wgradDemo holds the page's state for tests (web/e2e.py reads it).
import init, { Demo } from './pkg/wgrad_web.js';

const q = new URLSearchParams(location.search);
const num = (k, d) => (q.has(k) ? Number(q.get(k)) : d);
const config = {
  epochs: num('epochs', 40),
  device: q.get('device') || 'gpu',
  seed: num('seed', 0),
  lr: num('lr', 0.1),
  batch: num('batch', 64),
  dropout: num('dropout', 0.2),
};
const state = (window.wgradDemo = {
  state: 'loading', config, adapter: null, history: [], msPerEpoch: [],
  firstEpochMs: null, testAccuracy: null, prediction: null, probabilities: null, error: null,
});
const $ = (id) => document.getElementById(id);
const status = (text, error) => {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
};

function drawChart() {
  const c = $('chart'), g = c.getContext('2d');
  const W = c.width, H = c.height, L = 46, R = 46, T = 14, B = 30;
  g.clearRect(0, 0, W, H);
  g.font = '12px system-ui'; g.strokeStyle = '#999'; g.fillStyle = '#555';
  g.strokeRect(L, T, W - L - R, H - T - B);
  const h = state.history, n = Math.max(config.epochs, 2);
  const maxLoss = Math.max(2.4, ...h.map((e) => e.loss));
  const x = (i) => L + ((W - L - R) * (i - 1)) / (n - 1);
  const yl = (v) => T + (H - T - B) * (1 - v / maxLoss);
  const ya = (v) => T + (H - T - B) * (1 - v);
  for (let k = 0; k <= 4; k++) {
    g.fillText((maxLoss * k / 4).toFixed(1), 8, yl(maxLoss * k / 4) + 4);
    g.fillText((25 * k) + '%', W - R + 6, ya(k / 4) + 4);
  }
  g.fillText('epoch', W / 2 - 15, H - 8);
  g.fillText('1', x(1) - 3, H - B + 14); g.fillText(String(n), x(n) - 6, H - B + 14);
  const line = (key, y, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    h.forEach((e, i) => (i ? g.lineTo(x(e.epoch), y(e[key])) : g.moveTo(x(e.epoch), y(e[key]))));
    g.stroke(); g.lineWidth = 1;
  };
  line('loss', yl, '#d35400');
  line('testAccuracy', ya, '#3867d6');
  g.fillStyle = '#d35400'; g.fillText('training loss', W - R - 90, T + (H - T - B) / 2 - 8);
  g.fillStyle = '#3867d6'; g.fillText('test accuracy', W - R - 90, T + (H - T - B) / 2 + 8);
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

// ---- drawing -------------------------------------------------------------------
const pad = $('pad'), pg = pad.getContext('2d');
function clearPad() {
  pg.fillStyle = '#fff'; pg.fillRect(0, 0, pad.width, pad.height);
  $('prediction').textContent = '?'; $('bars').innerHTML = '';
  $('preview').getContext('2d').clearRect(0, 0, 64, 64);
}
clearPad();
let drawing = false, last = null;
const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
pad.addEventListener('pointerdown', (e) => { drawing = true; last = at(e); stroke(last, last); });
pad.addEventListener('pointermove', (e) => { if (drawing) { const p = at(e); stroke(last, p); last = p; } });
const classifyNow = () => classifyDrawing().catch((e) => status(`Error: ${e && e.message ? e.message : e}`, true));
pad.addEventListener('pointerup', () => { drawing = false; classifyNow(); });
pad.addEventListener('pointerleave', () => { if (drawing) { drawing = false; classifyNow(); } });
$('clear').addEventListener('click', clearPad);
function stroke(a, b) {
  pg.strokeStyle = '#000'; pg.lineWidth = 18; pg.lineCap = 'round';
  pg.beginPath(); pg.moveTo(a[0], a[1]); pg.lineTo(b[0], b[1]); pg.stroke();
}

// The digits were made from 32x32 bitmaps of size-normalised digits, counted in 4x4
// blocks (grey levels 0..16). The drawing gets the same treatment: cropped to its ink,
// scaled into the 32x32 box keeping its shape, thresholded, counted.
function drawingToPixels() {
  const img = pg.getImageData(0, 0, pad.width, pad.height).data;
  let x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
  for (let y = 0; y < pad.height; y++) for (let x = 0; x < pad.width; x++) {
    if (img[4 * (y * pad.width + x)] < 128) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1, s = 32 / Math.max(w, h);
  const box = document.createElement('canvas'); box.width = box.height = 32;
  const bg = box.getContext('2d');
  bg.fillStyle = '#fff'; bg.fillRect(0, 0, 32, 32);
  bg.imageSmoothingEnabled = true;
  bg.drawImage(pad, x0, y0, w, h, (32 - w * s) / 2, (32 - h * s) / 2, w * s, h * s);
  const d = bg.getImageData(0, 0, 32, 32).data;
  const pixels = new Float32Array(64);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
    if (d[4 * (y * 32 + x)] < 128) pixels[(y >> 2) * 8 + (x >> 2)] += 1;
  }
  return pixels;
}

let demo = null;
async function classifyDrawing() {
  const pixels = drawingToPixels();
  if (!pixels || !demo || state.state !== 'done') return;
  const pv = $('preview').getContext('2d');
  for (let i = 0; i < 64; i++) {
    const v = 255 - Math.round((pixels[i] / 16) * 255);
    pv.fillStyle = `rgb(${v},${v},${v})`; pv.fillRect((i % 8) * 8, Math.floor(i / 8) * 8, 8, 8);
  }
  const probs = Array.from(await demo.classify(pixels));
  const best = probs.indexOf(Math.max(...probs));
  state.prediction = best; state.probabilities = probs;
  $('prediction').textContent = String(best);
  $('bars').innerHTML = probs.map((p, d) => `<div>${d} <span class="bar" style="width:${Math.round(p * 120)}px"></span> ${(100 * p).toFixed(1)}%</div>`).join('');
}

// ---- training ------------------------------------------------------------------
async function main() {
  const start = performance.now();
  await init();
  demo = await Demo.create(config.device, config.seed, config.batch, config.lr, config.dropout);
  state.adapter = demo.adapter();
  $('adapter').textContent = state.adapter;
  $('data').textContent = `${demo.trainSize()} training and ${demo.testSize()} test images; ${demo.parameters().toLocaleString()} parameters`;
  state.state = 'training';
  for (let e = 1; e <= config.epochs; e++) {
    status(`Training: epoch ${e} of ${config.epochs}\u2026`);
    const t = performance.now();
    const r = await demo.epoch();
    const ms = performance.now() - t;
    if (e === 1) { state.firstEpochMs = performance.now() - start; $('first').textContent = `${(state.firstEpochMs / 1000).toFixed(2)} s (loading, compiling the kernels and one epoch)`; }
    state.msPerEpoch.push(ms);
    state.history.push({ epoch: r.epoch, loss: r.loss, testAccuracy: r.testAccuracy });
    state.testAccuracy = r.testAccuracy;
    $('epoch').textContent = `${r.epoch} of ${config.epochs}`;
    $('loss').textContent = r.loss.toFixed(4);
    $('acc').textContent = `${(100 * r.testAccuracy).toFixed(2)}%`;
    $('time').textContent = `${median(state.msPerEpoch).toFixed(0)} ms (median)`;
    drawChart();
  }
  state.state = 'done';
  status(`Done: ${(100 * state.testAccuracy).toFixed(2)}% of the test digits right after ${config.epochs} epochs. Draw a digit!`);
}
drawChart();
main().catch((e) => {
  state.state = 'error'; state.error = String(e && e.message ? e.message : e);
  status(`Error: ${state.error}`, true);
  console.error(e);
});
