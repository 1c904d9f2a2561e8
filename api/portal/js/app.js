// The portal page: wires the editor, the result views, the cross-match form, the jobs and
// queries lists and the schema browser to the service's public APIs (api.js).

import * as api from "./api.js";
import { makeEditor } from "./editor.js";
import { ResultTable } from "./table.js";
import { SkyPlot, positionColumns } from "./sky.js";
import { numericColumns, histogram, scatter, lightCurve } from "./plots.js";
import * as lc from "./lightcurve.js";
import { parquetColumns } from "./parquet.js";

const $ = (selector) => document.querySelector(selector);
const ACTIVE_PHASES = new Set(["PENDING", "QUEUED", "EXECUTING", "SUSPENDED"]);

const state = {
  catalogs: [], // GET /api/v1/catalogs
  chunkMaps: new Map(), // catalog → GET /api/v1/catalogs/{name}/chunks
  formats: [], // from the capabilities
  result: null,
  source: null, // {query, options} of the shown result, or {xmatch: fetcher}
  running: null, // {abort()} of the query being run
  lightCurves: [], // the tables that give light curves (lightcurve.js), best first
};

const editor = makeEditor($("#editor"), { onRun: () => run() });
const table = new ResultTable($("#pane-table"));
const sky = new SkyPlot($("#sky"), $("#sky-tip"));
const coverage = new Map(); // catalog → the SkyPlot of its coverage in the schema browser
window.portal = { editor, table, sky, state, coverage }; // for the browser tests and the curious

// --- views and panes ----------------------------------------------------------------------

function showView(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.view === name));
  }
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  $("#result").hidden = !state.result || !["query", "xmatch"].includes(name);
  if (name === "jobs") refreshLists();
  if (name === "schema") drawCoverage();
  document.body.dataset.view = name;
}

function showPane(name) {
  for (const button of document.querySelectorAll(".subtabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.pane === name));
  }
  for (const pane of document.querySelectorAll(".pane")) pane.hidden = pane.id !== `pane-${name}`;
  if (name === "sky") sky.draw();
  if (name === "plot") drawPlot();
}

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => showView(button.dataset.view));
}
for (const button of document.querySelectorAll(".subtabs button")) {
  button.addEventListener("click", () => showPane(button.dataset.pane));
}

// --- running a query ----------------------------------------------------------------------

function options() {
  return {
    lang: $("#lang").value,
    maxrec: $("#maxrec").value,
    mode: document.querySelector('input[name="mode"]:checked').value,
  };
}

function setStatus(text, selector = "#status") { $(selector).textContent = text; }

function showError(error, box = "#error") {
  const element = $(box);
  element.textContent = error.line != null
    ? `Line ${error.line}, column ${error.column}: ${error.message}` : error.message;
  element.hidden = false;
  if (box === "#error") editor.showError(error.message, error.line, error.column);
}

function clearError(box = "#error") {
  $(box).hidden = true;
  if (box === "#error") editor.showError(null, null);
}

/** Run the editor's query; ``then`` is called once its result is shown. */
async function run(then = null) {
  const query = editor.text.trim();
  if (!query) { showError(new api.ServiceError("write a query first")); return; }
  if (state.running) state.running.abort();
  clearError();
  const opts = options();
  if (refused(opts.mode)) {
    showError(signInFirst(`${opts.mode} queries`, opts.mode === "async" ? " (or run it sync)" : ""));
    return;
  }
  $("#run").disabled = true;
  $("#cancel").hidden = false;
  try {
    const result = opts.mode === "async" ? await runAsync(query, opts) : await runSync(query, opts);
    if (result) {
      showResult(result, { query, options: opts });
      if (then) then(result);
    }
  } catch (error) {
    if (error.name === "AbortError") setStatus("stopped");
    else {
      if (opts.mode === "sync") setStatus("");
      showError(error);
    }
  } finally {
    state.running = null;
    $("#run").disabled = false;
    $("#cancel").hidden = true;
  }
}

async function runSync(query, opts) {
  const controller = new AbortController();
  state.running = { abort: () => controller.abort() };
  setStatus("running (sync)…");
  return api.runSync(query, opts, controller.signal);
}

