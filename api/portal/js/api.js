// The service's public APIs as the portal uses them: TAP (sync, async/UWS, VOSI, examples,
// TAP_SCHEMA) and REST (/api/v1). Nothing here is private to the page: a script can make
// the same calls.

const UWS = "http://www.ivoa.net/xml/UWS/v1.0";

// --- who calls: with the service's auth = token, the user's bearer token ----------------

const TOKEN_KEY = "qserv_py.token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";

/** Sign in with a token (kept for the browser tab's session), or out with "". */
export function setToken(value) {
  token = value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export const signedIn = () => Boolean(token);

/** Marks the page's requests as a script's, so that a 401 challenges with Bearer only
 *  (a Basic challenge would open the browser's login dialog over the page). */
const SCRIPTED = { "X-Requested-With": "XMLHttpRequest" };

/** fetch, with the user's token when signed in. */
export function call(url, init = {}) {
  const headers = { ...(init.headers || {}), ...SCRIPTED };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(url, { ...init, headers });
}

/** A failed request: its message as the service wrote it, and the line and column of a
 *  query error when the message names them ("... (line 2, column 7)"). */
export class ServiceError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
    const at = /\(line (\d+), column (\d+)\)/.exec(message);
    this.line = at ? Number(at[1]) : null;
    this.column = at ? Number(at[2]) : null;
  }
}

/** The message of an error answer: a DALI error VOTable (TAP) or {"message"} JSON (REST). */
async function errorOf(response) {
  const text = await response.text();
  const type = response.headers.get("content-type") || "";
  let message = text;
  if (type.includes("json")) {
    try { message = JSON.parse(text).message || text; } catch { /* keep the text */ }
  } else if (type.includes("xml")) {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const info = [...doc.getElementsByTagName("INFO")].find(
      (i) => i.getAttribute("name") === "QUERY_STATUS");
    message = info ? info.textContent.trim() : text;
  }
  return new ServiceError(message || `${response.status} ${response.statusText}`, response.status);
}

