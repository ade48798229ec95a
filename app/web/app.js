// RTF catalogue browser: hash routes over the JSON API, light curves drawn as inline SVG.
//   #/                  anomalies (?class=&since_mjd=)       GET /v1/anomalies (cursor paging)
//   #/objects           all objects (?class=&since_mjd=&min_detections=)   GET /v1/objects
//   #/object/<id>       one object (?k=&class=&min_detections=)  GET /v1/objects/{id}, /neighbors, /plot
//   #/search            a posted light curve (JSON) or Avro file    POST /v1/classify, /v1/search, /v1/fingerprints
"use strict";

const MJD_OFFSET = 2400000.5;
const PAGE = 50;
const KEY_STORE = "rtf-api-key";
const SVG_NS = "http://www.w3.org/2000/svg";
const BAND_ORDER = ["u", "g", "r", "i", "z", "y"];
const EXAMPLE = {
  object_id: "my_transient", survey: "ztf",
  detections: [
    { jd: 2459000.51, band: "g", mag: 19.2, mag_err: 0.05 },
    { jd: 2459002.62, band: "r", mag: 18.9, mag_err: 0.04 },
    { jd: 2459005.55, band: "g", mag: 18.7, mag_err: 0.04 },
    { jd: 2459009.58, band: "r", mag: 18.8, mag_err: 0.05 },
    { jd: 2459014.52, band: "g", mag: 19.3, mag_err: 0.06 },
  ],
  upper_limits: [{ jd: 2458998.5, band: "r", mag: 20.6 }],
};

// ------------------------------------------------------------------ DOM helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? "—" : x.toFixed(digits));
const objectHref = (id) => "#/object/" + encodeURIComponent(id);
const objectLink = (id) => h("a", { href: objectHref(id), class: "oid" }, id);
const classTag = (label) => (label ? h("span", { class: "tag", "data-class": label }, label) : h("span", { class: "muted" }, "—"));

function scoreCell(score) {
  if (score === null || score === undefined) return h("span", { class: "muted" }, "—");
  const bar = h("span", { class: "score-bar", "aria-hidden": "true" }, h("span"));
  bar.firstChild.style.width = Math.round(Math.max(0, Math.min(1, score)) * 100) + "%";
  // a percentile in the catalogue: four decimals, so the top of a catalogue of thousands is not all "1.000"
  const title = `above ${(100 * score).toFixed(2)} % of this catalogue`;
  return h("span", { class: "score", title }, h("span", { class: "num" }, fmt(score, 4)), bar);
}

// ------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A readable message from an error body: RFC 9457 problem+json ({title, detail, errors: [{loc, msg}]})
 *  or FastAPI's {"detail": "text"} / {"detail": [{loc, msg}]}. */
function problemText(status, statusText, body) {
  const parts = [];
  if (body && typeof body === "object") {
    if (typeof body.title === "string" && body.title && body.title !== statusText) parts.push(body.title);
    if (typeof body.detail === "string" && body.detail && body.detail !== body.title) parts.push(body.detail);
    // problem+json's detail already names the first field errors: list them only for FastAPI's form
    const list = Array.isArray(body.detail) ? body.detail : typeof body.detail === "string" ? []
      : Array.isArray(body.errors) ? body.errors : [];
    for (const e of list) {
      const loc = Array.isArray(e.loc) ? e.loc.filter((x) => x !== "body" && x !== "query").join(".") : "";
      parts.push((loc ? loc + ": " : "") + (e.msg || JSON.stringify(e)));
    }
  } else if (typeof body === "string" && body.trim()) {
    parts.push(body.trim().slice(0, 300));
  }
  let text = `${status} ${statusText || ""}`.trim() + (parts.length ? " — " + parts.join("; ") : "");
  if (status === 401) text += " (enter the service's key under “API key” at the top)";
  return text;
}

async function api(path, { method = "GET", json, body, contentType, signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = localStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) headers["Content-Type"] = contentType;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the service did not answer (" + err.message + ")");
  }
  const ctype = resp.headers.get("content-type") || "";
  if (!resp.ok) {
    const text = await resp.text();
    let parsed = text;
    if (ctype.includes("json")) {
      try { parsed = JSON.parse(text); } catch { /* keep the text */ }
    }
    throw new ApiError(resp.status, problemText(resp.status, resp.statusText, parsed));
  }
  return ctype.startsWith("image/") ? resp.blob() : resp.json();
}