async function runAsync(query, opts) {
  const id = await api.createJob(query, opts);
  let stopped = false;
  state.running = { abort: () => { stopped = true; api.abortJob(id).catch(() => {}); }, job: id };
  const started = performance.now();
  let job = await api.getJob(id);
  while (ACTIVE_PHASES.has(job.phase)) {
    setStatus(`job ${id}: ${job.phase}`);
    if (stopped) break;
    job = await api.getJob(id, 2);
  }
  if (job.phase === "COMPLETED") {
    setStatus(`job ${id}: COMPLETED`);
    return { ...(await api.jobResult(id)), seconds: (performance.now() - started) / 1000, job: id };
  }
  setStatus(`job ${id}: ${job.phase}`);
  if (job.phase === "ERROR") throw new api.ServiceError(await api.jobError(id), 400);
  setStatus(`job ${id}: ${job.phase}`);
  return null;
}

$("#run").addEventListener("click", () => run());

// --- light curves -------------------------------------------------------------------------

/** Write the query of one object's light curve from ``source`` into the editor, run it
 *  (as any query: sync or async, through TAP) and plot it. */
function showLightCurve(id, source) {
  editor.text = lc.lightCurveQuery(source, id);
  $("#lang").value = "ADQL";
  editor.setDialect("ADQL");
  return run(() => {
    document.querySelector('input[name="plotkind"][value="lightcurve"]').checked = true;
    pickLightCurveColumns();
    showPane("plot");
  });
}

/** The light-curve source for a result's column, or null: the column is the key of a
 *  director table that a light-curve table refers to (objectId), in the result's catalog
 *  when there is a choice. */
function lightCurveSourceFor(column) {
  const name = column.name.toLowerCase();
  const found = state.lightCurves.filter((s) => s.directorKey.toLowerCase() === name);
  if (!found.length || (column.ucd && !/meta\.id/i.test(column.ucd))) return null;
  const catalog = state.source?.query ? catalogOf(state.source.query) : state.source?.catalog;
  return found.find((s) => s.table.startsWith(`${catalog}.`)) ?? found[0];
}

table.cellAction = (column) => {
  const source = lightCurveSourceFor(column);
  return source && {
    text: "light curve",
    title: `the light curve of this object (${source.table})`,
    run: (value) => showLightCurve(value, source),
  };
};

function setLightCurveSources(sources) {
  state.lightCurves = sources;
  const select = $("#lc-table");
  select.replaceChildren(...sources.map((s, i) => new Option(s.table, String(i))));
  $("#lc-form").hidden = !sources.length;
  const showKey = () => {
    const source = sources[Number(select.value)];
    if (source) $("#lc-key").textContent = source.directorKey;
  };
  select.addEventListener("change", showKey);
  showKey();
  if (state.result) table.render(); // the key columns get their buttons
}

$("#lc-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const source = state.lightCurves[Number($("#lc-table").value)];
  if (source && $("#lc-id").value.trim()) showLightCurve($("#lc-id").value, source);
});
$("#cancel").addEventListener("click", () => state.running?.abort());
$("#lang").addEventListener("change", () => editor.setDialect($("#lang").value));

// --- showing a result ---------------------------------------------------------------------

function showResult(result, source) {
  state.result = result;
  state.source = source;
  const n = result.rows.length;
  const took = result.seconds != null ? ` in ${result.seconds.toFixed(2)} s` : "";
  $("#rowcount").textContent = `${n} row${n === 1 ? "" : "s"}${took}`;
  $("#overflow").hidden = !result.overflow;
  setStatus(result.job ? `job ${result.job}: COMPLETED` : "");
  renderDownloads();
  table.show(result);
  const position = positionColumns(result.columns);
  if (position) {
    const [i, j] = position;
    sky.setPoints(Float64Array.from(result.rows, (r) => r[i] ?? NaN),
      Float64Array.from(result.rows, (r) => r[j] ?? NaN), result);
    $("#sky-info").textContent = `${n} positions (${result.columns[i].name}, ${result.columns[j].name})`;
  } else {
    sky.setPoints(null);
    $("#sky-info").textContent = "the result has no RA/Dec columns";
  }
  const catalog = source.query ? catalogOf(source.query) : source.catalog;
  if (catalog) { $("#sky-catalog").value = catalog; loadDensity(catalog); }
  fillPlotColumns(result);
  $("#result").hidden = false;
  const current = document.querySelector(".subtabs button[aria-selected=true]").dataset.pane;
  showPane(current);
}

