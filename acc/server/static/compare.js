// The comparison view: two or more runs side by side (of one recipe, or of recipes that share
// metric keys), or single conditions of runs (a sweep's cells: "RUN:gated[temperature=0.5]").
// Loss and metric curves overlaid (mean ± std per entry and condition; colour = entry, dash =
// condition), a table of the entries with the parameters that differ between them, and one
// final-metrics table with a column per entry × condition.
// Deep link: #compare=ID1,ID2:CONDITION (each entry URI-encoded). Runs that are still training
// are re-read every POLL_MS.
"use strict";

(function () {
  const el = ACC.el;
  const $ = id => document.getElementById(id);
  const POLL_MS = 3000;
  const DASHES = ["solid", "dash", "dot", "dashdot", "longdash"];
  const state = {ids: [], runs: [], poll: null};

  // An entry's key: a run id, or "RUN:CONDITION" for one condition of it (ids have no ":").
  const splitKey = key => {
    const at = key.indexOf(":");
    return at < 0 ? {id: key, condition: null} : {id: key.slice(0, at), condition: key.slice(at + 1)};
  };
  const label = run => (run.results.name || run.id) + (run.condition ? ` · ${run.condition}` : "");
  // The conditions an entry shows: its one condition, or all of its run's.
  const conditionsOf = run => run.condition ? [run.condition] : run.series.conditions;
  const colorOf = i => ACC.palette[i % ACC.palette.length];

  ACC.closeCompare = function closeCompare() {
    if (state.poll) { clearInterval(state.poll); ACC.setLive("idle"); }
    state.poll = null;
    state.ids = [];
    $("compare-view").hidden = true;
  };

  ACC.openCompare = async function openCompare(ids) {
    ids = [...new Set(ids)];
    ACC.closeRun();
    ACC.closeSweep();
    ACC.closeCompare();
    state.ids = ids;
    state.runs = [];
    history.replaceState(null, "", `#compare=${ids.map(encodeURIComponent).join(",")}`);
    ACC.comparedKeys = ids;
    $("empty").hidden = true;
    $("compare-view").hidden = false;
    $("chart-controls").hidden = false;
    $("compare-count").textContent = `${ids.length} entries`;
    await load(ids);
    if (state.ids !== ids || !state.runs.length) return;
    const open = state.runs.some(r => ACC.openStatuses.includes(r.results.status));
    if (open) {
      state.poll = setInterval(() => load(ids).catch(() => {}), POLL_MS);
      ACC.setLive("polling");
    }
  };

  // Results and curves of every entry's run (each run read once); an entry that cannot be
  // read, or names a condition its run does not have, is named, the rest shown. Later reads
  // (polling) fetch only the runs that are still open: finished runs do not change.
  async function load(ids) {
    const known = new Map(state.runs.map(r => [r.id, r]));
    const finished = id => known.has(id) && !ACC.openStatuses.includes(known.get(id).results.status);
    const reads = new Map();
    const read = id => {
      if (!reads.has(id)) {
        reads.set(id, finished(id) ? Promise.resolve(known.get(id))
          : Promise.all([ACC.api(`/api/runs/${encodeURIComponent(id)}`),
                         ACC.api(`/api/runs/${encodeURIComponent(id)}/series`)])
            .then(([results, series]) => ({results, series})));
      }
      return reads.get(id);
    };
    const entry = async key => {
      const {id, condition} = splitKey(key);
      const {results, series} = await read(id);
      if (condition !== null && !(condition in results.conditions)) {
        throw new Error(`no condition "${condition}" in this run (it has ${Object.keys(results.conditions).join(", ")})`);
      }
      return {key, id, condition, results, series};
    };
    const settled = await Promise.allSettled(ids.map(entry));
    if (state.ids !== ids) return;
    state.runs = settled.filter(s => s.status === "fulfilled").map(s => s.value);
    const missing = settled.map((s, i) => s.status === "rejected" ? `${ids[i]}: ${s.reason.message}` : null)
      .filter(Boolean);
    if (!state.runs.length) {  // a deep link to nothing: say so, without an empty layout
      ACC.showEmpty(`Nothing to compare: ${missing.join("; ") || "no runs named"}.`);
      return;
    }
    const n = state.runs.length;
    const cells = state.runs.some(r => r.condition);
    $("compare-count").textContent = `${n} ${cells ? "entr" : "run"}${n === 1 ? (cells ? "y" : "") : (cells ? "ies" : "s")}`;
    $("compare-error").textContent = missing.length ? `Not shown: ${missing.join("; ")}` : "";
    if (n < 2) $("compare-error").textContent += " Pick two or more runs (or cells) to compare.";
    render();
    if (state.poll && !state.runs.some(r => ACC.openStatuses.includes(r.results.status))) {
      clearInterval(state.poll);
      state.poll = null;
      ACC.setLive("idle");
    }
  }

  ACC.redrawCompare = () => { if (state.ids.length && !$("compare-view").hidden) render(); };

  function render() {
    renderRunTable();
    renderLoss();
    renderMetrics();
    renderTable();
  }

  function renderRunTable() {
    const differs = differingParams(state.runs);
    const head = el("tr", {}, ["", "run", "recipe", "status", "steps", "seeds", "differs", "note", ""]
      .map(h => el("th", {}, h)));
    const rows = state.runs.map((run, i) => el("tr", {"data-run": run.id, "data-key": run.key},
      el("td", {}, el("span", {class: "swatch", style: `background:${colorOf(i)}`})),
      el("td", {}, el("button", {type: "button", class: "link", onclick: () => ACC.openRun(run.id)}, label(run))),
      el("td", {}, run.results.recipe),
      el("td", {}, el("span", {class: `badge ${run.results.status}`}, run.results.status)),
      el("td", {}, run.results.config.steps), el("td", {}, run.results.config.seeds.join(", ")),
      el("td", {class: "differs"}, differs.map(k => `${k}=${paramsOf(run)[k] ?? "–"}`).join(" · ")),
      el("td", {class: "muted"}, run.results.note || ""),
      el("td", {}, el("button", {type: "button", class: "small", title: "leave this one out",
                                 onclick: () => ACC.openCompare(state.ids.filter(k => k !== run.key))}, "remove"))));
    $("compare-runs").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }

  // An entry's parameters as text: its run's configuration, with a cell's own values (from
  // its condition's label, "gated[temperature=0.5,gate_strength=1]") over them. Steps and
  // seeds have their own columns; the list of a sweep's cells is no parameter of one entry.
  const OWN_COLUMNS = ["steps", "seeds", "cells"];
  function paramsOf(run) {
    const text = v => (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));
    const params = {};
    for (const [k, v] of Object.entries(run.results.config || {})) {
      if (!OWN_COLUMNS.includes(k)) params[k] = text(v);
    }
    const cell = /\[(.*)\]$/.exec(run.condition || "");
    for (const pair of cell ? cell[1].split(",") : []) {
      const eq = pair.indexOf("=");
      if (eq > 0) params[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    return params;
  }

  // The parameters whose values are not the same in every entry (1 and 1.0 are the same).
  function differingParams(runs) {
    const all = runs.map(paramsOf);
    const same = (a, b) => a === b || (a !== undefined && b !== undefined && a.trim() !== ""
                                       && b.trim() !== "" && Number(a) === Number(b));
    const keys = [...new Set(all.flatMap(p => Object.keys(p)))];
    return keys.filter(k => all.some(p => !same(p[k], all[0][k])));
  }

  // Each run's conditions as groups of curves: one {step, value, seed, x} per branch (x: the
  // chosen axis, the step or the time the point was recorded).
  function groups(curveOf) {
    const withX = (curve, b) => Object.assign({}, curve, {seed: b.seed, x: ACC.xValues(curve, b)});
    return state.runs.flatMap((run, i) => conditionsOf(run).map((condition, j) => ({
      name: run.condition ? label(run) : `${label(run)} · ${condition}`, color: colorOf(i),
      dash: DASHES[j % DASHES.length],
      curves: run.series.branches.filter(b => b.condition === condition)
        .map(b => withX(curveOf(b), b)).filter(c => c.step.length),
    })));
  }

  const maxSteps = () => Math.max(0, ...state.runs.map(r => r.series.steps || 0));
  const uirevision = () => state.ids.join(",");

  function renderLoss() {
    const container = $("compare-loss");
    const tasks = [...new Set(state.runs.flatMap(r => r.series.branches.flatMap(b => Object.keys(b.losses))))];
    const options = {seeds: ACC.chartOptions.seeds, smoothing: ACC.chartOptions.smoothing};
    const traces = tasks.flatMap(task => groups(b => b.losses[task] || {step: [], value: []})
      .flatMap(g => ACC.groupTraces(tasks.length > 1 ? `${g.name} · ${task}` : g.name, g.color, g.curves,
                                    Object.assign({dash: g.dash}, options))));
    if (!traces.length) return ACC.showEmptyCharts(container, "No training losses yet.");
    const div = ACC.chartBox(container, "loss", "training loss", ACC.redrawCompare);
    ACC.drawChart(div, traces, uirevision(), maxSteps(), ACC.chartOptions.log.loss);
  }

  function renderMetrics() {
    const container = $("compare-metrics");
    const keys = ACC.metricKeys(state.runs.map(r => r.series));
    if (!keys.length) return ACC.showEmptyCharts(container, "No periodic evaluations in these runs.");
    for (const key of keys) {
      const traces = groups(b => ({step: b.evals.step, time: b.evals.time, value: b.evals.metrics[key] || []}))
        .flatMap(g => ACC.groupTraces(g.name, g.color, g.curves, {dash: g.dash, seeds: ACC.chartOptions.seeds}));
      const div = ACC.chartBox(container, key, ACC.metricTitle(key), ACC.redrawCompare);
      ACC.drawChart(div, traces, uirevision(), maxSteps(), ACC.chartOptions.log[key]);
    }
  }

  // One row per metric any of the runs has, a column per run × condition.
  function renderTable() {
    const columns = state.runs.flatMap((run, i) => (run.condition ? [run.condition] : Object.keys(run.results.conditions))
      .map(condition => ({run, i, condition, c: run.results.conditions[condition]})));
    const head = el("tr", {}, el("th", {}, "metric"), columns.map(col => el("th", {"data-run": col.run.id},
      el("span", {class: "swatch", style: `background:${colorOf(col.i)}`}),
      col.run.condition ? label(col.run) : `${label(col.run)} · ${col.condition}`,
      el("span", {class: "muted"}, ` (n=${col.c.runs.filter(r => r.status === "completed").length})`))));
    const rows = ACC.finalMetricKeys(columns.map(col => col.c)).map(key => el("tr", {"data-metric": key},
      el("th", {title: ACC.metricInfo(key).label}, key),
      columns.map(col => el("td", {title: ACC.meanStdTitle(col.c, key)}, ACC.meanStdText(col.c, key)))));
    $("compare-table").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }
})();
