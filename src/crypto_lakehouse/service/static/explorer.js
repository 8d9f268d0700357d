// The explorer page of the query service (docs/service.md, "The explorer page"). Hand-written, no
// framework, no build step. Every data call sends the caller's API key, kept in sessionStorage
// (this tab only); the page itself is static and needs no key.
"use strict";

const KEY = "lakehouse.apiKey";
const GRID_DAYS = 31; // the completeness grid shows the latest days of the ledger
const MAX_CANDLES = 240;
const MAX_RESULT_ROWS = 1000; // the console shows this many rows of a result
const UP = "#26a69a";
const DOWN = "#ef5350";

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------ calls
class HttpError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

async function errorOf(response) {
  let detail = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.detail !== undefined) {
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    // not JSON: keep the status text
  }
  return new HttpError(response.status, detail);
}

async function call(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

function sql(text) {
  return call("/query/sql", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sql: text, format: "json" }),
  });
}

const quote = (value) => `'${String(value).replace(/'/g, "''")}'`;

// A failed panel shows its error where its content would be; a 401 (key revoked meanwhile) signs out.
function failed(error, where) {
  if (error.status === 401) {
    signOut(error.message);
    return;
  }
  where.textContent = error.message;
  where.classList.add("error");
}

// ------------------------------------------------------------------------------ formatting
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function fillRows(tbody, rows, cells) {
  tbody.replaceChildren(
    ...rows.map((row) => {
      const tr = el("tr");
      for (const [text, className] of cells(row)) tr.append(el("td", text, className));
      return tr;
    }),
  );
}

const DURATION_UNITS = { ns: 1e-9, us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400, w: 604800, mo: 2592000, q: 7776000, y: 31536000 };

// seconds of a Polars-style duration ("1m", "4h", "1d12h")
function durationSeconds(text) {
  let total = 0;
  for (const [, n, unit] of String(text).matchAll(/(\d+)(ns|us|ms|mo|s|m|h|d|w|q|y)/g)) {
    total += Number(n) * DURATION_UNITS[unit];
  }
  return total;
}

// ------------------------------------------------------------------------------ tables and venues
async function loadTables() {
  const tbody = $("tables").tBodies[0];
  try {
    const tables = await call("/tables");
    fillRows(tbody, tables, (t) => [
      [t.table],
      [t.version, "num"],
      [t.rows.toLocaleString(), "num"],
      [t.files, "num"],
      [bytes(t.bytes), "num"],
    ]);
  } catch (error) {
    failed(error, $("tables-card").querySelector(".hint") || tbody);
  }
}

async function loadVenues() {
  const tbody = $("venues").tBodies[0];
  const badge = $("health");
  try {
    const response = await fetch("/health"); // no key: the probe route (503 carries the same body)
    const health = await response.json();
    badge.textContent = health.status;
    badge.className = `badge ${health.status}`;
    let latest = [];
    try {
      latest = await sql(
        "SELECT exchange, CAST(max(window_start) AS VARCHAR) AS latest FROM gold.ohlcv " +
          "WHERE source = 'trades' GROUP BY exchange",
      );
    } catch (error) {
      if (error.status === 401) throw error;
      // no gold bars yet: the writers' freshness is still worth showing
    }
    const bars = new Map(latest.map((r) => [r.exchange, r.latest]));
    const seen = new Map(health.venues.map((v) => [v.exchange, v]));
    const names = [...new Set([...seen.keys(), ...bars.keys()])].sort();
    fillRows(tbody, names, (name) => {
      const v = seen.get(name);
      return [
        [name],
        [v ? v.last_seen.replace("T", " ").slice(0, 19) : "-"],
        [v ? age(v.age_s) : "-", "num"],
        [v ? v.event : "-"],
        [v ? (v.fresh ? "fresh" : "stale") : "-", v ? (v.fresh ? "fresh" : "stale") : ""],
        [bars.has(name) ? String(bars.get(name)).slice(0, 19) : "-"],
      ];
    });
  } catch (error) {
    failed(error, badge);
  }
}