function renderDownloads() {
  const box = $("#downloads");
  box.replaceChildren();
  for (const format of state.formats) {
    const name = format.alias || format.mime;
    let link;
    if (state.source?.query) {
      link = downloadLink(api.downloadURL(state.source.query, state.source.options, format.mime),
        `result.${extension(format.mime)}`);
    } else if (state.source?.xmatch) {
      link = document.createElement("a");
      link.href = "#";
      link.addEventListener("click", (event) => {
        event.preventDefault();
        save(() => state.source.xmatch(format.alias || format.mime),
          `xmatch.${extension(format.mime)}`);
      });
    } else continue;
    link.textContent = name;
    link.dataset.format = name;
    box.append(link, " ");
  }
}

/** A link that downloads ``url`` as ``name``; signed in, a click fetches it with the token
 *  and saves the blob (a plain link cannot send an Authorization header). */
function downloadLink(url, name, text = "") {
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  if (text) link.textContent = text;
  link.addEventListener("click", (event) => {
    if (!api.signedIn()) return;
    event.preventDefault();
    save(() => api.fetchBlob(url), name);
  });
  return link;
}

/** Save the blob a request answers as a file. */
async function save(request, name) {
  try {
    const url = URL.createObjectURL(await request());
    Object.assign(document.createElement("a"), { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) { setStatus(`download: ${error.message}`); }
}

/** A file name extension for an output format (its MIME type or its alias). */
function extension(mime) {
  mime = mime.toLowerCase();
  if (mime.includes("votable") || mime.includes("xml")) return "xml";
  if (mime.includes("ecsv")) return "ecsv";
  if (mime.includes("csv")) return "csv";
  if (mime.includes("tab-separated") || mime.includes("tsv")) return "tsv";
  if (mime.includes("fits")) return "fits";
  if (mime.includes("json")) return "json";
  if (mime.includes("parquet")) return "parquet";
  return "dat";
}

// --- the sky ------------------------------------------------------------------------------

function catalogOf(query) {
  const names = state.catalogs.map((c) => c.name);
  const found = names.find((name) => new RegExp(`\\b${name}\\.`, "i").test(query));
  return found ?? names[0];
}

async function loadDensity(catalog) {
  if (!catalog) return;
  if (!state.chunkMaps.has(catalog)) state.chunkMaps.set(catalog, api.chunkMap(catalog));
  try {
    sky.setCells(await state.chunkMaps.get(catalog));
  } catch (error) {
    state.chunkMaps.delete(catalog);
    $("#sky-info").textContent = `density: ${error.message}`;
  }
}

$("#sky-catalog").addEventListener("change", () => loadDensity($("#sky-catalog").value));
$("#sky-reset").addEventListener("click", () => sky.reset());
for (const radio of document.querySelectorAll('input[name="skymode"]')) {
  radio.addEventListener("change", () => { sky.mode = radio.value; });
}
sky.onPick = (row) => { showPane("table"); table.reveal(row); };
sky.onCircle = (ra, dec, r) => writeContains(
  `CIRCLE('ICRS', ${ra.toFixed(5)}, ${dec.toFixed(5)}, ${r.toFixed(5)})`,
  `the circle (r = ${r.toFixed(4)}°)`);
sky.onBox = ({ ra1, dec1, ra2, dec2 }) => {
  const [a, b] = [ra1, ra2].map((v) => v.toFixed(5));
  const [c, d] = [dec1, dec2].map((v) => v.toFixed(5));
  writeContains(`POLYGON('ICRS', ${a}, ${c}, ${b}, ${c}, ${b}, ${d}, ${a}, ${d})`, "the box");
};

/** Put ``CONTAINS(POINT(ra, dec), <region>) = 1`` into the query's WHERE clause. */
function writeContains(region, what) {
  const result = state.result;
  const position = result && positionColumns(result.columns);
  const map = state.chunkMaps.get($("#sky-catalog").value);
  let columns = position ? position.map((i) => result.columns[i].name) : null;
  const write = (director) => {
    columns ??= director ? [director.ra, director.dec] : ["ra", "dec"];
    const clause = `CONTAINS(POINT('ICRS', ${columns[0]}, ${columns[1]}), ${region}) = 1`;
    let text = editor.text.trim();
    if (!text || (state.source && !state.source.query)) {
      const from = director ? director.table : "Object";
      text = `SELECT TOP 1000 *\nFROM ${from}\nWHERE ${clause}`;
    } else if (/\bWHERE\b/i.test(text)) {
      text = text.replace(/\bWHERE\b\s*/i, (w) => `${w.trimEnd()} ${clause}\n  AND `);
    } else {
      const tail = /\b(GROUP\s+BY|ORDER\s+BY|HAVING|LIMIT|OFFSET)\b/i.exec(text);
      text = tail
        ? `${text.slice(0, tail.index)}WHERE ${clause}\n${text.slice(tail.index)}`
        : `${text}\nWHERE ${clause}`;
    }
    editor.text = text;
    $("#lang").value = "ADQL";
    editor.setDialect("ADQL");
    setStatus(`${what} is in the query: run it`);
  };
  if (map) map.then((m) => write(m.directors[0])).catch(() => write(null));
  else write(null);
}

// --- plots --------------------------------------------------------------------------------

function fillPlotColumns(result) {
  const numeric = numericColumns(result);
  for (const [select, pick] of [[$("#plot-x"), 0], [$("#plot-y"), 1]]) {
    const previous = select.value;
    select.replaceChildren(...numeric.map((i) => new Option(result.columns[i].name, String(i))));
    const keep = numeric.find((i) => result.columns[i].name === previous);
    if (keep != null) select.value = String(keep);
    else if (numeric.length > pick) select.value = String(numeric[pick]);
  }
  const distance = result.columns.findIndex((c) => c.name === "distance");
  if (distance >= 0 && numeric.includes(distance)) $("#plot-x").value = String(distance);
}

/** For a light curve: x the result's time column, y its first flux (or magnitude), by UCD. */
function pickLightCurveColumns() {
  const result = state.result;
  if (!result) return;
  const { time, flux } = lc.lightCurveColumns(result.columns);
  const numeric = numericColumns(result);
  if (numeric.includes(time)) $("#plot-x").value = String(time);
  if (numeric.includes(flux)) {
    $("#plot-y").value = String(flux);
    $("#plot-invert").checked = lc.isMagnitude(result.columns[flux]);
  }
}

function drawPlot() {
  const result = state.result;
  if (!result) return;
  const kind = document.querySelector('input[name="plotkind"]:checked').value;
  document.body.dataset.plot = kind;
  const canvas = $("#plot");
  const x = Number($("#plot-x").value);
  $("#plot-about").textContent = "";
  if ($("#plot-x").value === "") {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    state.plotted = null;
    $("#plot-about").textContent = result.rows.length
      ? "the result has no numeric column to plot" : "the result has no rows to plot";
    return;
  }
  const y = Number($("#plot-y").value);
  const invertY = $("#plot-invert").checked;
  if (kind === "histogram") {
    state.plotted = histogram(canvas, result, x, Number($("#plot-bins").value) || 30)
      .reduce((a, b) => a + b, 0);
  } else if (kind === "scatter") {
    state.plotted = scatter(canvas, result, x, y, { invertY });
  } else {
    const columns = result.columns;
    const error = lc.errorColumn(columns, columns[y]);
    const { band } = lc.lightCurveColumns(columns);
    state.plotted = lightCurve(canvas, result, x, y, {
      error: error ? columns.indexOf(error) : null, band, invertY });
    $("#plot-about").textContent = `${columns[y].name}` +
      (error ? ` ± ${error.name}` : " (no error column)") + ` against ${columns[x].name}` +
      (band != null ? `, one colour per ${columns[band].name}` : "") +
      `: ${state.plotted.points} point${state.plotted.points === 1 ? "" : "s"}`;
  }
}

for (const element of document.querySelectorAll(
  'input[name="plotkind"], #plot-x, #plot-y, #plot-invert, #plot-bins')) {
  element.addEventListener("change", drawPlot);
}
document.querySelector('input[name="plotkind"][value="lightcurve"]').addEventListener(
  "change", () => { pickLightCurveColumns(); drawPlot(); });

// --- cross-match --------------------------------------------------------------------------

async function targetColumns(file) {
  const head = await file.slice(0, 65536).text();
  if (/<VOTABLE/i.test(head)) {
    return [...head.matchAll(/<FIELD\b[^>]*\bname="([^"]+)"/gi)].map((m) => m[1]);
  }
  if (head.startsWith("PAR1")) return parquetColumns(file).catch(() => []);
  return head.split(/\r?\n/)[0].split(",").map((s) => s.trim().replace(/^"|"$/g, ""));
}

$("#xm-file").addEventListener("change", async () => {
  const file = $("#xm-file").files[0];
  if (!file) return;
  const columns = await targetColumns(file);
  $("#xm-columns").replaceChildren(...columns.map((c) => new Option(c)));
  const pick = (pattern) => columns.find((c) => pattern.test(c));
  $("#xm-ra").value = pick(/^(ra|raj2000|ra_deg|ra_icrs)$/i) ?? pick(/ra/i) ?? $("#xm-ra").value;
  $("#xm-dec").value = pick(/^(dec|decl|dej2000|dec_deg|de_icrs)$/i) ?? pick(/de/i) ?? $("#xm-dec").value;
});

function directorTables() {
  const found = [];
  for (const catalog of state.catalogs) {
    for (const t of catalog.tables) {
      if (t.kind === "director") found.push({ name: `${catalog.name}.${t.name}`, catalog });
    }
  }
  return found;
}

function showLimit() {
  const chosen = directorTables().find((t) => t.name === $("#xm-table").value);
  if (!chosen) return;
  $("#xm-limit").textContent = `(at most ${chosen.catalog.overlap_arcsec}″, the catalog's overlap)`;
  $("#xm-radius").max = String(chosen.catalog.overlap_arcsec);
}
$("#xm-table").addEventListener("change", showLimit);

$("#xmatch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError("#xm-error");
  const file = $("#xm-file").files[0];
  if (refused("uploads")) {
    showError(signInFirst("cross-matches of uploaded lists"), "#xm-error");
    return;
  }
  const fields = {
    radius: $("#xm-radius").value, ra: $("#xm-ra").value, dec: $("#xm-dec").value,
    table: $("#xm-table").value, columns: $("#xm-columns-out").value,
    best: $("#xm-best").value, maxrec: $("#xm-maxrec").value,
  };
  setStatus("cross-matching…", "#xm-status");
  try {
    const result = await api.crossMatch(file, fields);
    setStatus(`${result.rows.length} match${result.rows.length === 1 ? "" : "es"}`, "#xm-status");
    const catalog = fields.table.split(".")[0];
    const fetcher = async (format) => {
      const form = new FormData();
      form.set("targets", file);
      for (const [k, v] of Object.entries({ ...fields, format })) if (v !== "") form.set(k, v);
      const response = await api.call("api/v1/xmatch", { method: "POST", body: form });
      return response.blob();
    };
    showResult(result, { xmatch: fetcher, catalog });
    const distance = result.columns.findIndex((c) => c.name === "distance");
    const canvas = $("#xm-separations");
    canvas.hidden = distance < 0 || !result.rows.length;
    if (!canvas.hidden) histogram(canvas, result, distance, 20);
  } catch (error) {
    setStatus("", "#xm-status");
    showError(error, "#xm-error");
  }
});

// --- jobs and queries ---------------------------------------------------------------------

function button(text, action) {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await action(); } catch (error) { alert(error.message); }
    refreshLists();
  });
  return b;
}

