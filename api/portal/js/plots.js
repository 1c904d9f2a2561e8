// Histograms and scatter plots of a result's numeric columns, drawn on a canvas.

const MARGIN = { left: 64, right: 16, top: 16, bottom: 44 };

/** The indexes of the columns whose non-null values are all numbers. */
export function numericColumns(result) {
  return result.columns.map((_, i) => i).filter((i) => {
    let seen = false;
    for (const row of result.rows) {
      const v = row[i];
      if (v === null || v === undefined) continue;
      if (typeof v !== "number") return false;
      seen = true;
    }
    return seen;
  });
}

function finite(result, i) {
  return result.rows.map((r) => r[i]).filter((v) => typeof v === "number" && Number.isFinite(v));
}

function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step = 10 ** Math.floor(Math.log10((hi - lo) / n));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= n) ?? step * 10;
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi + 1e-12; t += nice) out.push(Number(t.toPrecision(12)));
  return out;
}

function axes(ctx, canvas, x, y, xLabel, yLabel) {
  const { width, height } = canvas;
  ctx.strokeStyle = "#555";
  ctx.fillStyle = "#333";
  ctx.font = "12px sans-serif";
  ctx.beginPath();
  ctx.moveTo(MARGIN.left, MARGIN.top);
  ctx.lineTo(MARGIN.left, height - MARGIN.bottom);
  ctx.lineTo(width - MARGIN.right, height - MARGIN.bottom);
  ctx.stroke();
  ctx.textAlign = "center";
  for (const t of ticks(x.lo, x.hi)) {
    const px = x.at(t);
    ctx.fillText(String(t), px, height - MARGIN.bottom + 16);
  }
  ctx.fillText(xLabel, (MARGIN.left + width - MARGIN.right) / 2, height - 8);
  ctx.textAlign = "right";
  for (const t of ticks(y.lo, y.hi)) ctx.fillText(String(t), MARGIN.left - 6, y.at(t) + 4);
  ctx.save();
  ctx.translate(14, (MARGIN.top + height - MARGIN.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(yLabel, 0, 0);
  ctx.restore();
}

function scale(lo, hi, from, to) {
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  return { lo, hi, at: (v) => from + ((v - lo) / (hi - lo)) * (to - from) };
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

function label(column) {
  return column.unit ? `${column.name} [${column.unit}]` : column.name;
}

/** A histogram of column ``i`` in ``bins`` bins; the counts. */
export function histogram(canvas, result, i, bins = 30) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const values = finite(result, i);
  if (!values.length) return [];
  let [lo, hi] = extent(values);
  // one value (or values equal but for rounding, 0.3 and 0.30000000000002): a range
  // around it, so that its bar stands in the middle
  if (!(hi - lo > 1e-9 * Math.max(Math.abs(lo), Math.abs(hi)))) {
    const half = Math.max(Math.abs(lo) * 0.05, 0.5 * (hi - lo), 1e-9);
    const shift = bins % 2 ? 0 : half / bins; // the value in a bin's middle, not on an edge
    [lo, hi] = [(lo + hi) / 2 - half + shift, (lo + hi) / 2 + half + shift];
  }
  const width = (hi - lo) / bins;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  const x = scale(lo, hi, MARGIN.left, canvas.width - MARGIN.right);
  const y = scale(0, Math.max(...counts), canvas.height - MARGIN.bottom, MARGIN.top);
  ctx.fillStyle = "#3b6fb6";
  counts.forEach((count, k) => {
    const x0 = x.at(lo + k * width);
    const x1 = x.at(lo + (k + 1) * width);
    ctx.fillRect(x0 + 0.5, y.at(count), Math.max(1, x1 - x0 - 1), y.at(0) - y.at(count));
  });
  axes(ctx, canvas, x, y, label(result.columns[i]), "rows");
  return counts;
}

/** A scatter plot of column ``j`` against column ``i``; the points drawn. */
export function scatter(canvas, result, i, j, { invertY = false } = {}) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const pairs = result.rows.filter((r) => Number.isFinite(r[i]) && Number.isFinite(r[j]));
  if (!pairs.length) return 0;
  const [xlo, xhi] = extent(pairs.map((r) => r[i]));
  const [ylo, yhi] = extent(pairs.map((r) => r[j]));
  const x = scale(xlo, xhi, MARGIN.left + 4, canvas.width - MARGIN.right - 4);
  const y = invertY
    ? scale(ylo, yhi, MARGIN.top + 4, canvas.height - MARGIN.bottom - 4)
    : scale(ylo, yhi, canvas.height - MARGIN.bottom - 4, MARGIN.top + 4);
  ctx.fillStyle = pairs.length > 20000 ? "rgba(59,111,182,0.35)" : "rgba(59,111,182,0.8)";
  const size = pairs.length > 20000 ? 1.5 : 3;
  for (const r of pairs) ctx.fillRect(x.at(r[i]) - size / 2, y.at(r[j]) - size / 2, size, size);
  axes(ctx, canvas, x, y, label(result.columns[i]), label(result.columns[j]));
  return pairs.length;
}

const BAND_COLOURS = { u: "#7b3fb6", g: "#2e8b57", r: "#c0392b", i: "#d35400", z: "#6d4c41",
  y: "#37474f" };
const OTHER_COLOURS = ["#3b6fb6", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#37474f"];

/** A light curve: column ``j`` (a flux or magnitude) against column ``i`` (a time), with
 *  error bars from column ``error`` and one colour per value of column ``band`` (both may
 *  be null). What was drawn: {points, bars, bands}. */
export function lightCurve(canvas, result, i, j, { error = null, band = null, invertY = false } = {}) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const rows = result.rows.filter((r) => Number.isFinite(r[i]) && Number.isFinite(r[j]));
  const drawn = { points: rows.length, bars: 0, bands: [] };
  if (!rows.length) return drawn;
  const sigma = (r) => (error != null && Number.isFinite(r[error]) ? Math.abs(r[error]) : 0);
  const [xlo, xhi] = extent(rows.map((r) => r[i]));
  const ylo = Math.min(...rows.map((r) => r[j] - sigma(r)));
  const yhi = Math.max(...rows.map((r) => r[j] + sigma(r)));
  const pad = (xhi - xlo) * 0.03;
  const x = scale(xlo - pad, xhi + pad, MARGIN.left + 4, canvas.width - MARGIN.right - 4);
  const y = invertY
    ? scale(ylo, yhi, MARGIN.top + 4, canvas.height - MARGIN.bottom - 4)
    : scale(ylo, yhi, canvas.height - MARGIN.bottom - 4, MARGIN.top + 4);
  const bands = band == null ? [""] : [...new Set(rows.map((r) => String(r[band] ?? "")))].sort();
  const colourOf = (value) => BAND_COLOURS[value] ??
    OTHER_COLOURS[bands.indexOf(value) % OTHER_COLOURS.length];
  for (const r of rows) {
    const colour = colourOf(band == null ? "" : String(r[band] ?? ""));
    const [px, py] = [x.at(r[i]), y.at(r[j])];
    const s = sigma(r);
    if (s > 0) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(px, y.at(r[j] - s));
      ctx.lineTo(px, y.at(r[j] + s));
      ctx.moveTo(px - 3, y.at(r[j] - s));
      ctx.lineTo(px + 3, y.at(r[j] - s));
      ctx.moveTo(px - 3, y.at(r[j] + s));
      ctx.lineTo(px + 3, y.at(r[j] + s));
      ctx.stroke();
      drawn.bars++;
    }
    ctx.fillStyle = colour;
    ctx.beginPath();
    ctx.arc(px, py, 3.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  axes(ctx, canvas, x, y, label(result.columns[i]), label(result.columns[j]));
  if (band != null) { // the legend: one swatch per band
    ctx.font = "12px sans-serif";
    ctx.textAlign = "left";
    bands.forEach((value, k) => {
      const top = MARGIN.top + 4 + 16 * k;
      ctx.fillStyle = colourOf(value);
      ctx.fillRect(canvas.width - MARGIN.right - 60, top, 10, 10);
      ctx.fillStyle = "#333";
      ctx.fillText(value || "(none)", canvas.width - MARGIN.right - 44, top + 9);
    });
    drawn.bands = bands;
  }
  return drawn;
}