// ------------------------------------------------------------------------------ completeness grid
async function loadChannels() {
  const select = $("channel");
  try {
    const rows = await sql("SELECT DISTINCT channel FROM gold.completeness ORDER BY channel");
    const chosen = select.value;
    select.replaceChildren(el("option", "all"), ...rows.map((r) => el("option", r.channel)));
    select.options[0].value = "";
    select.value = rows.some((r) => r.channel === chosen) ? chosen : "";
  } catch (error) {
    if (error.status === 401) failed(error, $("grid"));
    // otherwise the grid itself says why (no ledger yet)
  }
}

function scoreColour(score) {
  const s = Math.max(0, Math.min(1, score));
  return `hsl(${Math.round(120 * s)}, 70%, ${s === 1 ? 45 : 50}%)`;
}

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

async function loadGrid() {
  const grid = $("grid");
  grid.classList.remove("error");
  const channel = $("channel").value;
  const where = channel ? `WHERE channel = ${quote(channel)} ` : "";
  let rows;
  try {
    rows = await sql(
      "SELECT exchange, CAST(date AS VARCHAR) AS day, min(score) AS score, count(*) AS streams, " +
        "count(*) FILTER (WHERE complete) AS complete " +
        `FROM gold.completeness ${where}GROUP BY exchange, date ORDER BY exchange, date`,
    );
  } catch (error) {
    grid.replaceChildren();
    grid.style.gridTemplateColumns = "";
    failed(error, grid);
    return;
  }
  if (!rows.length) {
    grid.replaceChildren(el("p", "the completeness ledger is empty", "hint"));
    return;
  }
  // every day from the ledger's first to its last (the latest GRID_DAYS): a missing day shows empty
  const stamps = rows.map((r) => Date.parse(`${r.day}T00:00:00Z`));
  const last = Math.max(...stamps);
  const first = Math.max(Math.min(...stamps), last - (GRID_DAYS - 1) * 86400000);
  const days = [];
  for (let t = first; t <= last; t += 86400000) days.push(isoDay(t));
  const cells = new Map(rows.map((r) => [`${r.exchange}|${r.day}`, r]));
  const venues = [...new Set(rows.map((r) => r.exchange))].sort();

  grid.style.gridTemplateColumns = `auto repeat(${days.length}, minmax(54px, 1fr))`;
  const nodes = [el("div")];
  for (const day of days) nodes.push(el("div", day.slice(5), "day"));
  for (const venue of venues) {
    nodes.push(el("div", venue, "venue"));
    for (const day of days) {
      const r = cells.get(`${venue}|${day}`);
      if (!r) {
        const empty = el("div", "", "cell empty");
        empty.title = `${venue} ${day}: no row in the ledger`;
        nodes.push(empty);
        continue;
      }
      const complete = r.complete === r.streams;
      const cell = el("div", r.score.toFixed(2), complete ? "cell complete" : "cell");
      cell.style.background = scoreColour(r.score);
      cell.dataset.venue = venue;
      cell.dataset.day = day;
      cell.dataset.score = String(r.score);
      cell.dataset.complete = String(complete);
      cell.title = `${venue} ${day}: worst score ${r.score.toFixed(3)} of ${r.streams} stream(s), ${r.complete} complete`;
      nodes.push(cell);
    }
  }
  grid.replaceChildren(...nodes);
}

// ------------------------------------------------------------------------------ candles
let series = new Map(); // venue -> symbol -> [interval]
let shown = { candles: [], interval: "" };

function fillSelect(select, values, preferred) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => el("option", v)));
  const pick = [keep, preferred].find((v) => values.includes(v));
  if (pick !== undefined) select.value = pick;
}

async function loadPickers() {
  try {
    const rows = await sql(
      "SELECT DISTINCT exchange, symbol, interval FROM gold.ohlcv WHERE source = 'trades'",
    );
    series = new Map();
    for (const r of rows) {
      if (!series.has(r.exchange)) series.set(r.exchange, new Map());
      const symbols = series.get(r.exchange);
      if (!symbols.has(r.symbol)) symbols.set(r.symbol, []);
      symbols.get(r.symbol).push(r.interval);
    }
    fillSelect($("venue"), [...series.keys()].sort());
    pickedVenue();
  } catch (error) {
    failed(error, $("chart-info"));
  }
}