function row(tableElement, cells) {
  const tr = tableElement.insertRow();
  for (const value of cells) {
    const td = tr.insertCell();
    if (value instanceof Node) td.append(value); else td.textContent = value ?? "";
  }
  return tr;
}

async function refreshQueries() {
  const list = $("#queries");
  const found = await api.queries();
  list.replaceChildren();
  row(list.createTHead(), ["id", "status", "owner", "progress", "elapsed", "rows", "", "query"]);
  for (const q of found) {
    const progress = document.createElement("progress");
    progress.max = Math.max(q.chunks_total, 1);
    progress.value = q.chunks_done;
    const label = document.createElement("span");
    label.append(progress, ` ${q.chunks_done}/${q.chunks_total}`);
    const active = q.status === "running" || q.status === "queued";
    const tr = row(list, [String(q.id), q.status, q.owner, label, `${q.elapsed.toFixed(1)} s`,
      q.rows ?? "", active ? button("Kill", () => api.killQuery(q.id)) : "",
      q.text.length > 120 ? `${q.text.slice(0, 120)}…` : q.text]);
    tr.lastChild.className = "query-text";
    tr.dataset.query = q.id;
    tr.dataset.status = q.status;
    if (q.error) tr.title = q.error;
  }
}

const finishedJobs = new Map(); // id → the fields of a job in a final phase (they stay)

