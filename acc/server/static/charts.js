// Charts: the loss curves and the periodic metrics, for one run (per branch / per condition)
// or for several runs compared (per run and condition). Redrawn with Plotly.react and a fixed
// uirevision, so live updates keep the researcher's zoom, pan and legend choices.
//
// The chart options (EMA smoothing, log or linear y per chart, individual seeds instead of the
// band, linked x-axes) are the researcher's and are kept across reloads (localStorage).
"use strict";

(function () {
  const el = ACC.el;
  const PREFERRED = ["weight_cosine_sim", "activation_sparsity", "effective_rank",
                     "sparsity_variance", "dead_units", "kl", "active_units"];
  const CONFIG = {displaylogo: false, responsive: true,
                  modeBarButtonsToRemove: ["select2d", "lasso2d"]};
  const DASHES = ["solid", "dot", "dash", "longdash", "dashdot"];
  const OPTIONS_KEY = "acc.chartOptions";

  ACC.chartOptions = Object.assign({smoothing: 0, seeds: false, linkX: true, log: {loss: true}, x: "step"},
                                   JSON.parse(localStorage.getItem(OPTIONS_KEY) || "{}"));
  ACC.saveChartOptions = () => localStorage.setItem(OPTIONS_KEY, JSON.stringify(ACC.chartOptions));

  // TensorBoard's smoothing: an exponential moving average, debiased so that the first
  // points are not pulled towards zero. weight 0 = the raw values.
  ACC.smooth = function smooth(values, weight) {
    if (!weight) return values;
    let last = 0, norm = 0;
    return values.map(v => {
      if (typeof v !== "number" || !isFinite(v)) return v;
      last = last * weight + (1 - weight) * v;
      norm = norm * weight + (1 - weight);
      return last / norm;
    });
  };

  // Condition colour, lighter or darker per seed, so the seeds of a condition stay one family.
  ACC.seedShade = function seedShade(hex, index) {
    const n = parseInt(hex.slice(1), 16);
    const f = [0, 0.35, -0.3, 0.55, -0.45][index % 5];
    const mix = c => Math.round(f >= 0 ? c + (255 - c) * f : c * (1 + f));
    return `rgb(${mix(n >> 16)}, ${mix((n >> 8) & 255)}, ${mix(n & 255)})`;
  };

  // The x-axis: the training step, the seconds since the branch started, or the wall-clock
  // time each point was recorded (the series' ``time``; points recorded before ACC stored
  // times have none and are left out of the time axes).
  const X_NAMES = {step: "training step", relative: "seconds since the branch started",
                   wall: "wall-clock time"};
  const xMode = () => (ACC.chartOptions.x in X_NAMES ? ACC.chartOptions.x : "step");

  ACC.xValues = function xValues(curve, branch) {
    const mode = xMode();
    if (mode === "step") return curve.step;
    const times = curve.time || [];
    const first = times.find(t => typeof t === "number");
    const origin = typeof branch.started_at === "number" ? branch.started_at : first;
    return curve.step.map((_, i) => {
      const t = times[i];
      if (typeof t !== "number") return null;
      return mode === "wall" ? t * 1000 : Math.max(0, t - origin);  // a date axis takes ms
    });
  };

  // The section titles name the x-axis ("x = training step").
  ACC.showXName = () => document.querySelectorAll(".x-name").forEach(s => { s.textContent = X_NAMES[xMode()]; });

  function layout(uirevision, steps, logY, extra) {
    const mode = xMode();
    const xaxis = mode === "wall" ? {type: "date"} : mode === "step" && steps ? {range: [0, steps]} : {};
    return Object.assign({
      // the section titles name the x-axis; the legend sits under the tick labels, where it
      // can never cover the title or the curves. A new axis is a new uirevision: a step
      // range kept on a time axis would show nothing.
      uirevision: `${uirevision}:${mode}`, height: 250, margin: {l: 55, r: 10, t: 8, b: 30},
      xaxis: Object.assign({automargin: true}, xaxis),
      yaxis: {type: logY ? "log" : "linear", automargin: true},
      showlegend: true, legend: {orientation: "h", x: 0, y: -0.12, yanchor: "top", font: {size: 11}},
      hovermode: "x unified", paper_bgcolor: "#fff", plot_bgcolor: "#fafafa",
    }, extra || {});
  }

  // A chart's box: an HTML title (never hidden behind the legend, it wraps when long), a
  // log/linear toggle, and the plot. Reused across redraws; returns the plot's div.
  ACC.chartBox = function chartBox(container, key, title, onScale) {
    container.querySelector(":scope > p.muted")?.remove();  // "nothing yet": there is now
    let box = container.querySelector(`:scope > [data-metric="${CSS.escape(key)}"]`);
    if (!box) {
      const toggle = el("button", {type: "button", class: "scale", title: "log or linear y-axis",
        onclick: () => { ACC.chartOptions.log[key] = !ACC.chartOptions.log[key];
                         ACC.saveChartOptions(); onScale(); }});
      box = el("div", {class: "chart-box", "data-metric": key},
               el("div", {class: "chart-title"}, el("span", {class: "text"}), toggle),
               el("div", {class: "plot"}));
      container.append(box);
    }
    box.querySelector(".chart-title .text").textContent = title;
    box.querySelector(".chart-title .scale").textContent = ACC.chartOptions.log[key] ? "log y" : "linear y";
    box.querySelector(".empty")?.remove();
    return box.querySelector(".plot");
  };

  ACC.showEmptyCharts = showEmpty;
  function showEmpty(container, text) {
    if (container.querySelector(":scope > p.muted")?.textContent === text) return;
    container.querySelectorAll(".plot").forEach(div => Plotly.purge(div));
    container.replaceChildren(el("p", {class: "muted"}, text));
  }

  function draw(div, traces, layoutObject) {
    const points = traces.reduce((n, t) => n + t.x.length, 0);
    // The traces' arrays grow in place as points arrive, and Plotly.react compares arrays by
    // identity: datarevision (the number of points) tells it the data changed.
    Plotly.react(div, traces, Object.assign(layoutObject, {datarevision: points}), CONFIG);
    ACC.linkX(div);
  }

  ACC.drawChart = (div, traces, uirevision, steps, logY) => draw(div, traces, layout(uirevision, steps, logY));

  // --- one run -------------------------------------------------------------------------------

  // Per branch and task: colour by condition (shaded per seed), dash by task.
  ACC.renderLoss = function renderLoss(container, series, redraw) {
    const traces = [];
    const tasks = [...new Set(series.branches.flatMap(b => Object.keys(b.losses)))];
    const smoothing = ACC.chartOptions.smoothing;
    for (const b of series.branches) {
      const seedIndex = series.seeds ? Math.max(0, series.seeds.indexOf(b.seed)) : 0;
      const color = ACC.seedShade(ACC.conditionColor(series.conditions, b.condition), seedIndex);
      for (const [task, points] of Object.entries(b.losses)) {
        const x = ACC.xValues(points, b);
        const name = `${b.condition} · seed ${b.seed}` + (tasks.length > 1 ? ` · ${task}` : "");
        const dash = DASHES[tasks.indexOf(task) % DASHES.length];
        if (smoothing) {
          traces.push({x, y: points.value, type: "scatter", mode: "lines",
                       line: {color, width: 1, dash}, opacity: 0.25, legendgroup: name,
                       showlegend: false, hoverinfo: "skip"});
        }
        traces.push({
          x, y: ACC.smooth(points.value, smoothing), type: "scatter",
          mode: points.step.length < 20 ? "lines+markers" : "lines", name, legendgroup: name,
          line: {color, width: 1.6, dash}, hoverlabel: {namelength: -1},
        });
      }
    }
    if (!traces.length) return showEmpty(container, "No training losses yet (they appear as the first branch trains).");
    const div = ACC.chartBox(container, "loss", "training loss per branch" + (smoothing ? ` (smoothed ${smoothing})` : ""), redraw);
    draw(div, traces, layout(series.run_id, series.steps, ACC.chartOptions.log.loss));
  };

  // Metric keys in the order the page shows them: the plan's main metrics first.
  ACC.sortMetricKeys = function sortMetricKeys(keys) {
    const rank = k => { const i = PREFERRED.indexOf(k.split("[")[0]); return i < 0 ? 99 : i; };
    return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  };

  // Every periodic metric of one run's series, or of several.
  ACC.metricKeys = function metricKeys(seriesList) {
    const keys = new Set();
    for (const series of [].concat(seriesList)) {
      for (const b of series.branches) Object.keys(b.evals.metrics).forEach(k => keys.add(k));
    }
    return ACC.sortMetricKeys(keys);
  };

  // Mean and sample std (ddof = 1) over the curves ({step, value, x}) of one group, step by
  // step; x is the mean of the seeds' x at that step (their times, on a time axis), or the
  // step where a curve has no x.
  ACC.aggregateCurves = function aggregateCurves(curves) {
    const byStep = new Map();
    for (const curve of curves) {
      curve.step.forEach((step, i) => {
        const v = curve.value[i];
        if (typeof v !== "number") return;
        if (!byStep.has(step)) byStep.set(step, {vs: [], xs: []});
        byStep.get(step).vs.push(v);
        const x = curve.x ? curve.x[i] : step;
        if (typeof x === "number") byStep.get(step).xs.push(x);
      });
    }
    const steps = [...byStep.keys()].sort((a, b) => a - b);
    const out = {step: steps, x: [], mean: [], std: [], n: []};
    const average = vs => vs.reduce((s, v) => s + v, 0) / vs.length;
    for (const step of steps) {
      const {vs, xs} = byStep.get(step);
      const mean = average(vs);
      const std = vs.length > 1
        ? Math.sqrt(vs.reduce((s, v) => s + (v - mean) ** 2, 0) / (vs.length - 1)) : null;
      out.mean.push(mean); out.std.push(std); out.n.push(vs.length);
      out.x.push(xs.length ? average(xs) : null);
    }
    return out;
  };

  const evalCurve = (b, key) => {
    const curve = {step: b.evals.step, time: b.evals.time, value: b.evals.metrics[key] || []};
    return Object.assign(curve, {x: ACC.xValues(curve, b)});
  };
  ACC.aggregate = (branches, key) => ACC.aggregateCurves(branches.map(b => evalCurve(b, key)));

  // Traces of one group (a condition, or a run's condition): its seeds' lines, or its mean
  // with a ±1 std band. ``curves``: one {step, value, seed, x} per branch.
  function groupTraces(name, color, curves, options) {
    options = options || {};
    const smoothing = options.smoothing || 0;
    if (options.seeds) {
      return curves.filter(c => c.step.length).map((c, i) => ({
        x: c.x || c.step, y: ACC.smooth(c.value, smoothing), type: "scatter", mode: "lines+markers",
        name: `${name} · seed ${c.seed}`, legendgroup: name, marker: {size: 3},
        line: {color: ACC.seedShade(color, i), width: 1.5, dash: options.dash},
        hoverlabel: {namelength: -1}}));
    }
    const agg = ACC.aggregateCurves(curves);
    if (!agg.step.length) return [];
    const mean = ACC.smooth(agg.mean, smoothing);
    const traces = [];
    const seeds = Math.max(...agg.n);
    if (agg.std.some(s => s !== null)) {
      const upper = mean.map((m, i) => agg.std[i] === null ? m : m + agg.std[i]);
      const lower = mean.map((m, i) => agg.std[i] === null ? m : m - agg.std[i]);
      traces.push({x: agg.x, y: upper, mode: "lines", line: {width: 0}, showlegend: false,
                   hoverinfo: "skip", legendgroup: name, type: "scatter"});
      traces.push({x: agg.x, y: lower, mode: "lines", line: {width: 0}, fill: "tonexty",
                   fillcolor: ACC.rgba(color, 0.18), showlegend: false, hoverinfo: "skip",
                   legendgroup: name, type: "scatter"});
    }
    traces.push({x: agg.x, y: mean, type: "scatter", mode: agg.step.length < 60 ? "lines+markers" : "lines",
                 name: `${name} (n=${seeds} seed${seeds === 1 ? "" : "s"})`,
                 legendgroup: name, line: {color, width: 2, dash: options.dash}, marker: {size: 4},
                 customdata: agg.std.map(s => ACC.fmt(s)), hoverlabel: {namelength: -1},
                 hovertemplate: "%{y:.4g} ± %{customdata}"});
    return traces;
  }
  ACC.groupTraces = groupTraces;

  function metricTitle(key) {
    const info = ACC.metricInfo(key);
    const hint = info.better === null ? "" : info.better ? " (higher is better)" : " (lower is better)";
    return `${info.label}${hint}`;
  }
  ACC.metricTitle = metricTitle;

  ACC.renderMetrics = function renderMetrics(container, series, redraw) {
    const keys = ACC.metricKeys(series);
    if (!keys.length) return showEmpty(container, "No periodic evaluations yet (they appear every eval_every steps).");
    const options = {seeds: ACC.chartOptions.seeds};
    for (const key of keys) {
      const traces = series.conditions.flatMap(condition => groupTraces(condition,
        ACC.conditionColor(series.conditions, condition),
        series.branches.filter(b => b.condition === condition)
          .map(b => Object.assign(evalCurve(b, key), {seed: b.seed})), options));
      const div = ACC.chartBox(container, key, metricTitle(key), redraw);
      draw(div, traces, layout(series.run_id, series.steps, ACC.chartOptions.log[key]));
    }
  };

  // --- linked x-axes -------------------------------------------------------------------------

  // Zooming or panning one chart's step axis moves every other chart on the page with it.
  ACC.linkX = function linkX(div) {
    if (div.dataset.linked) return;
    div.dataset.linked = "true";
    div.on("plotly_relayout", change => {
      if (!ACC.chartOptions.linkX || ACC.linkX.busy) return;
      const update = {};
      if (change["xaxis.autorange"]) update["xaxis.autorange"] = true;
      else if ("xaxis.range[0]" in change) {
        update["xaxis.range"] = [change["xaxis.range[0]"], change["xaxis.range[1]"]];
      } else if (change["xaxis.range"]) update["xaxis.range"] = change["xaxis.range"];
      else return;
      ACC.linkX.busy = true;
      const others = [...document.querySelectorAll(".plot.js-plotly-plot")]
        .filter(d => d !== div && d.offsetParent !== null);
      Promise.all(others.map(d => Plotly.relayout(d, update)))
        .finally(() => { ACC.linkX.busy = false; });
    });
  };

  // The toolbar above the charts: smoothing slider, individual seeds, linked x-axes.
  ACC.initChartControls = function initChartControls(onChange) {
    const $ = id => document.getElementById(id);
    const o = ACC.chartOptions;
    const show = () => { $("smoothing-value").textContent = o.smoothing.toFixed(2); };
    $("smoothing").value = o.smoothing;
    $("show-seeds").checked = o.seeds;
    $("link-x").checked = o.linkX;
    $("x-axis").value = xMode();
    show();
    ACC.showXName();
    const changed = () => {
      o.smoothing = Number($("smoothing").value);
      o.seeds = $("show-seeds").checked;
      o.linkX = $("link-x").checked;
      o.x = $("x-axis").value;
      ACC.saveChartOptions();
      show();
      ACC.showXName();
      onChange();
    };
    ["smoothing", "show-seeds", "link-x", "x-axis"].forEach(id => $(id).addEventListener("input", changed));
  };
})();
