// Charts: the loss curve per branch and the periodic metrics per condition (mean ± std over
// seeds). Redrawn with Plotly.react and a fixed uirevision, so live updates keep the
// researcher's zoom, pan and legend choices.
"use strict";

(function () {
  const PREFERRED = ["weight_cosine_sim", "activation_sparsity", "effective_rank",
                     "sparsity_variance", "dead_units", "kl", "active_units"];
  const CONFIG = {displaylogo: false, responsive: true,
                  modeBarButtonsToRemove: ["select2d", "lasso2d"]};

  function layout(title, runId, extra) {
    return Object.assign({
      title: {text: title, font: {size: 13}, x: 0.01, xanchor: "left"}, uirevision: runId,
      height: 270, margin: {l: 55, r: 10, t: 48, b: 40}, xaxis: {title: {text: "step"}},
      legend: {orientation: "h", x: 1, xanchor: "right", y: 1.0, yanchor: "bottom",
               font: {size: 11}},
      hovermode: "x unified",
      paper_bgcolor: "#fff", plot_bgcolor: "#fafafa",
    }, extra || {});
  }

  ACC.renderLoss = function renderLoss(div, series) {
    const traces = [];
    const dashes = ["solid", "dot", "dash", "longdash", "dashdot"];
    for (const b of series.branches) {
      const seedIndex = series.seeds ? Math.max(0, series.seeds.indexOf(b.seed)) : 0;
      for (const [task, points] of Object.entries(b.losses)) {
        traces.push({
          x: points.step, y: points.value, type: "scatter",
          mode: points.step.length < 20 ? "lines+markers" : "lines",
          name: `${b.condition} · seed ${b.seed}` + (Object.keys(b.losses).length > 1 ? ` · ${task}` : ""),
          legendgroup: b.condition,
          line: {color: ACC.conditionColor(series.conditions, b.condition), width: 1.6,
                 dash: dashes[seedIndex % dashes.length]},
        });
      }
    }
    // The traces' arrays grow in place as points arrive, and Plotly.react compares arrays by
    // identity: datarevision (the number of points) tells it the data changed.
    const points = traces.reduce((n, t) => n + t.x.length, 0);
    Plotly.react(div, traces, layout("training loss per branch", series.run_id,
                                     {yaxis: {title: {text: "loss"}, type: "log"},
                                      datarevision: points}), CONFIG);
  };

  ACC.metricKeys = function metricKeys(series) {
    const keys = new Set();
    for (const b of series.branches) Object.keys(b.evals.metrics).forEach(k => keys.add(k));
    const rank = k => { const i = PREFERRED.indexOf(k.split("[")[0]); return i < 0 ? 99 : i; };
    return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  };

  // Mean and sample std (ddof = 1) over the seeds of one condition, step by step.
  ACC.aggregate = function aggregate(branches, key) {
    const byStep = new Map();
    for (const b of branches) {
      const values = b.evals.metrics[key] || [];
      b.evals.step.forEach((step, i) => {
        const v = values[i];
        if (typeof v !== "number") return;
        if (!byStep.has(step)) byStep.set(step, []);
        byStep.get(step).push(v);
      });
    }
    const steps = [...byStep.keys()].sort((a, b) => a - b);
    const out = {step: steps, mean: [], std: [], n: []};
    for (const step of steps) {
      const vs = byStep.get(step);
      const mean = vs.reduce((s, v) => s + v, 0) / vs.length;
      const std = vs.length > 1
        ? Math.sqrt(vs.reduce((s, v) => s + (v - mean) ** 2, 0) / (vs.length - 1)) : null;
      out.mean.push(mean); out.std.push(std); out.n.push(vs.length);
    }
    return out;
  };

  function metricTraces(series, key) {
    const traces = [];
    for (const condition of series.conditions) {
      const branches = series.branches.filter(b => b.condition === condition);
      const agg = ACC.aggregate(branches, key);
      if (!agg.step.length) continue;
      const color = ACC.conditionColor(series.conditions, condition);
      const seeds = Math.max(...agg.n);
      if (agg.std.some(s => s !== null)) {
        const upper = agg.mean.map((m, i) => agg.std[i] === null ? m : m + agg.std[i]);
        const lower = agg.mean.map((m, i) => agg.std[i] === null ? m : m - agg.std[i]);
        traces.push({x: agg.step, y: upper, mode: "lines", line: {width: 0}, showlegend: false,
                     hoverinfo: "skip", legendgroup: condition, type: "scatter"});
        traces.push({x: agg.step, y: lower, mode: "lines", line: {width: 0}, fill: "tonexty",
                     fillcolor: ACC.rgba(color, 0.18), showlegend: false, hoverinfo: "skip",
                     legendgroup: condition, type: "scatter"});
      }
      traces.push({x: agg.step, y: agg.mean, type: "scatter", mode: "lines+markers",
                   name: `${condition} (n=${seeds} seed${seeds === 1 ? "" : "s"})`,
                   legendgroup: condition, line: {color, width: 2}, marker: {size: 4},
                   customdata: agg.std.map(s => ACC.fmt(s)),
                   hovertemplate: "%{y:.4g} ± %{customdata}"});
    }
    return traces;
  }

  ACC.renderMetrics = function renderMetrics(container, series) {
    const keys = ACC.metricKeys(series);
    if (!keys.length) {
      if (!container.querySelector(".muted")) {
        container.replaceChildren(ACC.el("p", {class: "muted"},
          "No periodic evaluations yet (they appear every eval_every steps)."));
      }
      return;
    }
    container.querySelector(":scope > p.muted")?.remove();
    for (const key of keys) {
      let div = container.querySelector(`[data-metric="${CSS.escape(key)}"]`);
      if (!div) {
        div = ACC.el("div", {class: "chart small", "data-metric": key});
        container.append(div);
      }
      const info = ACC.metricInfo(key);
      const hint = info.better === null ? "" : info.better ? " (higher is better)" : " (lower is better)";
      Plotly.react(div, metricTraces(series, key),
                   layout(`${info.label}${hint}`, series.run_id), CONFIG);
    }
  };
})();