const errorBox = (err) => h("p", { class: "error", role: "alert" }, err instanceof ApiError ? err.message : "Error: " + err.message);

let classesPromise = null;
/** The served model's classes for the filters, {coarse, fine} (a fine name that is also coarse is left
 *  out of fine: the filters read it as the coarse class), fetched once; the footer names the model. */
function classes() {
  classesPromise ||= api("/v1/models").then((r) => {
    const m = r.models.find((x) => x.active) || r.models[0];
    const foot = document.getElementById("model-version");
    if (m) foot.textContent = `model ${m.version} · ${r.objects.toLocaleString()} objects`;
    const coarse = m ? m.coarse_classes : [];
    return { coarse, fine: (m ? m.fine_classes : []).filter((n) => !coarse.includes(n)) };
  }).catch(() => { classesPromise = null; return { coarse: [], fine: [] }; });
  return classesPromise;
}

function classSelect(id, current, anyLabel = "any class") {
  const sel = h("select", { id, name: "class" }, h("option", { value: "" }, anyLabel));
  if (current) sel.append(h("option", { value: current, selected: true }, current));
  classes().then(({ coarse, fine }) => {
    for (const [label, names] of [["coarse classes", coarse], ["fine classes", fine]]) {
      if (!names.length) continue;
      const group = h("optgroup", { label });
      for (const n of names) if (n !== current) group.append(h("option", { value: n }, n));
      sel.append(group);
    }
  });
  return sel;
}

// ------------------------------------------------------------------ light curves as SVG
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}

const detTime = (d) => (d.jd !== undefined && d.jd !== null ? d.jd - MJD_OFFSET : d.mjd);
const bandOf = (d) => d.band || { 1: "g", 2: "r", 3: "i" }[d.fid] || "?";
const magToFlux = (m) => 10 ** ((31.4 - m) / 2.5); // AB magnitude to nJy

/** Points of a light curve in the JSON form: magnitudes when every detection has one, else fluxes (nJy). */
function lightcurvePoints(lc) {
  const dets = lc.detections || [];
  const useMag = dets.length > 0 && dets.every((d) => Number.isFinite(d.mag ?? d.magpsf));
  const pts = dets.map((d) => {
    const y = useMag ? d.mag ?? d.magpsf : d.flux;
    const err = useMag ? d.mag_err ?? d.sigmapsf : d.flux_err;
    return { t: detTime(d), band: bandOf(d), y, err: Number.isFinite(err) ? err : 0 };
  }).filter((p) => Number.isFinite(p.t) && Number.isFinite(p.y));
  const uls = (lc.upper_limits || []).map((u) => {
    const m = u.mag ?? u.diffmaglim;
    return { t: detTime(u), band: bandOf(u), y: useMag ? m : magToFlux(m) };
  }).filter((p) => Number.isFinite(p.t) && Number.isFinite(p.y));
  return { useMag, pts, uls };
}

function bands(points) {
  const seen = [...new Set(points.map((p) => p.band))];
  return seen.sort((a, b) => (BAND_ORDER.indexOf(a) + 99) % 99 - (BAND_ORDER.indexOf(b) + 99) % 99);
}

