// Light curves: which tables of a catalog hold an object's photometry over time, found from
// the catalog's own metadata in TAP_SCHEMA (UCDs, units and foreign keys, not column names),
// the ADQL that fetches one object's curve, and which columns of a result to plot.

const words = (ucd) => (ucd || "").toLowerCase().split(";").map((w) => w.trim()).filter(Boolean);
const primary = (ucd) => words(ucd)[0] || "";

/** An epoch (time.epoch, e.g. an MJD). */
export const isTime = (column) => primary(column.ucd).startsWith("time.epoch");

/** A flux or a magnitude (not its error). */
export const isFlux = (column) => /^phot\.(flux|mag)\b/.test(primary(column.ucd));

/** A magnitude: brighter is smaller, so its axis is drawn inverted. */
export const isMagnitude = (column) => primary(column.ucd).startsWith("phot.mag");

/** The band or filter of a measurement. */
export const isBand = (column) => words(column.ucd).some(
  (w) => w === "instr.filter" || w === "instr.bandpass");

/** The error column of ``flux`` among ``columns``: a ``stat.error`` whose other UCD words are
 *  the flux's; of several, the one whose name starts with the flux's name (psfFluxErr for
 *  psfFlux, not psfDiffFluxErr). */
export function errorColumn(columns, flux) {
  const of = words(flux.ucd).join(";");
  const found = columns.filter((c) => primary(c.ucd) === "stat.error" &&
    words(c.ucd).slice(1).join(";") === of);
  const name = flux.name.toLowerCase();
  return found.find((c) => c.name.toLowerCase().startsWith(name)) ??
    (found.length === 1 ? found[0] : null);
}

/**
 * The tables that can give a light curve, best first. ``schema`` holds TAP_SCHEMA's
 * ``columns`` {table: [{name, ucd, unit, ...}]} and ``keys`` [{from_table, target_table,
 * from_column, target_column}], and the tables' descriptions ``tables`` {table: text};
 * ``directors`` the qualified names of the director tables (an object's table).
 *
 * A source is a table with a foreign key to a director table and flux columns, whose
 * epoch is a column of its own or of a table it has a foreign key to (a visit table).
 */
export function lightCurveSources(schema, directors) {
  const sources = [];
  for (const key of schema.keys) {
    if (!directors.has(key.target_table) || key.from_table === key.target_table) continue;
    const columns = schema.columns[key.from_table] || [];
    const fluxes = columns.filter(isFlux);
    if (!fluxes.length) continue;
    let time = null;
    const own = columns.find(isTime);
    if (own) time = { table: null, column: own.name };
    for (const link of schema.keys) {
      if (time) break;
      if (link.from_table !== key.from_table || directors.has(link.target_table)) continue;
      const epoch = (schema.columns[link.target_table] || []).find(isTime);
      if (epoch) {
        time = { table: link.target_table, column: epoch.name, from: link.from_column,
          to: link.target_column };
      }
    }
    if (!time) continue;
    const about = `${key.from_table} ${schema.tables[key.from_table] || ""}`;
    sources.push({
      table: key.from_table, key: key.from_column,
      director: key.target_table, directorKey: key.target_column,
      time, band: columns.find(isBand)?.name ?? null,
      fluxes: fluxes.map((f) => ({ name: f.name, error: errorColumn(columns, f)?.name ?? null })),
      // forced photometry measures every epoch, detected or not: the light curve proper
      rank: /forced|light.?curve/i.test(about) ? 0 : 1,
    });
  }
  return sources.sort((a, b) => a.rank - b.rank);
}

/** An id as an ADQL literal: a number as it is, anything else a quoted string. */
export function literal(id) {
  const text = String(id).trim();
  return /^-?\d+$/.test(text) ? text : `'${text.replaceAll("'", "''")}'`;
}

/** The ADQL of one object's light curve from ``source``, ordered by time. */
export function lightCurveQuery(source, id) {
  const time = source.time.table ? `v.${source.time.column}` : `f.${source.time.column}`;
  const select = [time];
  for (const flux of source.fluxes) {
    select.push(`f.${flux.name}`);
    if (flux.error) select.push(`f.${flux.error}`);
  }
  if (source.band) select.push(`f.${source.band}`);
  const lines = [`SELECT ${select.join(", ")}`, `FROM ${source.table} AS f`];
  if (source.time.table) {
    lines.push(`JOIN ${source.time.table} AS v ON v.${source.time.to} = f.${source.time.from}`);
  }
  lines.push(`WHERE f.${source.key} = ${literal(id)}`, `ORDER BY ${time}`);
  return lines.join("\n");
}

/** The columns of a result to draw as a light curve: {time, flux, band} indexes (time and
 *  flux -1 when missing, band null). */
export function lightCurveColumns(columns) {
  const band = columns.findIndex(isBand);
  return {
    time: columns.findIndex(isTime),
    flux: columns.findIndex(isFlux),
    band: band >= 0 ? band : null,
  };
}