/** A job's fields (times, parameters): fetched while it is active, then kept. */
async function jobDetails(ref) {
  if (finishedJobs.has(ref.id)) return finishedJobs.get(ref.id);
  const job = await api.getJob(ref.id);
  if (!ACTIVE_PHASES.has(job.phase)) finishedJobs.set(ref.id, job);
  return job;
}

const time = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace(/Z$/, " UTC") : "");

async function refreshJobs() {
  const list = $("#jobs");
  const refs = await api.listJobs();
  const found = await Promise.all(refs.map((ref) => jobDetails(ref).catch(() => ({ ...ref }))));
  list.replaceChildren();
  row(list.createTHead(), ["job", "owner", "phase", "created", "started", "ended", "", "query"]);
  found.forEach((job, k) => {
    const actions = document.createElement("span");
    if (job.phase === "COMPLETED") {
      const open = button("Open result", async () => {
        const result = await api.jobResult(job.id);
        showResult({ ...result, job: job.id }, { job: job.id });
        showView("query");
      });
      const format = job.params?.responseformat || "votable";
      const link = downloadLink(api.jobResultURL(job.id),
        `job-${job.id}.${extension(format)}`, "download");
      link.className = "job-download";
      actions.append(open, " ", link, " ");
    }
    if (ACTIVE_PHASES.has(job.phase)) actions.append(button("Abort", () => api.abortJob(job.id)), " ");
    actions.append(button("Delete", () => api.deleteJob(job.id)));
    const query = job.params?.query ?? "";
    const tr = row(list, [job.id, refs[k].owner, job.phase, time(job.created), time(job.started),
      time(job.ended), actions, query.length > 120 ? `${query.slice(0, 120)}…` : query]);
    tr.lastChild.className = "query-text";
    tr.dataset.job = job.id;
    tr.dataset.phase = job.phase;
    if (job.error) tr.title = job.error;
  });
}