/** The whole light curve: error bars, upper limits (triangles), axes in days and magnitude (or flux). */
function lightcurveSvg(lc, { width = 760, height = 300, decoded = null } = {}) {
  const { useMag, pts, uls } = lightcurvePoints(lc);
  const all = pts.concat(uls);
  // the curve decoded from the fingerprint (GET /v1/objects/{id}/decoded): it widens the time axis only
  const curves = (decoded ? decoded.bands : []).map((b) => ({
    band: b.band,
    pts: b.mjd.map((t, i) => ({ t, y: useMag ? b.mag[i] : magToFlux(b.mag[i]),
      lo: useMag ? b.mag[i] - b.mag_err[i] : magToFlux(b.mag[i] + b.mag_err[i]),
      hi: useMag ? b.mag[i] + b.mag_err[i] : magToFlux(b.mag[i] - b.mag_err[i]) })),
  }));
  const t0 = pts.length ? Math.min(...pts.map((p) => p.t)) : 0;
  const m = { l: 56, r: 14, t: 14, b: 40 };
  const xs = all.concat(curves.flatMap((c) => c.pts)).map((p) => p.t - t0);
  const ys = pts.flatMap((p) => [p.y - p.err, p.y + p.err]).concat(uls.map((p) => p.y));
  let [x0, x1] = [Math.min(0, ...xs), Math.max(1, ...xs)];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  const padX = (x1 - x0) * 0.03, padY = (y1 - y0) * 0.08 || 0.5;
  [x0, x1, y0, y1] = [x0 - padX, x1 + padX, y0 - padY, y1 + padY];
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (width - m.l - m.r);
  // magnitudes: brighter (smaller) up
  const Y = (y) => (useMag ? m.t + ((y - y0) / (y1 - y0)) * (height - m.t - m.b)
    : height - m.b - ((y - y0) / (y1 - y0)) * (height - m.t - m.b));
  const bandList = bands(all);
  const span = xs.length ? Math.max(...xs) - Math.min(...xs) : 0;
  const label = `Light curve of ${lc.object_id}: ${pts.length} detections` +
    (uls.length ? ` and ${uls.length} upper limits` : "") + ` in band${bandList.length === 1 ? "" : "s"} ` +
    `${bandList.join(", ")} over ${span.toFixed(0)} days, ${useMag ? "magnitude" : "flux in nJy"} against days`;
  const svg = s("svg", { class: "lightcurve", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label,
    "data-points": pts.length, preserveAspectRatio: "xMidYMid meet" });
  svg.append(s("title", {}, label));
  const axes = s("g", { class: "axes" });
  for (const v of niceTicks(x0, x1, 8)) {
    axes.append(s("line", { class: "grid", x1: X(v), x2: X(v), y1: m.t, y2: height - m.b }),
      s("text", { x: X(v), y: height - m.b + 16, "text-anchor": "middle" }, String(v)));
  }
  for (const v of niceTicks(Math.min(y0, y1), Math.max(y0, y1), 7)) {
    axes.append(s("line", { class: "grid", x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v) }),
      s("text", { x: m.l - 6, y: Y(v) + 4, "text-anchor": "end" }, useMag ? v.toFixed(1) : v.toPrecision(3)));
  }
  axes.append(
    s("rect", { class: "frame", x: m.l, y: m.t, width: width - m.l - m.r, height: height - m.t - m.b }),
    s("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle", class: "axis-label" },
      `days since first detection (MJD ${fmt(t0, 2)})`),
    s("text", { transform: `translate(14 ${(m.t + height - m.b) / 2}) rotate(-90)`, "text-anchor": "middle",
      class: "axis-label" }, useMag ? "magnitude" : "flux (nJy)"));
  svg.append(axes);
  if (curves.length) {
    const clip = `clip-${Math.random().toString(36).slice(2)}`;
    svg.append(s("clipPath", { id: clip }, s("rect", { x: m.l, y: m.t, width: width - m.l - m.r, height: height - m.t - m.b })));
    const model = s("g", { class: "decoded", "clip-path": `url(#${clip})` });
    for (const c of curves) {
      const line = c.pts.map((p, i) => `${i ? "L" : "M"}${X(p.t - t0).toFixed(1)},${Y(p.y).toFixed(1)}`).join("");
      const upper = c.pts.map((p, i) => `${i ? "L" : "M"}${X(p.t - t0).toFixed(1)},${Y(p.hi).toFixed(1)}`).join("");
      const lower = c.pts.slice().reverse().map((p) => `L${X(p.t - t0).toFixed(1)},${Y(p.lo).toFixed(1)}`).join("");
      model.append(s("path", { class: `sigma band-${c.band}`, d: upper + lower + "Z" }),
        s("path", { class: `curve band-${c.band}`, d: line }, s("title", {}, `${c.band}: decoded from the fingerprint (±1σ)`)));
    }
    svg.append(model);
  }
  const data = s("g", { class: "data" });
  for (const p of uls) {
    const [x, y] = [X(p.t - t0), Y(p.y)];
    const dir = useMag ? 1 : -1; // towards fainter
    data.append(s("path", { class: `ul band-${p.band}`, d: `M${x - 4},${y - 3 * dir}h8l-4,${7 * dir}z` },
      s("title", {}, `upper limit ${p.band} ${useMag ? p.y.toFixed(2) + " mag" : p.y.toPrecision(3) + " nJy"}, MJD ${p.t.toFixed(2)}`)));
  }
  for (const p of pts) {
    const [x, y] = [X(p.t - t0), Y(p.y)];
    const g = s("g", { class: `det band-${p.band}` });
    if (p.err > 0) g.append(s("line", { x1: x, x2: x, y1: Y(p.y - p.err), y2: Y(p.y + p.err) }));
    g.append(s("circle", { cx: x, cy: y, r: 3.2 }),
      s("title", {}, `${p.band} ${useMag ? p.y.toFixed(2) + " ± " + p.err.toFixed(2) + " mag"
        : p.y.toPrecision(4) + " ± " + p.err.toPrecision(2) + " nJy"}, MJD ${p.t.toFixed(3)}`));
    data.append(g);
  }
  svg.append(data);
  const legend = h("ul", { class: "legend", "aria-label": "bands" },
    bandList.map((b) => h("li", { class: `band-${b}` }, h("span", { class: "swatch", "aria-hidden": "true" }),
      legendText(b, pts, uls))),
    uls.length ? h("li", { class: "ul-key" }, "▼ upper limit") : null,
    curves.length ? h("li", { class: "decoded-key" }, "— decoded from the fingerprint, ±1σ shaded") : null);
  return h("figure", { class: "lc-figure" }, svg, legend);
}