function pickedVenue() {
  const symbols = series.get($("venue").value) || new Map();
  fillSelect($("symbol"), [...symbols.keys()].sort());
  pickedSymbol();
}

function pickedSymbol() {
  const symbols = series.get($("venue").value) || new Map();
  const intervals = [...(symbols.get($("symbol").value) || [])];
  intervals.sort((a, b) => durationSeconds(a) - durationSeconds(b));
  fillSelect($("interval"), intervals, "1m");
  loadChart();
}

async function loadChart() {
  const [venue, symbol, interval] = [$("venue").value, $("symbol").value, $("interval").value];
  const info = $("chart-info");
  info.classList.remove("error");
  if (!venue || !symbol || !interval) {
    info.textContent = "no gold bars built from trades yet";
    draw([], "");
    return;
  }
  try {
    const rows = await sql(
      "SELECT epoch_ms(window_start) AS t, open, high, low, close, volume FROM gold.ohlcv " +
        `WHERE source = 'trades' AND exchange = ${quote(venue)} AND symbol = ${quote(symbol)} ` +
        `AND interval = ${quote(interval)} ORDER BY window_start DESC LIMIT ${MAX_CANDLES}`,
    );
    rows.reverse();
    const chart = $("chart");
    chart.dataset.venue = venue;
    chart.dataset.symbol = symbol;
    chart.dataset.interval = interval;
    draw(rows, interval);
    info.textContent = rows.length
      ? `${venue} ${symbol} ${interval}: the latest ${rows.length} bars (gold.ohlcv, source = trades)`
      : "no bars";
  } catch (error) {
    draw([], "");
    failed(error, info);
  }
}

// round steps (1, 2, 5 x 10^k) covering [lo, hi] in about `count` ticks
function ticks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
  return { values: out, decimals: Math.max(0, -Math.floor(Math.log10(step))) };
}

function timeLabel(ms, seconds) {
  const iso = new Date(ms).toISOString();
  if (seconds >= 86400) return iso.slice(0, 10);
  if (seconds < 60) return iso.slice(11, 19);
  return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

// Draws candles (oldest first) on the canvas, with a price axis, a time axis and volume bars;
// sets data-candles to the number drawn.
function draw(candles, interval) {
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  shown = { candles, interval };
  canvas.dataset.candles = "0";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#8593a3";
  if (!candles.length) {
    ctx.fillText("no bars", w / 2 - 20, h / 2);
    return;
  }
  const pad = { left: 8, right: 76, top: 12, bottom: 24 };
  const plotW = w - pad.left - pad.right;
  const plotH = h - pad.top - pad.bottom;
  const priceH = plotH * 0.78;
  const volTop = pad.top + priceH + 8;
  const volH = plotH - priceH - 8;
  let lo = Math.min(...candles.map((c) => c.low));
  let hi = Math.max(...candles.map((c) => c.high));
  const margin = (hi - lo) * 0.05 || Math.abs(hi) * 0.001 || 1;
  lo -= margin;
  hi += margin;
  const vmax = Math.max(...candles.map((c) => c.volume)) || 1;
  const step = plotW / candles.length;
  const body = Math.max(1, Math.min(step * 0.7, 16));
  const y = (p) => pad.top + ((hi - p) / (hi - lo)) * priceH;
  const x = (i) => pad.left + (i + 0.5) * step;

  // grid and price axis
  const grid = ticks(lo, hi, 6);
  ctx.strokeStyle = "#1e2832";
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  for (const v of grid.values) {
    const py = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, py);
    ctx.lineTo(pad.left + plotW, py);
    ctx.stroke();
    ctx.fillText(v.toFixed(grid.decimals), pad.left + plotW + 6, py);
  }
  // time axis
  const seconds = durationSeconds(interval);
  const every = Math.max(1, Math.ceil(candles.length / 6));
  ctx.textBaseline = "top";
  ctx.textAlign = "center";
  for (let i = 0; i < candles.length; i += every) {
    const label = timeLabel(candles[i].t, seconds);
    const half = ctx.measureText(label).width / 2;
    const lx = Math.min(Math.max(x(i), pad.left + half), pad.left + plotW - half); // not clipped at the edges
    ctx.fillText(label, lx, h - pad.bottom + 6);
  }
  ctx.textAlign = "left";

  // candles and volume
  candles.forEach((c, i) => {
    const colour = c.close >= c.open ? UP : DOWN;
    const cx = Math.round(x(i)) + 0.5;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.beginPath();
    ctx.moveTo(cx, y(c.high));
    ctx.lineTo(cx, y(c.low));
    ctx.stroke();
    const top = y(Math.max(c.open, c.close));
    const height = Math.max(1, y(Math.min(c.open, c.close)) - top);
    ctx.fillRect(cx - body / 2, top, body, height);
    ctx.globalAlpha = 0.45;
    const vh = (c.volume / vmax) * volH;
    ctx.fillRect(cx - body / 2, volTop + volH - vh, body, vh);
    ctx.globalAlpha = 1;
  });
  canvas.dataset.candles = String(candles.length);
}