/** A list the service refused: why, in the list's place (signing in, with auth = token). */
function listFailed(list, error) {
  list.replaceChildren();
  const cell = list.insertRow().insertCell();
  cell.className = "muted";
  cell.textContent = error.status === 401
    ? "This service has users: sign in with your token (top right) to see your work."
    : error.message;
}

/** The error that says what needs a signed-in user on this service. */
function signInFirst(what, other = "") {
  return new api.ServiceError(`this service runs ${what} for its users only: sign in ` +
    `with your token (top right)${other}`, 401);
}

/** Whether the service would refuse a route group to this page (auth = token, signed
 *  out): then the page does not ask (a refusal's Basic challenge can make a browser pop
 *  up its own login dialog) but says to sign in. */
function refused(group) {
  const about = state.access;
  return Boolean(about && about.auth === "token" && !api.signedIn() &&
    !about.anonymous_routes.includes(group));
}

async function refreshLists() {
  const signIn = new api.ServiceError("sign in", 401);
  await Promise.all([
    (refused("queries") ? Promise.reject(signIn) : refreshQueries())
      .catch((e) => listFailed($("#queries"), e)),
    (refused("async") ? Promise.reject(signIn) : refreshJobs())
      .catch((e) => listFailed($("#jobs"), e)),
  ]);
}