function legendText(band, pts, uls) {
  const n = pts.filter((p) => p.band === band).length;
  const u = uls.filter((p) => p.band === band).length;
  return `${band}: ${n} detection${n === 1 ? "" : "s"}` + (u ? `, ${u} limit${u === 1 ? "" : "s"}` : "");
}

/** A small light curve (no axes), for neighbour rows. */
function sparkline(lc, width = 150, height = 40) {
  const { useMag, pts } = lightcurvePoints(lc);
  const svg = s("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `small light curve of ${lc.object_id}, ${pts.length} detections`, "data-points": pts.length });
  if (!pts.length) return svg;
  const ts = pts.map((p) => p.t), ys = pts.map((p) => p.y);
  const [t0, t1, y0, y1] = [Math.min(...ts), Math.max(...ts), Math.min(...ys), Math.max(...ys)];
  const X = (t) => 3 + ((t - t0) / (t1 - t0 || 1)) * (width - 6);
  const Y = (y) => { const f = (y - y0) / (y1 - y0 || 1); return 3 + (useMag ? f : 1 - f) * (height - 6); };
  for (const p of pts) svg.append(s("circle", { class: `band-${p.band}`, cx: X(p.t), cy: Y(p.y), r: 1.7 }));
  return svg;
}

/** Class probabilities as labelled bars, most probable first. */
function probabilityList(probs, caption) {
  const entries = Object.entries(probs || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return h("p", { class: "muted" }, "No probabilities.");
  return h("table", { class: "probs" }, h("caption", { class: "visually-hidden" }, caption),
    h("tbody", {}, entries.map(([name, p]) => {
      const bar = h("span", { class: "prob-bar", "aria-hidden": "true" }, h("span"));
      bar.firstChild.style.width = (p * 100).toFixed(1) + "%";
      return h("tr", {}, h("th", { scope: "row" }, name), h("td", { class: "bar-cell" }, bar),
        h("td", { class: "num" }, (p * 100).toFixed(1) + "%"));
    })));
}

// ------------------------------------------------------------------ routing
const main = () => document.getElementById("main");
let renderToken = 0;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function hashOf(path, params) {
  const q = new URLSearchParams([...params].filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
  return "#" + path + (q ? "?" + q : "");
}

async function route() {
  const token = ++renderToken;
  performance.mark("rtf:route"); // the marks below let benchmarks/bench_web.py time each view
  const { parts, params } = parseHash();
  const view = parts[0] || "anomalies";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = main();
  root.replaceChildren();
  root.setAttribute("aria-busy", "true");
  const live = () => token === renderToken;
  try {
    if (view === "object" && parts[1]) await objectView(root, parts.slice(1).join("/"), params, live);
    else if (view === "search") await searchView(root, live);
    else if (view === "objects") await listView(root, "objects", params, live);
    else await listView(root, "anomalies", params, live);
  } catch (err) {
    if (live()) root.append(errorBox(err));
  } finally {
    if (live()) root.removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------------ lists (anomalies, all objects)
async function listView(root, kind, params, live) {
  const anomalies = kind === "anomalies";
  document.title = (anomalies ? "Anomalies" : "Objects") + " · RTF catalogue";
  const filters = h("form", { class: "filters", "aria-label": "filters" },
    h("div", { class: "field" }, h("label", { for: "f-class" }, "Predicted class"), classSelect("f-class", params.get("class"))),
    h("div", { class: "field" }, h("label", { for: "f-since" }, "Last detection on or after (MJD)"),
      h("input", { id: "f-since", name: "since_mjd", type: "number", step: "any", value: params.get("since_mjd") || "" })),
    anomalies ? null : h("div", { class: "field" }, h("label", { for: "f-mindet" }, "At least this many detections"),
      h("input", { id: "f-mindet", name: "min_detections", type: "number", min: 0, step: 1,
        value: params.get("min_detections") || "" })),
    h("div", { class: "field actions" }, h("button", { type: "submit" }, "Apply"),
      h("a", { href: anomalies ? "#/" : "#/objects", class: "button secondary" }, "Clear")));
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = hashOf(anomalies ? "/" : "/objects", new FormData(filters));
  });
  const heading = anomalies ? "Most anomalous objects" : "All objects";
  const intro = anomalies
    ? "Most anomalous first. The anomaly score is a percentile in this catalogue (0.99: above 99 % of it), from "
      + "isolation among its neighbours, how rare its class is here and the model's own score; experts' answers "
      + "(POST /v1/anomalies/{id}/feedback) re-rank it. To filter by detections, use All objects."
    : "The catalogue by object id, with the served model's predictions.";
  const head = anomalies
    ? ["#", "Object", "Predicted class", "Anomaly score", "Detections", "Last detection (MJD)"]
    : ["Object", "Survey", "Predicted class", "Known class", "Anomaly score", "Detections", "First – last (MJD)"];
  const tbody = h("tbody");
  const table = h("table", { class: "list", id: "list", "data-kind": kind },
    h("caption", { class: "visually-hidden" }, heading),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))), tbody);
  const status = h("p", { class: "muted", role: "status" });
  const more = h("button", { type: "button", class: "more", hidden: true }, `Show ${PAGE} more`);
  root.append(h("h1", {}, heading), h("p", { class: "muted" }, intro), filters,
    h("div", { class: "table-wrap" }, table), h("div", { class: "list-foot" }, status, more));

  const query = new URLSearchParams({ limit: PAGE });
  if (params.get("class")) query.set("class", params.get("class"));
  const since = parseFloat(params.get("since_mjd"));
  if (Number.isFinite(since)) query.set("since", String(since + MJD_OFFSET));
  if (!anomalies && params.get("min_detections")) query.set("min_detections", params.get("min_detections"));
  let cursor = null, shown = 0;
  const load = async () => {
    more.disabled = true;
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/${kind}?${query}`);
    if (!live()) return;
    for (const it of page.items) {
      shown += 1;
      tbody.append(anomalies
        ? h("tr", {}, h("td", { class: "num muted" }, shown), h("td", {}, objectLink(it.object_id)),
          h("td", {}, classTag(it.label)), h("td", {}, scoreCell(it.score)), h("td", { class: "num" }, it.n_detections),
          h("td", { class: "num" }, it.last_jd ? fmt(it.last_jd - MJD_OFFSET, 2) : "—"))
        : h("tr", {}, h("td", {}, objectLink(it.object_id)), h("td", {}, it.survey || "—"), h("td", {}, classTag(it.label)),
          h("td", {}, it.known_label || h("span", { class: "muted" }, "—")), h("td", {}, scoreCell(it.anomaly_score)),
          h("td", { class: "num" }, it.n_detections),
          h("td", { class: "num" }, `${fmt(it.first_mjd, 1)} – ${fmt(it.last_mjd, 1)}`)));
    }
    cursor = page.next_cursor;
    status.textContent = shown ? `Showing ${shown.toLocaleString()}${cursor ? "" : " (all that match)"}.` : "Nothing matches these filters.";
    more.hidden = !cursor;
    more.disabled = false;
    performance.mark("rtf:list");
  };
  more.addEventListener("click", () => load().catch((err) => { more.disabled = false; status.replaceChildren(errorBox(err)); }));
  await load();
}

// ------------------------------------------------------------------ one object
function factList(obj) {
  const rows = [
    ["Survey", obj.survey || "—"],
    ["Predicted class", classTag(obj.label)],
    ["Predicted fine class", obj.fine_label || "—"],
    ["Known class", obj.known_label || "—"],
    ["Anomaly score", scoreCell(obj.anomaly_score)],
    ["Detections", obj.n_detections],
    ["First – last detection (MJD)", `${fmt(obj.first_mjd, 3)} – ${fmt(obj.last_mjd, 3)}`],
    ["RA, Dec (deg)", obj.ra === null || obj.ra === undefined ? "—" : `${fmt(obj.ra, 5)}, ${fmt(obj.dec, 5)}`],
  ];
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function neighbourTable(neighbours, { sparklines = true, caption = "Nearest neighbours" } = {}) {
  if (!neighbours.length) return h("p", { class: "muted" }, "No neighbours match.");
  const rows = neighbours.map((n, i) => h("tr", { "data-object": n.object_id },
    h("td", { class: "num muted" }, i + 1),
    sparklines ? h("td", { class: "spark-cell" }) : null,
    h("td", {}, objectLink(n.object_id)), h("td", {}, classTag(n.class)),
    h("td", { class: "num" }, fmt(n.similarity, 3)), h("td", {}, scoreCell(n.anomaly_score)),
    h("td", { class: "num" }, n.n_detections ?? "—")));
  const cols = ["#", sparklines ? "Light curve" : null, "Object", "Predicted class", "Similarity", "Anomaly score", "Detections"];
  const table = h("table", { class: "list neighbours" }, h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, cols.filter(Boolean).map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));
  if (sparklines) fillSparklines(rows);
  return h("div", { class: "table-wrap" }, table);
}

/** Each neighbour row's small light curve (GET /v1/objects/{id}), four at a time, after the table shows. */
async function fillSparklines(rows) {
  const queue = [...rows];
  const worker = async () => {
    for (let row = queue.shift(); row; row = queue.shift()) {
      const cell = row.querySelector(".spark-cell");
      try {
        const obj = await api("/v1/objects/" + encodeURIComponent(row.dataset.object));
        cell.append(sparkline(obj.lightcurve));
      } catch {
        cell.append(h("span", { class: "muted" }, "—"));
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  performance.mark("rtf:sparklines");
}

async function objectView(root, id, params, live) {
  document.title = id + " · RTF catalogue";
  const k = Math.max(1, Math.min(100, parseInt(params.get("k"), 10) || 10));
  const nq = new URLSearchParams({ k });
  if (params.get("class")) nq.set("class", params.get("class"));
  if (params.get("min_detections")) nq.set("min_detections", params.get("min_detections"));
  const enc = encodeURIComponent(id);
  const [obj, nbs, dec] = await Promise.allSettled([api(`/v1/objects/${enc}`), api(`/v1/objects/${enc}/neighbors?${nq}`),
    api(`/v1/objects/${enc}/decoded?points=150`)]);
  if (!live()) return;
  if (obj.status === "rejected") {
    root.append(h("h1", { class: "object-id" }, id), errorBox(obj.reason), h("p", {}, h("a", { href: "#/" }, "Back to the anomalies")));
    return;
  }
  const o = obj.value;
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Anomalies"), " / object"),
    h("h1", { class: "object-id" }, o.object_id),
    h("div", { class: "object-grid" },
      h("section", { class: "card lc", "aria-labelledby": "lc-h" }, h("h2", { id: "lc-h" }, "Light curve"),
        lightcurveSvg(o.lightcurve, { decoded: dec.status === "fulfilled" ? dec.value : null }),
        dec.status === "rejected" ? h("p", { class: "muted" }, `No decoded curve: ${dec.reason.message}`) : null,
        modelFigure(o.object_id)),
      h("section", { class: "card", "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h" }, "Summary"), factList(o)),
      h("section", { class: "card", id: "classification", "aria-labelledby": "cls-h" },
        h("h2", { id: "cls-h" }, "Classification"),
        h("p", {}, "Predicted: ", classTag(o.label)),
        probabilityList(o.probabilities, `class probabilities of ${o.object_id}`))));
  const nbForm = h("form", { class: "filters compact", "aria-label": "neighbour filters" },
    h("div", { class: "field" }, h("label", { for: "n-k" }, "How many"),
      h("input", { id: "n-k", name: "k", type: "number", min: 1, max: 100, value: k })),
    h("div", { class: "field" }, h("label", { for: "n-class" }, "Only class"), classSelect("n-class", params.get("class"))),
    h("div", { class: "field" }, h("label", { for: "n-mindet" }, "At least this many detections"),
      h("input", { id: "n-mindet", name: "min_detections", type: "number", min: 0, value: params.get("min_detections") || "" })),
    h("div", { class: "field actions" }, h("button", { type: "submit" }, "Apply")));
  nbForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = hashOf("/object/" + enc, new FormData(nbForm));
  });
  const nbSection = h("section", { class: "card", id: "neighbours", "aria-labelledby": "nb-h" },
    h("h2", { id: "nb-h" }, "Nearest neighbours"),
    h("p", { class: "muted" }, "By cosine similarity of the fingerprints."), nbForm);
  nbSection.append(nbs.status === "fulfilled" ? neighbourTable(nbs.value.neighbors) : errorBox(nbs.reason));
  root.append(nbSection);
  performance.mark("rtf:object");
}

/** The service's PNG figure (light curve, the curve decoded from the fingerprint, top neighbours), on demand. */
function modelFigure(id) {
  const details = h("details", { class: "model-figure" },
    h("summary", {}, "Model reconstruction (the curve decoded from the fingerprint) and top neighbours"));
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const wait = h("p", { class: "muted" }, "Drawing…");
    details.append(wait);
    try {
      const blob = await api(`/v1/objects/${encodeURIComponent(id)}/plot`);
      wait.replaceWith(h("img", { src: URL.createObjectURL(blob), class: "plot",
        alt: `Light curve of ${id} with the model's reconstruction from its fingerprint and its three nearest neighbours` }));
    } catch (err) {
      delete details.dataset.loaded;
      wait.replaceWith(errorBox(err));
    }
  });
  return details;
}