function hover(event) {
  const { candles, interval } = shown;
  if (!candles.length) return;
  const canvas = $("chart");
  const plotW = canvas.clientWidth - 8 - 76;
  const i = Math.floor(((event.offsetX - 8) / plotW) * candles.length);
  const c = candles[Math.max(0, Math.min(candles.length - 1, i))];
  $("chart-info").textContent =
    `${timeLabel(c.t, durationSeconds(interval))}  O ${c.open}  H ${c.high}  L ${c.low}  C ${c.close}  V ${c.volume}`;
}

// ------------------------------------------------------------------------------ SQL console
async function runSql() {
  const text = $("sql").value.trim();
  const status = $("sql-status");
  const errorBox = $("sql-error");
  const table = $("result");
  if (!text) return;
  errorBox.textContent = "";
  status.textContent = "running...";
  const started = performance.now();
  let rows;
  try {
    rows = await sql(text);
  } catch (error) {
    status.textContent = "";
    table.tHead.replaceChildren();
    table.tBodies[0].replaceChildren();
    if (error.status === 401) signOut(error.message);
    else errorBox.textContent = error.message;
    return;
  }
  const ms = Math.round(performance.now() - started);
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const head = el("tr");
  for (const c of columns) head.append(el("th", c));
  table.tHead.replaceChildren(head);
  fillRows(table.tBodies[0], rows.slice(0, MAX_RESULT_ROWS), (row) =>
    columns.map((c) => {
      const v = row[c];
      if (v === null) return ["null", "hint"];
      if (typeof v === "number") return [String(v), "num"];
      return [typeof v === "object" ? JSON.stringify(v) : String(v)];
    }),
  );
  const more = rows.length > MAX_RESULT_ROWS ? `, showing the first ${MAX_RESULT_ROWS}` : "";
  status.textContent = `${rows.length} row${rows.length === 1 ? "" : "s"} in ${ms} ms${more}`;
  table.dataset.rows = String(rows.length);
}

// ------------------------------------------------------------------------------ session
function keyId(key) {
  const parts = key.split("_");
  return parts.length >= 3 ? parts[1] : "?";
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  $("explorer").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  try {
    await call("/tables"); // checks the key before showing anything
  } catch (error) {
    signOut(error.message);
    return;
  }
  $("login").hidden = true;
  $("login-error").textContent = "";
  $("explorer").hidden = false;
  $("session").hidden = false;
  $("who").textContent = `key ${keyId(key)}`;
  await loadAll();
}

async function loadAll() {
  await Promise.all([loadTables(), loadVenues(), loadChannels().then(loadGrid), loadPickers()]);
  document.body.dataset.loaded = "true";
}

function start() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    $("key").value = "";
    signIn(key);
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("refresh").addEventListener("click", loadAll);
  $("channel").addEventListener("change", loadGrid);
  $("venue").addEventListener("change", pickedVenue);
  $("symbol").addEventListener("change", pickedSymbol);
  $("interval").addEventListener("change", loadChart);
  $("chart").addEventListener("mousemove", hover);
  $("run").addEventListener("click", runSql);
  $("sql").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      runSql();
    }
  });
  let resize;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(() => draw(shown.candles, shown.interval), 100);
  });
  const key = sessionStorage.getItem(KEY);
  if (key) signIn(key);
}

start();