$("#refresh-queries").addEventListener("click", refreshLists);
$("#refresh-jobs").addEventListener("click", refreshLists);
setInterval(() => { if (document.body.dataset.view === "jobs") refreshLists(); }, 2000);

// --- the schema browser -------------------------------------------------------------------

function renderSchema() {
  const root = $("#schema");
  root.replaceChildren();
  for (const catalog of state.catalogs) {
    const section = document.createElement("section");
    section.className = "catalog";
    const h = document.createElement("h2");
    h.textContent = catalog.name;
    const about = document.createElement("p");
    const cov = catalog.coverage;
    about.textContent = `${catalog.description || ""} — overlap ${catalog.overlap_arcsec}″; ` +
      `${cov.chunks} chunks cover ${(100 * cov.sky_fraction).toFixed(2)}% of the sky`;
    section.append(h, about, coverageFigure(catalog));
    for (const t of catalog.tables) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `${catalog.name}.${t.name} — ${t.kind}, ${t.rows.toLocaleString()} rows` +
        (t.chunks ? ` in ${t.chunks} chunks` : "");
      const query = button("Query it", async () => {
        editor.text = `SELECT TOP 100 *\nFROM ${catalog.name}.${t.name}`;
        showView("query");
      });
      const description = document.createElement("p");
      description.textContent = t.description || "";
      const columns = document.createElement("table");
      columns.className = "list";
      row(columns.createTHead(), ["column", "datatype", "unit", "UCD", "description"]);
      for (const c of t.columns) row(columns, [c.name, c.datatype, c.unit, c.ucd, c.description]);
      details.append(summary, description, query, columns);
      section.append(details);
    }
    root.append(section);
  }
}

/** The catalog's sky coverage: its chunks' cells on an all-sky map, coloured by density
 *  (drawn when the schema view is first shown, from the chunk statistics route). */
function coverageFigure(catalog) {
  const figure = document.createElement("figure");
  figure.className = "coverage";
  figure.dataset.catalog = catalog.name;
  const wrap = document.createElement("div");
  wrap.className = "sky-wrap";
  const canvas = Object.assign(document.createElement("canvas"), { width: 480, height: 250 });
  const tip = Object.assign(document.createElement("pre"), { className: "tip", hidden: true });
  wrap.append(canvas, tip);
  const caption = document.createElement("figcaption");
  caption.className = "muted";
  caption.textContent = "sky coverage: loading…";
  figure.append(wrap, caption);
  coverage.set(catalog.name, { plot: new SkyPlot(canvas, tip), caption, drawn: false });
  return figure;
}

async function drawCoverage() {
  for (const [name, entry] of coverage) {
    if (entry.drawn) continue;
    entry.drawn = true;
    if (!state.chunkMaps.has(name)) state.chunkMaps.set(name, api.chunkMap(name));
    try {
      const map = await state.chunkMaps.get(name);
      entry.plot.setCells(map);
      const cells = map.chunks;
      const rows = cells.reduce((sum, c) => sum + c.rows, 0);
      const area = cells.reduce((sum, c) => sum + c.area_deg2, 0);
      const orders = cells.map((c) => c.order);
      const densities = cells.map((c) => c.rows / c.area_deg2);
      const fixed = (v) => (v >= 10 ? v.toFixed(0) : v.toPrecision(2));
      entry.caption.textContent = cells.length
        ? `sky coverage: ${cells.length} chunks (HEALPix order ` +
          `${Math.min(...orders)}${Math.max(...orders) > Math.min(...orders) ? `–${Math.max(...orders)}` : ""}` +
          `), ${area.toFixed(0)} deg² (${(100 * area / 41252.96).toFixed(2)}% of the sky), ` +
          `${rows.toLocaleString()} rows of ${map.directors.map((d) => d.table).join(", ") || "its director tables"}; density ${fixed(Math.min(...densities))}–` +
          `${fixed(Math.max(...densities))} rows/deg² (dark to bright)`
        : "sky coverage: no rows loaded yet";
    } catch (error) {
      entry.drawn = false;
      state.chunkMaps.delete(name);
      entry.caption.textContent = `sky coverage: ${error.message}`;
    }
  }
}

