// The all-sky plot: a Hammer-Aitoff (equal-area) projection on a canvas, RA increasing to
// the left, with the catalog's density per chunk behind the result's positions. Wheel zooms
// at the cursor, dragging pans; in circle mode a drag draws a cone and reports it.

const SQRT2 = Math.SQRT2;
const RAD = Math.PI / 180;

/** (ra, dec) degrees → projection plane (X in ±2√2, Y in ±√2), RA 0 at the centre. */
export function project(ra, dec) {
  let lon = ((ra + 180) % 360 + 360) % 360 - 180; // (-180, 180]
  lon *= RAD;
  const lat = dec * RAD;
  const z = Math.sqrt(1 + Math.cos(lat) * Math.cos(lon / 2));
  return [(2 * SQRT2 * Math.cos(lat) * Math.sin(lon / 2)) / z, (SQRT2 * Math.sin(lat)) / z];
}

/** The inverse: plane → (ra, dec) degrees, or null outside the sky's ellipse. */
export function unproject(x, y) {
  if ((x * x) / 8 + (y * y) / 2 > 1) return null;
  const z = Math.sqrt(1 - (x / 4) ** 2 - (y / 2) ** 2);
  const lon = 2 * Math.atan2(z * x, 2 * (2 * z * z - 1));
  const lat = Math.asin(Math.max(-1, Math.min(1, z * y)));
  return [((lon / RAD) % 360 + 360) % 360, lat / RAD];
}

/** Angular distance in degrees. */
export function separation(ra1, dec1, ra2, dec2) {
  const a = Math.sin(((dec2 - dec1) * RAD) / 2) ** 2 +
    Math.cos(dec1 * RAD) * Math.cos(dec2 * RAD) * Math.sin(((ra2 - ra1) * RAD) / 2) ** 2;
  return (2 * Math.asin(Math.min(1, Math.sqrt(a)))) / RAD;
}

/** Points of the small circle around (ra, dec) of radius r degrees. */
function circlePoints(ra, dec, r, n = 72) {
  const [a, d, rr] = [ra * RAD, dec * RAD, r * RAD];
  const points = [];
  for (let i = 0; i <= n; i++) {
    const bearing = (2 * Math.PI * i) / n;
    const lat = Math.asin(Math.sin(d) * Math.cos(rr) + Math.cos(d) * Math.sin(rr) * Math.cos(bearing));
    const lon = a + Math.atan2(Math.sin(bearing) * Math.sin(rr) * Math.cos(d),
      Math.cos(rr) - Math.sin(d) * Math.sin(lat));
    points.push([lon / RAD, lat / RAD]);
  }
  return points;
}

function colour(t) { // 0..1 → dark blue … yellow
  const r = Math.round(30 + 225 * Math.min(1, t * 1.4));
  const g = Math.round(40 + 190 * t);
  const b = Math.round(110 + 60 * (1 - t));
  return `rgb(${r},${g},${b})`;
}

