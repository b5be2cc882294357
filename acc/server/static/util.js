// Small shared helpers: DOM building (text only, never innerHTML), fetch, formatting.
"use strict";

// The palette: conditions of a run take the first colours, runs compared one colour each.
const ACC = window.ACC = {metrics: {}, palette: [
  "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd",
  "#e6550d", "#31a354", "#756bb1", "#636363"]};

ACC.el = function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

ACC.api = async function api(path, options) {
  const init = Object.assign({headers: {}}, options || {});
  if (init.body !== undefined && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(ACC.errorText(data) || `${response.status} ${response.statusText}`);
  return data;
};

ACC.errorText = function errorText(data) {
  if (!data) return "";
  if (Array.isArray(data.errors) && data.errors.length) {
    return data.errors.map(e => `${e.loc.filter(p => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) {
    return data.detail.map(e => `${(e.loc || []).filter(p => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  return JSON.stringify(data);
};

// A p-value as the tables show it (the CLI's report.p_text): three decimals, or <0.001.
ACC.pText = p => (typeof p !== "number" ? "–" : p < 0.001 ? "<0.001" : p.toFixed(3));

// The p-value behind a verdict, and what it was before adjustment (hover text).
ACC.pTitle = c => (typeof c.p_value !== "number" ? "no test with fewer than 2 seeds"
  : `p = ${ACC.pText(c.p_value)} before adjustment; ${c.adjustment} over ${c.family_size} tests`
    + ` (${c.family})`);

ACC.fmt = function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toFixed(digits === undefined ? (abs >= 100 ? 1 : 4) : digits);
};

// A count (of units), or the mean of counts: whole numbers without decimals, else one.
ACC.countText = function countText(value) {
  if (typeof value !== "number") return ACC.fmt(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
};

ACC.metricInfo = function metricInfo(key) {
  const base = key.split("[")[0];
  const layer = key.includes("[") ? key.slice(key.indexOf("[") + 1, -1) : null;
  const info = ACC.metrics[base] || {label: base, higher_is_better: null};
  return {label: layer ? `${info.label} [${layer}]` : info.label, better: info.higher_is_better};
};

ACC.conditionColor = function conditionColor(conditions, name) {
  const i = Math.max(0, conditions.indexOf(name));
  return ACC.palette[i % ACC.palette.length];
};

ACC.rgba = function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
};

ACC.when = function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
};

// A moment as a job list shows it: the local time of day (24 h), with the date before it
// when it is not today.
ACC.clockText = function clockText(seconds) {
  const d = new Date(seconds * 1000);
  const two = n => String(n).padStart(2, "0");
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  const day = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  return d.toDateString() === new Date().toDateString() ? time : `${day} ${time}`;
};

// A duration: "2.3 s" under 10 s, "42 s" under a minute, "2 min 05 s", "1 h 02 min".
ACC.durationText = function durationText(seconds) {
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  const whole = Math.floor(s);
  if (whole < 60) return `${whole} s`;
  const two = n => String(n).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${two(whole % 60)} s`;
  return `${Math.floor(whole / 3600)} h ${two(Math.floor(whole / 60) % 60)} min`;
};

// A job's times: when it started and how long it took (or has run so far: a running job's
// text is refreshed with the lists); a queued job says since when it waits.
ACC.jobTimeText = function jobTimeText(job, now) {
  if (!job.started_at) return `queued ${ACC.clockText(job.created_at)}`;
  const started = `started ${ACC.clockText(job.started_at)}`;
  if (!job.finished_at) return `${started} · running ${ACC.durationText(now - job.started_at)}`;
  return `${started} · took ${ACC.durationText(job.finished_at - job.started_at)}`;
};

// A number box with text in it reports an empty value: read it as an error, never as "use
// the default" (an empty Steps used to start a default 25,000-step run or sweep).
ACC.wholeNumber = function wholeNumber(id, label) {
  const input = document.getElementById(id);
  if (input.validity.badInput || !/^-?\d+$/.test(input.value.trim())) {
    throw new Error(`${label}: enter a whole number`);
  }
  return parseInt(input.value, 10);
};

// The base parameters the New-run and New-sweep forms share (ids `${prefix}-steps`, ...),
// read by one rule so both forms refuse the same input: steps and eval_every must be given,
// and seeds are the Seeds box unless "first N seeds" is filled in (the server checks ranges).
ACC.baseParams = function baseParams(prefix) {
  const box = name => document.getElementById(`${prefix}-${name}`);
  const params = {steps: ACC.wholeNumber(`${prefix}-steps`, "Steps per branch"),
                  eval_every: ACC.wholeNumber(`${prefix}-eval_every`, "Evaluate every (steps)")};
  if (box("num_seeds").value.trim() !== "" || box("num_seeds").validity.badInput) {
    params.num_seeds = ACC.wholeNumber(`${prefix}-num_seeds`, "First N seeds");
  } else {
    params.seeds = box("seeds").value.split(",").map(s => s.trim()).filter(Boolean)
      .map(s => /^-?\d+$/.test(s) ? parseInt(s, 10) : s);  // else the server says
  }
  return params;
};