// --- signing in (services with auth = token) ----------------------------------------------

function showSignIn(user = null) {
  $("#token").hidden = api.signedIn();
  $("#signin").textContent = api.signedIn() ? "Sign out" : "Sign in";
  $("#user").textContent = api.signedIn() && user ? user : "";
  $("#signin").closest(".auth").hidden = state.access?.auth === "none" && !api.signedIn();
}

let user = null; // the signed-in user's name

$("#signin").addEventListener("click", async () => {
  const typed = $("#token").value.trim();
  if (api.signedIn()) {
    api.setToken("");
    user = null;
  } else if (!typed) {
    $("#token").focus();
    return;
  } else {
    let about;
    try {
      about = await api.access(typed);
    } catch (error) {
      setStatus(error.status === 401 ? "sign in: the service does not know this token"
        : `sign in: ${error.message}`);
      $("#token").select();
      return;
    }
    api.setToken(typed);
    user = about.user;
    setStatus(`signed in as ${user}`);
  }
  $("#token").value = "";
  finishedJobs.clear();
  showSignIn(user);
  if (document.body.dataset.view === "jobs") refreshLists();
});
showSignIn();

// --- start --------------------------------------------------------------------------------

async function start() {
  showView("query");
  const [examples, formats, catalogs, about] = await Promise.allSettled([
    api.examples(), api.outputFormats(), api.catalogs(), api.access()]);
  if (about.status === "fulfilled") {
    state.access = about.value;
    user = about.value.user;
  } else if (about.reason?.status === 401) { // a kept token the service no longer knows
    api.setToken("");
    state.access = await api.access().catch(() => null);
  }
  showSignIn(user);
  if (formats.status === "fulfilled") state.formats = formats.value;
  if (catalogs.status === "fulfilled") {
    state.catalogs = catalogs.value;
    $("#sky-catalog").replaceChildren(...state.catalogs.map((c) => new Option(c.name)));
    $("#xm-table").replaceChildren(...directorTables().map((t) => new Option(t.name)));
    showLimit();
    renderSchema();
    const first = directorTables()[0];
    if (first && !editor.text) editor.text = `SELECT TOP 100 *\nFROM ${first.name}`;
  }
  if (examples.status === "fulfilled") {
    const select = $("#examples");
    for (const example of examples.value) {
      const option = new Option(example.name, example.id);
      option.dataset.query = example.query;
      select.append(option);
    }
    select.addEventListener("change", () => {
      const option = select.selectedOptions[0];
      if (!option?.dataset.query) return;
      editor.text = option.dataset.query;
      $("#lang").value = "ADQL";
      editor.setDialect("ADQL");
      setStatus(`example: ${option.textContent}`);
      select.value = "";
    });
  }
  await editor.ready;
  document.body.dataset.ready = "true";
  // after the page is usable: TAP_SCHEMA for completion (its columns) and for light curves
  // (its columns' UCDs and its foreign keys)
  const columns = api.tapSchemaColumns();
  columns.then((tables) => {
    editor.setSchema(tables);
    document.body.dataset.schema = "ready"; // completion knows the columns (tests wait on it)
  }).catch(() => {});
  Promise.all([columns, api.tapSchemaKeys()]).then(
    ([tables, keys]) => {
      const directors = new Set(directorTables().map((t) => t.name));
      const descriptions = Object.fromEntries(state.catalogs.flatMap(
        (c) => c.tables.map((t) => [`${c.name}.${t.name}`, t.description || ""])));
      setLightCurveSources(lc.lightCurveSources(
        { columns: tables, keys, tables: descriptions }, directors));
    }).catch((error) => setStatus(`light curves: ${error.message}`));
}

start();