export class SkyPlot {
  constructor(canvas, tooltip) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.ctx = canvas.getContext("2d");
    this.cells = [];
    this.points = null; // {ra: Float64Array, dec: Float64Array, rows: []}
    this.zoom = 1;
    this.pan = [0, 0];
    this.mode = "pan";
    this.circle = null; // {ra, dec, r} being drawn or drawn last
    this.onCircle = null; // (ra, dec, radiusDeg) => void
    this.box = null; // {ra1, dec1, ra2, dec2} being drawn or drawn last
    this.onBox = null; // (box) => void
    this.onPick = null; // (rowIndex) => void
    this.screen = null; // projected points (for hover)
    this.listen();
  }

  setCells(chunkMap) {
    this.cells = chunkMap ? chunkMap.chunks.map((c) => ({ ...c, density: c.rows / c.area_deg2 })) : [];
    this.draw();
  }

  setPoints(ra, dec, rows) {
    this.points = null;
    if (ra) { // projected once: a zoom or pan only scales and shifts them
      const px = new Float32Array(ra.length);
      const py = new Float32Array(ra.length);
      for (let i = 0; i < ra.length; i++) {
        if (Number.isFinite(ra[i]) && Number.isFinite(dec[i])) [px[i], py[i]] = project(ra[i], dec[i]);
        else px[i] = py[i] = NaN;
      }
      this.points = { ra, dec, rows, px, py };
    }
    this.draw();
  }

  get scale() {
    const { width, height } = this.canvas;
    return this.zoom * Math.min(width / (4 * SQRT2 * 1.04), height / (2 * SQRT2 * 1.04));
  }

  toScreen(ra, dec) {
    const [x, y] = project(ra, dec);
    return [this.canvas.width / 2 + this.pan[0] - this.scale * x,
      this.canvas.height / 2 + this.pan[1] - this.scale * y];
  }

  fromScreen(px, py) {
    return unproject(-(px - this.canvas.width / 2 - this.pan[0]) / this.scale,
      -(py - this.canvas.height / 2 - this.pan[1]) / this.scale);
  }

  /** A polygon of sky points as a path, cut where it crosses the map's edge (RA 180°). */
  pathOf(points) {
    const ctx = this.ctx;
    let previous = null;
    for (const [ra, dec] of points) {
      const lon = ((ra + 180) % 360 + 360) % 360 - 180;
      const [x, y] = this.toScreen(ra, dec);
      if (previous === null || Math.abs(lon - previous) > 180) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
      previous = lon;
    }
  }

  draw() {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#0b1020";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    // the sky's ellipse
    ctx.beginPath();
    ctx.ellipse(canvas.width / 2 + this.pan[0], canvas.height / 2 + this.pan[1],
      2 * SQRT2 * this.scale, SQRT2 * this.scale, 0, 0, 2 * Math.PI);
    ctx.fillStyle = "#111a33";
    ctx.fill();
    ctx.save();
    ctx.clip();
    this.drawCells();
    this.drawGrid();
    this.drawPoints();
    this.drawCircle();
    this.drawBox();
    ctx.restore();
    ctx.fillStyle = "#9ab";
    ctx.font = "11px sans-serif";
    ctx.fillText("RA 0° at centre, increasing left; Hammer-Aitoff (equal area)", 8, canvas.height - 8);
  }

  drawCells() {
    if (!this.cells.length) return;
    const densities = this.cells.map((c) => Math.log10(c.density + 1e-9));
    const lo = Math.min(...densities);
    const hi = Math.max(...densities);
    const ctx = this.ctx;
    this.cells.forEach((cell, i) => {
      const straddles = cell.vertices.some(([ra]) => ra > 90 && ra < 180) &&
        cell.vertices.some(([ra]) => ra >= 180 && ra < 270);
      const copies = straddles
        ? [cell.vertices.map(([ra, d]) => [ra >= 180 ? 179.999 : ra, d]),
          cell.vertices.map(([ra, d]) => [ra < 180 ? 180.001 : ra, d])]
        : [cell.vertices];
      ctx.fillStyle = colour(hi > lo ? (densities[i] - lo) / (hi - lo) : 0.6);
      for (const vertices of copies) {
        ctx.beginPath();
        vertices.forEach(([ra, dec], k) => {
          const [x, y] = this.toScreen(ra, dec);
          if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        });
        ctx.closePath();
        ctx.globalAlpha = 0.75;
        ctx.fill();
      }
    });
    ctx.globalAlpha = 1;
  }

  drawGrid() {
    const ctx = this.ctx;
    ctx.strokeStyle = "rgba(180,200,255,0.25)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let ra = 0; ra < 360; ra += 30) {
      this.pathOf(Array.from({ length: 61 }, (_, i) => [ra === 180 ? 180.0001 : ra, -90 + 3 * i]));
    }
    for (let dec = -60; dec <= 60; dec += 30) {
      this.pathOf(Array.from({ length: 121 }, (_, i) => [180.0001 + 3 * i * 0.99999, dec]));
    }
    ctx.stroke();
  }

  /** The result's points, written straight into the canvas's pixels (one pass over a
   *  typed array: 10⁵ points in milliseconds, where a path per point takes far longer). */
  drawPoints() {
    const { ctx, canvas } = this;
    this.screen = null;
    if (!this.points) return;
    const { ra, px, py } = this.points;
    const { width, height } = canvas;
    const scale = this.scale;
    const [cx, cy] = [width / 2 + this.pan[0], height / 2 + this.pan[1]];
    const xs = new Float32Array(ra.length);
    const ys = new Float32Array(ra.length);
    const image = ctx.getImageData(0, 0, width, height);
    const pixels = image.data;
    const size = ra.length > 20000 ? 2 : 3;
    const back = Math.floor(size / 2);
    const stride = width * 4;
    for (let i = 0; i < ra.length; i++) {
      const x = cx - scale * px[i];
      const y = cy - scale * py[i];
      xs[i] = x; ys[i] = y;
      if (!(x > -size && x < width + size && y > -size && y < height + size)) continue;
      const left = Math.round(x) - back;
      const top = Math.round(y) - back;
      if (left < 0 || top < 0 || left + size > width || top + size > height) continue;
      for (let row = 0, at = (top * width + left) * 4; row < size; row++, at += stride) {
        for (let k = at; k < at + 4 * size; k += 4) {
          pixels[k] = 255; pixels[k + 1] = 90; pixels[k + 2] = 90; pixels[k + 3] = 255;
        }
      }
    }
    ctx.putImageData(image, 0, 0);
    this.screen = { xs, ys };
  }

  drawCircle() {
    if (!this.circle) return;
    const ctx = this.ctx;
    ctx.beginPath();
    this.pathOf(circlePoints(this.circle.ra, this.circle.dec, this.circle.r));
    ctx.strokeStyle = "#7cf";
    ctx.lineWidth = 2;
    ctx.stroke();
  }

  /** The box's outline: its corners joined by great-circle-like steps in (ra, dec). */
  drawBox() {
    if (!this.box) return;
    const { ra1, dec1, ra2, dec2 } = this.box;
    const dra = ((ra2 - ra1 + 540) % 360) - 180; // the short way round in RA
    const points = [];
    const edge = (a0, d0, da, dd) => {
      for (let i = 0; i <= 20; i++) points.push([a0 + (da * i) / 20, d0 + (dd * i) / 20]);
    };
    edge(ra1, dec1, dra, 0);
    edge(ra1 + dra, dec1, 0, dec2 - dec1);
    edge(ra1 + dra, dec2, -dra, 0);
    edge(ra1, dec2, 0, dec1 - dec2);
    const ctx = this.ctx;
    ctx.beginPath();
    this.pathOf(points.map(([a, d]) => [((a % 360) + 360) % 360, d]));
    ctx.strokeStyle = "#7cf";
    ctx.lineWidth = 2;
    ctx.stroke();
  }

  nearest(px, py, within = 6) {
    if (!this.screen) return -1;
    const { xs, ys } = this.screen;
    let best = -1;
    let bestDistance = within * within;
    for (let i = 0; i < xs.length; i++) {
      const d = (xs[i] - px) ** 2 + (ys[i] - py) ** 2;
      if (d <= bestDistance) { bestDistance = d; best = i; }
    }
    return best;
  }

  /** The canvas pixel of a mouse event (the canvas may be scaled by CSS). */
  pixel(event) {
    const box = this.canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (this.canvas.width / box.width),
      (event.clientY - box.top) * (this.canvas.height / box.height)];
  }

  listen() {
    const canvas = this.canvas;
    let dragging = null;
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const [px, py] = this.pixel(event);
      const factor = event.deltaY < 0 ? 1.25 : 0.8;
      const next = Math.min(200, Math.max(1, this.zoom * factor));
      const ratio = next / this.zoom;
      const [cx, cy] = [canvas.width / 2 + this.pan[0], canvas.height / 2 + this.pan[1]];
      this.pan = [this.pan[0] + (px - cx) * (1 - ratio), this.pan[1] + (py - cy) * (1 - ratio)];
      this.zoom = next;
      this.requestDraw();
    }, { passive: false });
    let downAt = [0, 0];
    canvas.addEventListener("mousedown", (event) => {
      const [px, py] = this.pixel(event);
      downAt = [px, py];
      if (this.mode === "circle" || this.mode === "box") {
        const at = this.fromScreen(px, py);
        if (!at) return;
        this.circle = this.mode === "circle" ? { ra: at[0], dec: at[1], r: 0 } : null;
        this.box = this.mode === "box"
          ? { ra1: at[0], dec1: at[1], ra2: at[0], dec2: at[1] } : null;
        dragging = { kind: this.mode };
      } else {
        dragging = { kind: "pan", from: [px, py], pan: [...this.pan] };
      }
    });
    window.addEventListener("mouseup", () => {
      if (dragging?.kind === "circle" && this.circle && this.circle.r > 0 && this.onCircle) {
        this.onCircle(this.circle.ra, this.circle.dec, this.circle.r);
      }
      const box = this.box;
      if (dragging?.kind === "box" && box && box.ra1 !== box.ra2 && box.dec1 !== box.dec2 &&
          this.onBox) this.onBox(box);
      dragging = null;
    });
    canvas.addEventListener("mousemove", (event) => {
      const [px, py] = this.pixel(event);
      if (dragging?.kind === "pan") {
        this.pan = [dragging.pan[0] + px - dragging.from[0], dragging.pan[1] + py - dragging.from[1]];
        this.requestDraw();
        return;
      }
      if (dragging?.kind === "box") {
        const at = this.fromScreen(px, py);
        if (at) [this.box.ra2, this.box.dec2] = at;
        this.requestDraw();
        return;
      }
      if (dragging?.kind === "circle") {
        const at = this.fromScreen(px, py);
        if (at) this.circle.r = separation(this.circle.ra, this.circle.dec, at[0], at[1]);
        this.requestDraw();
        return;
      }
      this.hover(event, px, py);
    });
    canvas.addEventListener("mouseleave", () => { this.tooltip.hidden = true; });
    canvas.addEventListener("click", (event) => {
      const [px, py] = this.pixel(event);
      // the end of a drag (a pan, a circle, a box) is not a click on a point
      if (this.mode !== "pan" || Math.hypot(px - downAt[0], py - downAt[1]) > 3) return;
      const index = this.nearest(px, py);
      if (index >= 0 && this.onPick) this.onPick(index);
    });
  }

  hover(event, px, py) {
    const index = this.nearest(px, py);
    const tip = this.tooltip;
    if (index < 0) {
      const at = this.fromScreen(px, py);
      tip.hidden = !at;
      if (at) tip.textContent = `RA ${at[0].toFixed(3)}°  Dec ${at[1].toFixed(3)}°`;
    } else {
      const { rows, columns } = this.points.rows;
      tip.textContent = columns.map((c, k) => `${c.name} = ${rows[index][k]}`).join("\n");
      tip.hidden = false;
    }
    tip.style.left = `${event.offsetX + 14}px`;
    tip.style.top = `${event.offsetY + 10}px`;
    this.hoveredIndex = index;
  }

  reset() { this.zoom = 1; this.pan = [0, 0]; this.draw(); }

  /** Redraw at the next frame (mouse events come faster than frames: draw once per frame). */
  requestDraw() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => { this.pending = 0; this.draw(); });
  }
}

/** The columns of a result that hold RA and Dec: by UCD (the main position first), else by
 *  name. Their indexes, or null. */
export function positionColumns(columns) {
  const find = (kind) => {
    const ucds = columns.map((c) => (c.ucd || "").toLowerCase());
    let i = ucds.findIndex((u) => u.split(";")[0] === `pos.eq.${kind}` && u.includes("meta.main"));
    if (i < 0) i = ucds.findIndex((u) => u.split(";")[0] === `pos.eq.${kind}`);
    if (i < 0) {
      const names = columns.map((c) => c.name.toLowerCase());
      i = names.findIndex((n) => n === kind || n === `coord_${kind}` || n.endsWith(`_${kind}`));
    }
    return i;
  };
  const ra = find("ra");
  const dec = find("dec");
  return ra >= 0 && dec >= 0 ? [ra, dec] : null;
}