// ------------------------------------------------------------------ search by light curve
const PENDING_QUERY = "rtf-pending-query";

/** Light curves of pasted JSON: one light curve, a list of them, or {"lightcurves": [...]}. */
function parseLightcurves(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ApiError(0, "The text is not JSON: " + err.message);
  }
  const list = Array.isArray(data) ? data : Array.isArray(data?.lightcurves) ? data.lightcurves : [data];
  if (!list.length || !list.every((x) => x && typeof x === "object" && Array.isArray(x.detections))) {
    throw new ApiError(0, "Expected a light curve ({\"object_id\": ..., \"detections\": [...]}), a list of them, " +
      "or {\"lightcurves\": [...]}");
  }
  return list;
}

async function searchView(root, live) {
  document.title = "Search · RTF catalogue";
  const text = h("textarea", { id: "s-json", name: "json", rows: 10, spellcheck: "false",
    placeholder: '{"object_id": "...", "detections": [{"jd": ..., "band": "g", "mag": ..., "mag_err": ...}]}' });
  const file = h("input", { id: "s-file", name: "file", type: "file", accept: ".avro,avro/binary,application/octet-stream" });
  const k = h("input", { id: "s-k", name: "k", type: "number", min: 1, max: 100, value: 10 });
  const results = h("div", { id: "search-results", "aria-live": "polite" });
  const form = h("form", { class: "search-form" },
    h("div", { class: "field" }, h("label", { for: "s-json" }, "A light curve in the JSON form (one, a list, or {\"lightcurves\": [...]})"), text,
      h("button", { type: "button", class: "secondary", onclick: () => { text.value = JSON.stringify(EXAMPLE, null, 1); } },
        "Insert an example")),
    h("div", { class: "field" }, h("label", { for: "s-file" }, "…or an Avro file of ZTF / LSST alert packets"), file),
    h("div", { class: "field inline" }, h("label", { for: "s-k" }, "Neighbours"), k,
      h("button", { type: "submit" }, "Classify and find neighbours")));
  root.append(h("h1", {}, "Search by light curve"),
    h("p", { class: "muted" }, "Nothing is stored: the light curve is encoded, classified and compared with the catalogue. " +
      "To open a stored object, type its id in the box at the top."), form, results);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    runSearch(text.value, file.files[0], parseInt(k.value, 10) || 10, results, live).catch((err) => {
      if (live()) results.replaceChildren(errorBox(err));
    });
  });
  const pending = sessionStorage.getItem(PENDING_QUERY);
  if (pending) {
    sessionStorage.removeItem(PENDING_QUERY);
    text.value = pending;
    await runSearch(pending, null, 10, results, live).catch((err) => results.replaceChildren(errorBox(err)));
  }
}

