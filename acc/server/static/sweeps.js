// Sweeps: the form that starts one, the list, and the sweep view. Per setting a heatmap of
// the gated − standard difference over the gating axes (first axis down, second across), a
// parallel-coordinates view of all cells, the gate entropy per cell and the settings' runs.
// A sweep that is still training is polled until it ends; charts are redrawn with
// Plotly.react and a fixed uirevision, so a refresh keeps the researcher's zoom.
"use strict";

(function () {
  const el = ACC.el;
  const $ = id => document.getElementById(id);
  const POLL_MS = 3000;
  // The parallel coordinates' height; its box (style.css) is as tall, so nothing it draws
  // reaches into the next section.
  const PARCOORDS_HEIGHT = 380;
  const CONFIG = {displaylogo: false, responsive: true,
                  modeBarButtonsToRemove: ["select2d", "lasso2d"]};
  // Diverging, white at 0; blue where a − b < 0 (flipped when the hypothesis says "higher").
  const BLUE_LOW = [[0, "#2166ac"], [0.25, "#67a9cf"], [0.5, "#f7f7f7"], [0.75, "#ef8a62"],
                    [1, "#b2182b"]];
  const BLUE_HIGH = BLUE_LOW.map(([p, c]) => [1 - p, c]).reverse();
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
  const state = {recipes: [], sweepId: null, results: null, key: null, poll: null,
                 metric: null, metricsKey: null, cellsAt: new WeakMap()};

  const isOpen = status => (ACC.openStatuses || ["queued", "running"]).includes(status);
  const completed = runs => runs.filter(r => r.status === "completed").length;
  const escapeText = s => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const paramText = params => Object.entries(params).map(([k, v]) => `${k}=${v}`).join(", ");

  // --- the form ------------------------------------------------------------------------------

  function showSweepRecipe() {
    const recipe = state.recipes.find(r => r.name === $("s-recipe").value);
    if (!recipe) return;
    const defaults = Object.fromEntries(recipe.params.map(p => [p.name, p.default]));
    $("s-steps").value = defaults.steps;
    $("s-seeds").value = (defaults.seeds || []).join(",");
    $("s-eval_every").value = defaults.eval_every;
    const names = gating => recipe.params.filter(p => p.gating === gating && p.name !== "seeds")
      .map(p => p.name).join(", ") || "none";
    $("s-gating").textContent = `Gating parameters (their values make the cells of a setting): `
      + `${names(true)}. The others make settings: ${names(false)}.`;
  }

  function parseValue(raw) {
    return NUMBER.test(raw) ? Number(raw) : raw;
  }

  function parseAxes(text, what) {
    const axes = {};
    text.split("\n").forEach((line, i) => {
      line = line.trim();
      if (!line || line.startsWith("#")) return;
      const eq = line.indexOf("=");
      const name = eq < 0 ? "" : line.slice(0, eq).trim();
      const values = line.slice(eq + 1).split(",").map(v => v.trim()).filter(v => v !== "");
      if (!name || !values.length) {
        throw new Error(`${what} axes, line ${i + 1}: write name=v1,v2 (not "${line}")`);
      }
      if (name in axes) throw new Error(`${what} axes: ${name} is given twice`);
      axes[name] = values.map(parseValue);
    });
    return axes;
  }

  function sweepBody() {
    const params = ACC.baseParams("s");
    return {recipe: $("s-recipe").value, params, grid: parseAxes($("s-grid").value, "grid"),
            zip: parseAxes($("s-zip").value, "zip"), yes: $("s-yes").checked};
  }

  async function submitSweep(event) {
    event.preventDefault();
    $("sweep-form-error").textContent = "";
    $("sweep-btn").disabled = true;
    try {
      const job = await ACC.api("/api/sweeps", {method: "POST", body: sweepBody()});
      await openSweep(job.sweep_id);
      ACC.refreshLists().catch(() => {});
    } catch (err) {
      $("sweep-form-error").textContent = err.message;
    } finally {
      $("sweep-btn").disabled = false;
    }
  }

  // --- the list ------------------------------------------------------------------------------

  ACC.currentSweep = () => state.sweepId;

  ACC.renderSweepList = function renderSweepList(list, sweeps) {
    if (!sweeps.length) {
      list.replaceChildren(el("li", {class: "muted"}, "no sweeps yet"));
      return;
    }
    list.replaceChildren(...sweeps.map(s => el("li", {class: s.id === state.sweepId ? "selected" : ""},
      el("button", {type: "button", class: "link", title: ACC.when(s.created_at),
                    onclick: () => openSweep(s.id)}, s.id),
      " ", el("span", {class: `badge ${s.status}`}, s.status))));
  };

  // --- opening, polling, resuming ------------------------------------------------------------

  function stopPolling() {
    if (state.poll) { clearInterval(state.poll); ACC.setLive("idle"); }
    state.poll = null;
  }

  // Hide the sweep view (a run is being shown instead).
  ACC.closeSweep = function closeSweep() {
    stopPolling();
    state.sweepId = null;
    $("sweep-view").hidden = true;
  };

  async function openSweep(sweepId) {
    ACC.closeRun();
    ACC.closeCompare();
    $("chart-controls").hidden = true;
    stopPolling();
    Object.assign(state, {sweepId, results: null, key: null});
    $("sweep-settings").replaceChildren();  // another sweep: none of the last one's ticks
    history.replaceState(null, "", `#sweep=${encodeURIComponent(sweepId)}`);
    $("empty").hidden = true;
    $("sweep-view").hidden = false;
    $("sweep-title").textContent = sweepId;
    $("sweep-error").textContent = "";
    let results;
    try {
      results = await ACC.api(`/api/sweeps/${encodeURIComponent(sweepId)}`);
    } catch (err) {  // a deep link to nothing: say so, without the sweep view's empty layout
      if (state.sweepId === sweepId) ACC.showEmpty(`No sweep "${sweepId}" to show: ${err.message}`);
      return;
    }
    if (state.sweepId !== sweepId) return;
    show(results);
    if (isOpen(results.status)) {
      state.poll = setInterval(() => pollSweep().catch(() => {}), POLL_MS);
      ACC.setLive("polling");
    }
  }
  ACC.openSweep = openSweep;

  async function pollSweep() {
    const sweepId = state.sweepId;
    const results = await ACC.api(`/api/sweeps/${encodeURIComponent(sweepId)}`);
    if (state.sweepId !== sweepId) return;
    show(results);
    if (!isOpen(results.status)) {
      stopPolling();
      ACC.refreshLists().catch(() => {});
    }
  }

  async function resumeSweep() {
    const sweepId = state.sweepId;
    $("sweep-error").textContent = "";
    try {
      await ACC.api(`/api/sweeps/${encodeURIComponent(sweepId)}/resume`, {method: "POST"});
      await openSweep(sweepId);
      ACC.refreshLists().catch(() => {});
    } catch (err) {
      $("sweep-error").textContent = err.message;
    }
  }

  // Delete the open (finished) sweep with its runs after the researcher confirms, as a run's
  // Delete does; the server refuses (409) while the sweep or one of its runs is in use.
  async function deleteSweep() {
    const sweepId = state.sweepId;
    if (!confirm(`Delete sweep ${sweepId}, its runs, branches, curves and checkpoints? This cannot be undone.`)) return;
    $("sweep-error").textContent = "";
    try {
      const out = await ACC.api(`/api/sweeps/${encodeURIComponent(sweepId)}`, {method: "DELETE"});
      ACC.showEmpty(`Deleted sweep ${sweepId} (${out.runs} runs, ${out.branches} branches, `
                    + `${out.checkpoints} checkpoints).`);
      history.replaceState(null, "", "#");
      await ACC.refreshLists();
    } catch (err) {
      $("sweep-error").textContent = err.message;
    }
  }

  // --- the view ------------------------------------------------------------------------------

  function show(results) {
    const key = JSON.stringify(results);
    if (key === state.key) return;  // unchanged: leave the charts alone
    Object.assign(state, {key, results});
    renderHeader(results);
    renderMetricSelect(results);
    renderCharts();
    renderEntropy($("sweep-entropy"), results);
    renderSettings($("sweep-settings"), results);
  }

  function axesText(axes) {
    const grid = Object.entries(axes.grid || {}).map(([k, vs]) => `${k} ∈ {${vs.join(", ")}}`);
    const zip = Object.keys(axes.zip || {});
    const tuple = i => `(${zip.map(k => axes.zip[k][i]).join(", ")})`;
    const zipped = zip.length
      ? [`(${zip.join(", ")}) ∈ {${axes.zip[zip[0]].map((_, i) => tuple(i)).join(", ")}}`] : [];
    return [...grid, ...zipped].join(" × ") || "no axes";
  }

  function progress(results) {
    const n = results.seeds.length;
    const arms = [...results.settings.map(s => s.standard.runs), ...results.cells.map(c => c.runs)];
    return {done: arms.reduce((sum, runs) => sum + completed(runs), 0), total: n * arms.length};
  }

  const armsOf = cells => distinct(cells.map(c => c.condition));

  // "4 cell(s)", or "4 cell(s) × 2 arms (gated, shuffled)" with a control at every cell.
  function cellsText(results) {
    const arms = armsOf(results.cells);
    const cells = results.cells.length / Math.max(1, results.settings.length) / Math.max(1, arms.length);
    return `${results.settings.length} setting(s) × ${cells} cell(s)`
      + (arms.length > 1 ? ` × ${arms.length} arms (${arms.join(", ")})` : "");
  }

  function renderHeader(results) {
    $("sweep-title").textContent = results.sweep_id;
    $("sweep-status").textContent = results.status;
    $("sweep-status").className = `badge ${results.status}`;
    const base = results.base_params || {};
    $("sweep-config").textContent = `${results.recipe} · ${axesText(results.axes)} · seeds `
      + `${results.seeds.join(", ")} · steps ${base.steps} · eval every ${base.eval_every} · `
      + cellsText(results);
    const {done, total} = progress(results);
    $("sweep-progress").textContent = `${done} / ${total} branches completed`
      + (isOpen(results.status) ? " · refreshing every 3 s" : "");
    $("sweep-error").textContent = results.error || "";
    $("sweep-resume-btn").hidden = isOpen(results.status) || done >= total;
    $("sweep-delete-btn").hidden = isOpen(results.status);  // the server refuses an open one
  }

  // One row per cell (or per setting, for a sweep without gating axes): its parameters, its
  // comparisons, and what to open when it is clicked.
  function rowsOf(results) {
    const settings = new Map(results.settings.map(s => [s.id, s]));
    if (!results.cells.length) {
      return results.settings.map(s => ({setting: s, cell: null, params: s.params,
                                         comparisons: s.comparisons || [], run_id: s.run_id}));
    }
    return results.cells.map(cell => {
      const setting = settings.get(cell.setting) || {id: cell.setting, params: {}, standard: {mean: {}, std: {}}};
      return {setting, cell, params: Object.assign({}, setting.params, cell.params),
              comparisons: cell.comparisons || [], run_id: cell.run_id};
    });
  }

  // The arm a comparison's b names, without its cell label: "standard", or a control such as
  // "shuffled" (compared at the same cell). One heatmap per metric and pair, as in the CLI.
  const sideOf = name => String(name).split("[")[0];
  const comparisonOf = (row, metric, b) => row.comparisons.find(
    c => c.metric === metric && (b === undefined || sideOf(c.b) === b)) || null;

  // The pairs (b sides) a metric is compared over, gated − standard first.
  function pairsOf(rows, metric) {
    const sides = [];
    for (const row of rows) {
      for (const c of row.comparisons) {
        if (c.metric === metric && !sides.includes(sideOf(c.b))) sides.push(sideOf(c.b));
      }
    }
    return sides.sort((x, y) => (x !== "standard") - (y !== "standard"));
  }

  // The rows of one heatmap: the cells whose arm is compared with b (a control arm is not).
  const pairRows = (rows, metric, b) => rows.filter(r => comparisonOf(r, metric, b));

  function renderMetricSelect(results) {
    const found = new Map();
    for (const row of rowsOf(results)) {
      for (const c of row.comparisons) if (!found.has(c.metric)) found.set(c.metric, c.direction);
    }
    const metrics = [...found.keys()];
    if (!metrics.includes(state.metric)) state.metric = metrics[0] || null;
    const key = JSON.stringify([...found]);
    if (key === state.metricsKey) return;  // leave an open dropdown alone
    state.metricsKey = key;
    $("sweep-metric").replaceChildren(...(metrics.length ? metrics.map(m => el("option",
      {value: m, selected: m === state.metric},
      `${ACC.metricInfo(m).label} (${m}; hypothesis: ${found.get(m)})`))
      : [el("option", {value: ""}, "no hypotheses")]));
  }

  function renderCharts() {
    const results = state.results;
    if (!results) return;
    renderHeatmaps($("sweep-heatmaps"), results, state.metric);
    renderParcoords($("sweep-parcoords"), results, state.metric);
  }

  function distinct(values) {
    const out = [];
    for (const v of values) if (!out.some(x => x === v)) out.push(v);
    return out.every(v => typeof v === "number") ? out.sort((a, b) => a - b) : out;
  }

  function gatingAxes(cells) {
    const names = [];
    for (const cell of cells) for (const k of Object.keys(cell.params)) if (!names.includes(k)) names.push(k);
    return names;
  }

  function colorscaleFor(rows, metric, b) {
    const c = rows.map(r => comparisonOf(r, metric, b)).find(Boolean);
    return c && c.direction === "higher" ? BLUE_HIGH : BLUE_LOW;
  }

  function diffRange(rows, metric, b) {
    const diffs = rows.map(r => (comparisonOf(r, metric, b) || {}).mean_diff).filter(v => typeof v === "number");
    return Math.max(...diffs.map(Math.abs), 0) || 1;
  }

  // The adjusted verdict (one Benjamini-Hochberg family per heatmap: acc.decisions).
  const MARKS = {supported: "✓", contradicted: "✗", equivalent: "="};
  const mark = c => (c && MARKS[c.verdict]) || "";

  const meanStd = ACC.meanStdText;
  const sameParams = (x, y) => JSON.stringify(x.params) === JSON.stringify(y.params);

  // What b is at this cell: the setting's standard arm, or the control arm of the same cell.
  function otherArm(row, b, cells) {
    if (b === "standard") return row.setting.standard;
    return cells.find(c => c.setting === row.cell.setting && c.condition === b && sameParams(c, row.cell))
      || {runs: [], mean: {}, std: {}};
  }

  function hoverText(row, metric, b, cells) {
    const c = comparisonOf(row, metric, b);
    const other = otherArm(row, b, cells);
    const lines = [paramText(row.cell.params),
                   `${row.cell.condition}: ${meanStd(row.cell, metric)} (n=${completed(row.cell.runs)})`,
                   `${b}: ${meanStd(other, metric)} (n=${completed(other.runs)})`];
    if (c) {
      const interval = c.ci95 ? `[${ACC.fmt(c.ci95[0])}, ${ACC.fmt(c.ci95[1])}]` : "– (needs ≥ 2 seeds)";
      lines.push(`${c.a} − ${sideOf(c.b)}: ${ACC.fmt(c.mean_diff)} · 95% ${interval} · n=${c.n}`,
                 `p adjusted ${ACC.pText(c.p_adjusted)} (${c.adjustment} over ${c.family_size}) · δ ${ACC.fmt(c.delta)}`,
                 // the cell is named on the first line: not again in the hypothesis
                 `${c.hypothesis.replace(/\[[^\]]*\]/g, "")}: ${c.verdict}${mark(c) ? ` ${mark(c)}` : ""}`,
                 ...(c.verdict_note ? [c.verdict_note] : []));
    }
    return lines.map(escapeText).join("<br>");
  }

  // Facets: one per setting, and per value of any gating axis beyond the second.
  function facetsOf(rows, axes) {
    const facets = new Map();
    for (const row of rows) {
      const extra = axes.slice(2).map(k => `${k}=${row.cell.params[k]}`);
      const key = [row.setting.id, ...extra].join(" · ");
      if (!facets.has(key)) facets.set(key, {key, setting: row.setting, extra, rows: []});
      facets.get(key).rows.push(row);
    }
    return [...facets.values()];
  }

  function heatmapTrace(facet, axes, pair, scale, range, last, cells) {
    const [yName, xName] = axes;
    const {metric, b} = pair;
    const ys = distinct(facet.rows.map(r => r.cell.params[yName]));
    const xs = xName ? distinct(facet.rows.map(r => r.cell.params[xName])) : [null];
    const grid = fill => ys.map(() => xs.map(() => fill));
    const z = grid(null), text = grid(""), hover = grid(""), at = grid(null);
    for (const row of facet.rows) {
      const i = ys.indexOf(row.cell.params[yName]);
      const j = xName ? xs.indexOf(row.cell.params[xName]) : 0;
      const c = comparisonOf(row, metric, b);
      at[i][j] = row.cell;
      z[i][j] = c && typeof c.mean_diff === "number" ? c.mean_diff : null;
      text[i][j] = mark(c);
      hover[i][j] = hoverText(row, metric, b, cells);
    }
    const trace = {
      type: "heatmap", x: xs.map(x => xName ? String(x) : facet.rows[0].cell.condition),
      y: ys.map(String), z, text, texttemplate: "%{text}", textfont: {size: 18},
      hovertext: hover, hoverinfo: "text", hoverongaps: false, xgap: 2, ygap: 2,
      hoverlabel: {align: "left", font: {size: 12}},
      colorscale: scale, zmin: -range, zmax: range, zmid: 0, showscale: last,
      colorbar: {title: {text: `a − ${b}`}, thickness: 12},
    };
    return {trace, cells: at};
  }

  // The title is the box's own HTML line above the plot, where the toolbar cannot cover it.
  function heatmapTitle(facet, pair, several) {
    return [facet.setting.id === "base" && !facet.extra.length ? "" : facet.key,
            ACC.metricInfo(pair.metric).label, several ? `gated − ${pair.b}` : ""]
      .filter(Boolean).join(" · ");
  }

  function heatmapLayout(facet, axes, pair, trace) {
    return {
      uirevision: `${state.sweepId}|${facet.key}|${pair.b}`,
      height: Math.max(360, 70 * trace.y.length + 130),
      margin: {l: 80, r: 10, t: 36, b: 56}, paper_bgcolor: "#fff", plot_bgcolor: "#fafafa",
      // every category shows, even before any cell has data
      xaxis: {title: {text: axes[1] || ""}, type: "category", categoryorder: "array",
              categoryarray: trace.x, range: [-0.5, trace.x.length - 0.5]},
      yaxis: {title: {text: axes[0]}, type: "category", categoryorder: "array",
              categoryarray: trace.y, range: [-0.5, trace.y.length - 0.5]},
    };
  }

  function clearMessage(div) {
    div.querySelector(":scope > p.muted")?.remove();
  }

  function showMessage(div, text) {
    Plotly.purge(div);
    div.replaceChildren(el("p", {class: "muted"}, text));
  }

  function facetBox(container, key, facet, b) {
    let box = container.querySelector(`:scope > .facet[data-facet="${CSS.escape(key)}"]`);
    if (!box) {
      box = el("div", {class: "chart facet", "data-facet": key, "data-setting": facet.setting.id, "data-pair": b},
               el("div", {class: "chart-title"}), el("div", {class: "plot"}));
      container.append(box);
    }
    return box;
  }

  function renderHeatmaps(container, results, metric) {
    const rows = rowsOf(results);
    if (!results.cells.length || !metric) {
      container.querySelectorAll(".facet .plot").forEach(div => Plotly.purge(div));
      container.replaceChildren(...(results.cells.length
        ? [el("p", {class: "muted"}, "The cells have no hypotheses to compare.")]
        : settingsHypotheses(results)));
      return;
    }
    container.querySelectorAll(":scope > :not(.facet)").forEach(node => node.remove());
    const axes = gatingAxes(results.cells);
    const pairs = pairsOf(rows, metric).map(b => ({metric, b}));
    const drawn = pairs.flatMap(pair => {
      const tested = pairRows(rows, metric, pair.b);
      const facets = facetsOf(tested, axes);
      const scale = colorscaleFor(tested, metric, pair.b), range = diffRange(tested, metric, pair.b);
      return facets.map((facet, n) => ({key: `${facet.key}|${pair.b}`, facet, pair, scale, range,
                                        last: n === facets.length - 1}));
    });
    const keep = new Set(drawn.map(d => d.key));
    container.querySelectorAll(":scope > .facet").forEach(box => {
      if (!keep.has(box.dataset.facet)) { Plotly.purge(box.querySelector(".plot")); box.remove(); }
    });
    for (const d of drawn) {
      const box = facetBox(container, d.key, d.facet, d.pair.b);
      container.append(box);  // in the order drawn
      const div = box.querySelector(".plot");
      const {trace, cells} = heatmapTrace(d.facet, axes, d.pair, d.scale, d.range, d.last, results.cells);
      const fresh = !state.cellsAt.has(div);
      state.cellsAt.set(div, {cells, x: trace.x, y: trace.y});
      box.querySelector(".chart-title").textContent = heatmapTitle(d.facet, d.pair, pairs.length > 1);
      Plotly.react(div, [trace], heatmapLayout(d.facet, axes, d.pair, trace), CONFIG);
      box.dataset.metric = metric;
      if (fresh) div.on("plotly_click", event => openCell(div, event));
    }
  }

  // A click on a heatmap cell opens the run that trained it (the setting's run).
  function openCell(div, event) {
    const point = event && event.points && event.points[0];
    const at = state.cellsAt.get(div);
    if (!point || !at) return;
    const i = at.y.indexOf(String(point.y)), j = at.x.indexOf(String(point.x));
    const cell = i >= 0 && j >= 0 ? at.cells[i][j] : null;
    if (cell && cell.run_id) ACC.openRun(cell.run_id).catch(() => {});
  }
  ACC.openSweepCell = openCell;

  function settingsHypotheses(results) {
    const out = [el("p", {class: "muted"}, results.settings.length
      ? "No gating axes: each setting compares the recipe's own conditions."
      : "No settings yet.")];
    for (const s of results.settings) {
      const table = el("table", {class: "data", "data-setting": s.id});
      ACC.renderHypotheses(table, {comparisons: s.comparisons || []});
      out.push(el("h4", {}, s.id), table);
    }
    return out;
  }

  function dimension(label, values) {
    if (values.every(v => typeof v === "number")) {
      const lo = Math.min(...values), hi = Math.max(...values);
      return {label, values, range: lo === hi ? [lo - 1, hi + 1] : [lo, hi]};
    }
    const names = distinct(values.map(String));
    const indices = names.map((_, i) => i);
    return {label, values: values.map(v => names.indexOf(String(v))), tickvals: indices, ticktext: names,
            range: names.length > 1 ? [0, names.length - 1] : [-1, 1]};
  }

  // All cells of the first pair (gated − standard), a line each; a control's difference
  // (gated − shuffled) is one more axis where every line has it.
  function renderParcoords(div, results, metric) {
    const all = rowsOf(results);
    const [first, ...others] = pairsOf(all, metric);
    const rows = all.filter(r => typeof (comparisonOf(r, metric, first) || {}).mean_diff === "number");
    if (!rows.length) {
      showMessage(div, metric ? "No finished cells yet." : "No hypotheses to compare.");
      return;
    }
    clearMessage(div);
    const names = [];
    for (const r of rows) for (const k of Object.keys(r.params)) if (!names.includes(k)) names.push(k);
    const base = results.base_params || {};
    const diffsOf = b => rows.map(r => (comparisonOf(r, metric, b) || {}).mean_diff);
    const diffs = diffsOf(first);
    const range = Math.max(...diffs.map(Math.abs)) || 1;
    const dimensions = names.map(k => dimension(k, rows.map(r => k in r.params ? r.params[k] : base[k])));
    dimensions.push({label: `${metric}: a − ${first}`, values: diffs, range: [-range, range]});
    for (const b of others) {
      const values = diffsOf(b);
      if (!values.every(v => typeof v === "number")) continue;
      const span = Math.max(...values.map(Math.abs)) || 1;
      dimensions.push({label: `${metric}: a − ${b}`, values, range: [-span, span]});
    }
    const trace = {type: "parcoords", dimensions, labelangle: 0, labelside: "top",
                   line: {color: diffs, colorscale: colorscaleFor(rows, metric, first), cmin: -range, cmax: range,
                          showscale: true, colorbar: {title: {text: `a − ${first}`}, thickness: 12}}};
    Plotly.react(div, [trace], {
      uirevision: state.sweepId, height: PARCOORDS_HEIGHT, margin: {l: 70, r: 120, t: 60, b: 40},
      paper_bgcolor: "#fff",
    }, CONFIG);
    div.dataset.metric = metric;
  }

  function renderEntropy(container, results) {
    const keys = [...new Set(results.cells.flatMap(c => Object.keys(c.mean || {})))]
      .filter(k => k.startsWith("gate_entropy")).sort();
    $("sweep-entropy-section").hidden = !keys.length;
    if (!keys.length) { container.replaceChildren(); return; }
    const axes = gatingAxes(results.cells);
    const arms = armsOf(results.cells);  // gated, and a control's arm (shuffled) if any
    container.replaceChildren(...results.settings.map(s => {
      const cells = results.cells.filter(c => c.setting === s.id);
      const head = el("tr", {}, axes.map(a => el("th", {}, a)), arms.length > 1 ? el("th", {}, "arm") : null,
                      keys.map(k => el("th", {}, k)));
      const body = cells.map(c => el("tr", {},
        axes.map(a => el("td", {}, c.params[a] === undefined ? "–" : c.params[a])),
        arms.length > 1 ? el("td", {}, c.condition) : null,
        keys.map(k => entropyCell(c, k))));
      return el("div", {class: "entropy"}, el("h4", {}, s.id),
                el("table", {class: "data", "data-setting": s.id}, el("thead", {}, head), el("tbody", {}, body)));
    }));
  }

  function entropyCell(cell, key) {
    const v = (cell.mean || {})[key];
    if (typeof v !== "number") return el("td", {}, "–");
    const alpha = Math.max(0, Math.min(1, 1 - v)) * 0.45;
    return el("td", {style: `background:${ACC.rgba("#d62728", alpha.toFixed(3))}`,
                     title: v < 0.1 ? "near 0: the mask has collapsed onto few units" : ""},
              meanStd(cell, key));
  }

  // The settings' runs, each with its standard arm and its cells; what is ticked opens side by
  // side in the comparison view: a ticked setting is its whole run, a ticked arm or cell that
  // one condition of it (compare.js: "RUN:gated[temperature=0.5]"), curves included.
  function renderSettings(table, results) {
    const head = el("tr", {}, ["", "setting", "run", "status", "standard (completed seeds)", "cells (completed seeds)"]
      .map(h => el("th", {}, h)));
    const seeds = results.seeds.length;
    // a refresh (polling) keeps what the researcher ticked
    const ticked = new Map([...table.querySelectorAll("input.pick")].map(i => [i.dataset.run, i.checked]));
    const pick = (key, label, checked) => el("td", {}, el("input", {type: "checkbox", class: "pick", "data-run": key,
      checked: ticked.has(key) ? ticked.get(key) : checked, "aria-label": `compare ${label}`}));
    const rows = results.settings.flatMap(s => {
      const cells = results.cells.filter(c => c.setting === s.id);
      const row = el("tr", {"data-setting": s.id},
        pick(s.run_id, s.id, true),
        el("th", {}, s.id),
        el("td", {}, el("button", {type: "button", class: "link",
                                   onclick: () => ACC.openRun(s.run_id).catch(() => {})}, s.run_id)),
        el("td", {}, el("span", {class: `badge ${s.status}`}, s.status)),
        el("td", {}, `${completed(s.standard.runs)} / ${seeds}`),
        el("td", {}, cells.length
          ? `${cells.reduce((sum, c) => sum + completed(c.runs), 0)} / ${cells.length * seeds}`
          : "–"));
      if (!cells.length) return [row];
      const arm = (key, text, runs) => el("tr", {class: "cell-row", "data-key": key},
        pick(key, `${s.id} ${text}`, false),
        el("td", {colspan: 3, class: "muted"}, `↳ ${text}`),
        el("td", {colspan: 2}, `${completed(runs)} / ${seeds}`));
      return [row, arm(`${s.run_id}:standard`, "standard", s.standard.runs),
              ...cells.map(c => arm(`${c.run_id}:${c.name}`, `${c.condition} · ${paramText(c.params)}`, c.runs))];
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }

  function compareSettings() {
    const keys = [...$("sweep-settings").querySelectorAll("input.pick:checked")].map(i => i.dataset.run);
    ACC.openCompare(keys);
  }

  // --- start (called by app.js once the recipes are known) ----------------------------------

  ACC.initSweeps = function initSweeps(recipes) {
    state.recipes = recipes;
    $("s-recipe").replaceChildren(...recipes.map(r => el("option", {value: r.name}, r.name)));
    $("s-recipe").addEventListener("change", showSweepRecipe);
    $("sweep-form").addEventListener("submit", submitSweep);
    $("sweep-resume-btn").addEventListener("click", resumeSweep);
    $("sweep-delete-btn").addEventListener("click", deleteSweep);
    $("sweep-compare-btn").addEventListener("click", compareSettings);
    $("sweep-metric").addEventListener("change", () => { state.metric = $("sweep-metric").value; renderCharts(); });
    showSweepRecipe();
  };
})();