async function checked(response) {
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** The body of a GET as a blob (with the token when signed in), for saving as a file; a
 *  failed request throws its message. */
export async function fetchBlob(url) {
  return (await checked(await call(url))).blob();
}

/** How the service authenticates and who the caller is (GET /api/v1/access): {auth,
 *  anonymous_routes, user, admin}; with ``value``, as the holder of that token (a token
 *  the service does not know is refused: a ServiceError with status 401). */
export async function access(value = null) {
  const response = value == null ? await call("api/v1/access")
    : await fetch("api/v1/access", { headers: { ...SCRIPTED, Authorization: `Bearer ${value.trim()}` } });
  return (await checked(response)).json();
}

export async function getJSON(url) {
  return (await checked(await call(url))).json();
}

/** A TAP JSON result {metadata, data, query_status} as the page's result object. */
export function tapResult(doc, extra = {}) {
  return {
    columns: doc.metadata,
    rows: doc.data,
    overflow: doc.query_status === "OVERFLOW",
    ...extra,
  };
}

function tapForm(query, { lang, maxrec, format = "json" }) {
  const form = new URLSearchParams({ REQUEST: "doQuery", LANG: lang, QUERY: query,
    RESPONSEFORMAT: format });
  if (maxrec !== "" && maxrec != null) form.set("MAXREC", String(maxrec));
  return form;
}

/** Run a query synchronously (TAP sync); the result. */
export async function runSync(query, options, signal) {
  const started = performance.now();
  const response = await checked(await call("tap/sync", {
    method: "POST", body: tapForm(query, options), signal }));
  const doc = await response.json();
  return tapResult(doc, { seconds: (performance.now() - started) / 1000 });
}

/** The URL that downloads a query's result in a format (TAP sync, GET). */
export function downloadURL(query, options, format) {
  return `tap/sync?${tapForm(query, { ...options, format })}`;
}

// --- async jobs (UWS) ---------------------------------------------------------------------

function jobFields(doc) {
  const one = (name) => {
    const el = doc.getElementsByTagNameNS(UWS, name)[0];
    return el ? el.textContent.trim() : "";
  };
  const params = {};
  for (const p of doc.getElementsByTagNameNS(UWS, "parameter")) {
    params[p.getAttribute("id").toLowerCase()] = p.textContent;
  }
  const errorSummary = doc.getElementsByTagNameNS(UWS, "errorSummary")[0];
  return {
    id: one("jobId"), phase: one("phase"), created: one("creationTime"),
    started: one("startTime"), ended: one("endTime"), params,
    error: errorSummary ? errorSummary.textContent.trim() : "",
  };
}

async function xml(response) {
  return new DOMParser().parseFromString(await response.text(), "application/xml");
}

/** Create and start an async job; its id. */
export async function createJob(query, options) {
  const form = tapForm(query, options);
  form.set("PHASE", "RUN");
  const response = await checked(await call("tap/async", { method: "POST", body: form }));
  return jobFields(await xml(response)).id;
}

/** The job's state; with wait, blocks up to that many seconds while it is active. */
export async function getJob(id, wait = 0) {
  const url = wait ? `tap/async/${id}?WAIT=${wait}` : `tap/async/${id}`;
  return jobFields(await xml(await checked(await call(url))));
}

export async function listJobs() {
  const doc = await xml(await checked(await call("tap/async?LAST=50")));
  return [...doc.getElementsByTagNameNS(UWS, "jobref")].map((ref) => ({
    id: ref.getAttribute("id"),
    phase: ref.getElementsByTagNameNS(UWS, "phase")[0]?.textContent ?? "",
    created: ref.getElementsByTagNameNS(UWS, "creationTime")[0]?.textContent ?? "",
    owner: ref.getElementsByTagNameNS(UWS, "ownerId")[0]?.textContent ?? "",
  }));
}

export async function abortJob(id) {
  await checked(await call(`tap/async/${id}/phase`, {
    method: "POST", body: new URLSearchParams({ PHASE: "ABORT" }) }));
}

export async function deleteJob(id) {
  await checked(await call(`tap/async/${id}`, { method: "DELETE" }));
}

/** The URL of a completed job's result. */
export const jobResultURL = (id) => `tap/async/${id}/results/result`;

/** The result of a completed job (it must have been run with RESPONSEFORMAT=json). */
export async function jobResult(id) {
  const response = await checked(await call(`tap/async/${id}/results/result`));
  const type = response.headers.get("content-type") || "";
  if (!type.includes("json")) {
    throw new ServiceError(`job ${id} wrote its result as ${type.split(";")[0]}, which the ` +
      "page cannot show: download it instead", 415);
  }
  return tapResult(await response.json());
}

/** The job's error message, from its DALI error document. */
export async function jobError(id) {
  const response = await call(`tap/async/${id}/error`);
  return (await errorOf(response)).message;
}

// --- service description ------------------------------------------------------------------

/** The output formats the service declares in its capabilities: [{alias, mime}]. */
export async function outputFormats() {
  const doc = await xml(await checked(await call("tap/capabilities")));
  return [...doc.getElementsByTagName("outputFormat")].map((f) => ({
    mime: f.getElementsByTagName("mime")[0]?.textContent.trim() ?? "",
    alias: f.getElementsByTagName("alias")[0]?.textContent.trim() ?? "",
  })).filter((f) => f.mime);
}

/** The service's DALI examples: [{id, name, query, upload}]. */
export async function examples() {
  const doc = new DOMParser().parseFromString(
    await (await checked(await call("tap/examples"))).text(), "text/html");
  return [...doc.querySelectorAll('[typeof="example"]')].map((el) => ({
    id: el.id,
    name: el.querySelector('[property="name"]')?.textContent.trim() ?? el.id,
    query: el.querySelector('[property="query"]')?.textContent.trim() ?? "",
    needsUpload: el.textContent.includes("TAP_UPLOAD"),
  }));
}

/** Every column of every table from TAP_SCHEMA: {table: [{name, unit, ucd, description}]}. */
export async function tapSchemaColumns() {
  const result = await runSync(
    "SELECT table_name, column_name, datatype, unit, ucd, description FROM TAP_SCHEMA.columns",
    { lang: "ADQL", maxrec: 100000 });
  const tables = {};
  for (const [table, name, datatype, unit, ucd, description] of result.rows) {
    (tables[table] ??= []).push({ name, datatype, unit, ucd, description });
  }
  return tables;
}

/** The foreign keys of TAP_SCHEMA: [{from_table, target_table, from_column, target_column}]
 *  (one entry per column pair). */
export async function tapSchemaKeys() {
  const result = await runSync(
    "SELECT k.from_table, k.target_table, c.from_column, c.target_column\n" +
    "FROM TAP_SCHEMA.keys AS k JOIN TAP_SCHEMA.key_columns AS c ON c.key_id = k.key_id",
    { lang: "ADQL", maxrec: 100000 });
  return result.rows.map(([from_table, target_table, from_column, target_column]) => (
    { from_table, target_table, from_column, target_column }));
}

export const catalogs = () => getJSON("api/v1/catalogs");
export const chunkMap = (name) => getJSON(`api/v1/catalogs/${encodeURIComponent(name)}/chunks`);
export const queries = () => getJSON("api/v1/queries?limit=30");

export async function killQuery(id) {
  await checked(await call(`api/v1/queries/${id}`, { method: "DELETE" }));
}

/** Cross-match an uploaded file (multipart, as the REST API takes it); the result. */
export async function crossMatch(file, fields) {
  const form = new FormData();
  form.set("targets", file);
  for (const [name, value] of Object.entries(fields)) {
    if (value !== "" && value != null) form.set(name, String(value));
  }
  form.set("format", "json");
  const started = performance.now();
  const response = await checked(await call("api/v1/xmatch", { method: "POST", body: form }));
  return tapResult(await response.json(), {
    seconds: (performance.now() - started) / 1000,
    queryId: response.headers.get("X-Query-Id"),
  });
}