async function runSearch(jsonText, avroFile, k, results, live) {
  results.replaceChildren(h("p", { class: "muted" }, "Encoding…"));
  let queries; // [{id, lightcurve?, prediction, neighbours}]
  if (avroFile) {
    const body = await avroFile.arrayBuffer();
    const [cls, fps] = await Promise.all([
      api("/v1/classify", { method: "POST", body, contentType: "avro/binary" }),
      api("/v1/fingerprints", { method: "POST", body, contentType: "avro/binary" })]);
    const picked = fps.fingerprints.slice(0, 5);
    const found = await Promise.all(picked.map((f) => api("/v1/search", { method: "POST", json: { vector: f.vector, k } })));
    queries = picked.map((f, i) => ({ id: f.object_id, prediction: cls.predictions.find((p) => p.object_id === f.object_id),
      neighbours: found[i].neighbors }));
    if (fps.fingerprints.length > picked.length) {
      queries.note = `${fps.fingerprints.length} objects in the file; the first ${picked.length} are shown.`;
    }
  } else {
    if (!jsonText.trim()) throw new ApiError(0, "Paste a light curve, or choose an Avro file.");
    const lcs = parseLightcurves(jsonText).slice(0, 5);
    const [cls, ...found] = await Promise.all([
      api("/v1/classify", { method: "POST", json: { lightcurves: lcs } }),
      ...lcs.map((lc) => api("/v1/search", { method: "POST", json: { lightcurve: lc, k } }))]);
    queries = lcs.map((lc, i) => ({ id: lc.object_id, lightcurve: lc, prediction: cls.predictions[i], neighbours: found[i].neighbors }));
  }
  if (!live()) return;
  results.replaceChildren();
  if (queries.note) results.append(h("p", { class: "muted" }, queries.note));
  for (const q of queries) {
    const p = q.prediction;
    results.append(h("section", { class: "card query-result", "aria-label": `results for ${q.id}` },
      h("h2", {}, q.id),
      q.lightcurve ? lightcurveSvg(q.lightcurve) : null,
      p ? h("div", { class: "two-col" },
        h("div", {}, h("h3", {}, "Classification"), h("p", {}, "Predicted: ", classTag(p.label), " · the model's anomaly score ",
          h("span", { class: "num" }, fmt(p.anomaly_score, 3))), probabilityList(p.probabilities, `class probabilities of ${q.id}`)),
        Object.keys(p.fine_probabilities || {}).length ? h("div", {}, h("h3", {}, "Fine classes"),
          probabilityList(Object.fromEntries(Object.entries(p.fine_probabilities).sort((a, b) => b[1] - a[1]).slice(0, 6)),
            `fine class probabilities of ${q.id}`)) : null) : null,
      h("h3", {}, "Nearest neighbours in the catalogue"),
      neighbourTable(q.neighbours, { caption: `neighbours of ${q.id}` })));
  }
}

// ------------------------------------------------------------------ header: go to an object, the API key
function setupHeader() {
  const form = document.getElementById("goto");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = form.q.value.trim();
    if (!q) return;
    if (q.startsWith("{") || q.startsWith("[")) {
      sessionStorage.setItem(PENDING_QUERY, q);
      if (location.hash === "#/search") route();
      else location.hash = "#/search";
    } else {
      location.hash = objectHref(q);
    }
    form.q.value = "";
  });
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("api-key");
  const state = document.getElementById("key-state");
  const show = () => { state.textContent = localStorage.getItem(KEY_STORE) ? "A key is saved." : "No key saved."; };
  keyForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (keyInput.value) localStorage.setItem(KEY_STORE, keyInput.value);
    keyInput.value = "";
    show();
  });
  document.getElementById("key-clear").addEventListener("click", () => { localStorage.removeItem(KEY_STORE); show(); });
  show();
}

window.addEventListener("hashchange", () => {
  route();
  main().focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
document.addEventListener("DOMContentLoaded", () => {
  setupHeader();
  classes();
  route();
});
