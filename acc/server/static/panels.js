// Panels of the run view: branch progress, comparison table, hypotheses, filter and
// reconstruction pictures, checkpoint tree and the checkpoint inspector.
"use strict";

(function () {
  const el = ACC.el;

  // A running branch past its last step is in its final evaluation (minutes at level 3): the
  // job's phase events say which part ("evaluating 6/7: disentanglement"); a run followed by
  // polling (the CLI's) has only the step count to go by. Null while it trains.
  ACC.branchPhase = function branchPhase(b, live, series) {
    if (b.status !== "running") return null;
    const p = live.phase;
    if (p) {
      return {label: `evaluating ${p.index}/${p.total}`,
              text: `evaluating ${p.index}/${p.total}: ${p.task}, since ${new Date(p.since).toLocaleTimeString()}`};
    }
    const total = live.to_step || series.steps || 0;
    return total && b.steps_done >= total ? {label: "evaluating", text: "final evaluation"} : null;
  };

  ACC.renderBranches = function renderBranches(table, series, live) {
    const head = el("tr", {}, ["condition", "seed", "state", "progress", "steps/s", "last loss", "loss health"]
      .map(h => el("th", {}, h)));
    const rows = series.branches.map(b => {
      const key = `${b.condition}|${b.seed}`;
      const l = live[key] || {};
      // every training loss of the branch (a VAE has two), by task when more than one
      const losses = Object.entries(b.losses).filter(([, s]) => s.value.length);
      const lastOf = s => s.value[s.value.length - 1];
      const last = losses.length === 1 ? ACC.fmt(lastOf(losses[0][1]))
        : losses.map(([task, s]) => `${task} ${ACC.fmt(lastOf(s))}`).join(" · ") || "–";
      const total = l.to_step || series.steps || 0;
      const pct = total ? Math.min(100, 100 * b.steps_done / total) : 0;
      const phase = ACC.branchPhase(b, l, series);
      return el("tr", {class: b.status === "running" ? "active" : ""},
        el("td", {}, el("span", {class: "swatch",
                                 style: `background:${ACC.conditionColor(series.conditions, b.condition)}`}),
           b.condition),
        el("td", {}, b.seed),
        el("td", {title: b.error || (phase ? phase.text : "")},
           el("span", {class: `badge ${b.status}`, "data-phase": phase ? "evaluating" : null},
              phase ? phase.label : b.status === "running" ? "training" : b.status),
           phase && phase.text !== phase.label ? el("div", {class: "muted small-text"}, phase.text) : null,
           b.status === "failed" && b.error ? el("div", {class: "error small-text"}, b.error) : null),
        el("td", {}, el("div", {class: "bar"}, el("div", {style: `width:${pct}%`})),
           `${b.steps_done} / ${total}`),
        el("td", {}, l.steps_per_second && !phase ? l.steps_per_second.toFixed(0) : "–"),
        el("td", {}, last),
        el("td", {}, Object.entries(b.health || {}).map(([task, h]) =>
          el("span", {class: `badge ${h}`, title: `${task}: ${h}`}, `${task} ${h}`))));
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  };

  // Every final metric of some runs' conditions, in the page's order.
  ACC.finalMetricKeys = function finalMetricKeys(conditions) {
    return ACC.sortMetricKeys(new Set(conditions.flatMap(c => Object.keys(c.mean))));
  };

  // One condition's final value of a metric as a table cell's text: mean ± std over seeds;
  // a count of units (/api/metrics says which) as 12 or 11.5 ± 0.71, not 12.0000 ± 0.7071.
  ACC.meanStdText = function meanStdText(c, key) {
    const mean = (c.mean || {})[key], std = (c.std || {})[key];
    if (Array.isArray(mean)) return listSummary(mean);
    const count = (ACC.metrics[key.split("[")[0]] || {}).count;
    const text = count ? ACC.countText : ACC.fmt;
    return std === null || std === undefined ? text(mean) : `${text(mean)} ± ${ACC.fmt(std, count ? 2 : undefined)}`;
  };

  // A list-valued metric (kl_per_dim: one value per latent dimension) in a table cell: how
  // many values and their range; the cell's hover lists them all (ACC.meanStdTitle).
  function listSummary(values) {
    const numbers = values.filter(v => typeof v === "number");
    if (!numbers.length) return `${values.length} values`;
    return `${values.length} values, ${ACC.fmt(Math.min(...numbers), 3)} … ${ACC.fmt(Math.max(...numbers), 3)}`;
  }

  ACC.meanStdTitle = function meanStdTitle(c, key) {
    const mean = (c.mean || {})[key];
    return Array.isArray(mean) ? `mean over seeds, per dimension: ${mean.map(v => ACC.fmt(v, 3)).join(", ")}` : "";
  };

  // The star's rule is the server's (acc/best.py, shared with the CLI): not on a tie, and with
  // two or more seeds only beyond the combined standard deviation.
  function bestCondition(results, key) {
    return (results.best || {})[key] || null;
  }

  ACC.renderComparison = function renderComparison(table, results) {
    const names = Object.keys(results.conditions);
    const seeds = name => results.conditions[name].runs.filter(r => r.status === "completed").length;
    const head = el("tr", {}, el("th", {}, "metric"),
      names.map(n => el("th", {"data-condition": n}, `${n} (n=${seeds(n)})`)));
    const rows = ACC.finalMetricKeys(Object.values(results.conditions)).map(key => {
      const best = bestCondition(results, key);
      const info = ACC.metricInfo(key);
      return el("tr", {"data-metric": key},
        el("th", {title: info.label}, key, el("span", {class: "muted"}, ` ${info.label}`)),
        names.map(n => el("td", {class: n === best ? "best" : "", title: ACC.meanStdTitle(results.conditions[n], key)},
                          ACC.meanStdText(results.conditions[n], key), n === best ? " ★" : "")));
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  };

  // Verdicts are the adjusted ones (acc.stats / acc.decisions); an inconclusive one says
  // beneath its badge what the data still exclude and how many seeds would decide.
  ACC.renderHypotheses = function renderHypotheses(table, results) {
    const head = el("tr", {}, ["metric", "hypothesis", "a − b", "n", "mean difference", "95% interval",
                               "p (adjusted)", "δ", "verdict"].map(h => el("th", {}, h)));
    const rows = (results.comparisons || []).map(c => el("tr", {"data-metric": c.metric},
      el("th", {title: c.definition || ""}, c.metric), el("td", {}, c.hypothesis),
      el("td", {}, `${c.a} − ${c.b}`), el("td", {}, c.n),
      el("td", {}, ACC.fmt(c.mean_diff)),
      el("td", {}, c.ci95 ? `[${ACC.fmt(c.ci95[0])}, ${ACC.fmt(c.ci95[1])}]` : "–"),
      el("td", {title: ACC.pTitle(c)}, ACC.pText(c.p_adjusted)),
      el("td", {title: "smallest effect of interest, in the metric's units"}, ACC.fmt(c.delta)),
      el("td", {}, el("span", {class: `badge ${c.verdict}`, title: verdictTitle(c)}, c.verdict),
         c.verdict_note ? el("div", {class: "muted verdict-note"}, c.verdict_note) : null)));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  };

  function verdictTitle(c) {
    const power = typeof c.mde80 === "number"
      ? `; detectable now (80% power): |a − b| ≥ ${ACC.fmt(c.mde80)}` : "";
    const seeds = typeof c.seeds_needed === "number" ? `; ${c.seeds_needed} seeds would detect δ` : "";
    return `without adjustment: ${c.verdict_unadjusted}${power}${seeds}`;
  }

  ACC.renderPictures = function renderPictures(container, select, results) {
    const seeds = [...new Set(Object.values(results.conditions).flatMap(c => c.runs.map(r => r.seed)))];
    const chosen = seeds.includes(Number(select.value)) ? Number(select.value) : seeds[0];
    select.replaceChildren(...seeds.map(s => el("option", {value: s, selected: s === chosen}, `seed ${s}`)));
    const columns = Object.entries(results.conditions).map(([name, c]) => {
      const run = c.runs.find(r => r.seed === chosen);
      const body = run && run.checkpoint_id
        ? [el("figure", {}, el("img", {src: `/api/checkpoints/${run.checkpoint_id}/filters.png`,
                                       alt: `${name} filters`, class: "filters"}),
              el("figcaption", {}, "first-layer filters (blue − / red +, each tile scaled to its max)")),
           el("figure", {}, el("img", {src: `/api/checkpoints/${run.checkpoint_id}/reconstructions.png?n=8`,
                                       alt: `${name} reconstructions`, class: "recons"}),
              el("figcaption", {}, "test images (top) and reconstructions (bottom)")),
           ...traversalFigures(name, run.checkpoint_id, results)]
        : [el("p", {class: "muted"}, "no final checkpoint yet")];
      return el("div", {class: "picture-col"}, el("h4", {}, name), body);
    });
    container.replaceChildren(...columns);
  };

  // The factor groups of a factor-slot run: its results carry kl[<group>] per group (DESIGN.md).
  function factorGroups(results) {
    const keys = new Set(Object.values(results.conditions).flatMap(c => Object.keys(c.mean)));
    return [...keys].map(k => /^kl\[(.+)\]$/.exec(k)).filter(Boolean).map(m => m[1]);
  }

  // A factor-slot model's traversals, one figure per factor group.
  function traversalFigures(name, checkpointId, results) {
    return factorGroups(results).map(group =>
      el("figure", {}, el("img", {src: `/api/checkpoints/${checkpointId}/traversals.png?group=${encodeURIComponent(group)}&n=6`,
                                  alt: `${name} ${group} traversal`, class: "traversal", loading: "lazy"}),
         el("figcaption", {}, `${group}: one row per test image, t = −2 … +2 std along the slot's main direction`)));
  }

  ACC.renderCheckpointTree = function renderCheckpointTree(list, checkpoints, onPick) {
    const children = new Map();
    for (const ck of checkpoints) {
      const parent = ck.parent_id || "";
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(ck);
    }
    const node = ck => el("li", {},
      el("button", {type: "button", class: "link", "data-ckpt": ck.id, title: ck.id,
                    onclick: () => onPick(ck.id)},
         `${ck.condition || ck.tag} · seed ${ck.seed} · step ${ck.step}`),
      el("span", {class: "muted"}, ` ${ck.tag}`),
      children.has(ck.id) ? el("ul", {}, children.get(ck.id).map(node)) : null);
    list.replaceChildren(...(children.get("") || []).map(node));
  };

  // The layer the run's recipe measured with this task type, else the first weight layer.
  function defaultLayer(info, taskName) {
    const used = (info.metadata.tasks || []).find(t => t.type === taskName && t.layer_name);
    return used && info.layers.includes(used.layer_name) ? used.layer_name : info.weight_layers[0];
  }

  function paramInput(param, info, taskName) {
    if (param.name === "layer_name") {
      const preferred = defaultLayer(info, taskName);
      return el("select", {name: param.name}, info.layers.map(l =>
        el("option", {value: l, selected: l === preferred}, info.weight_layers.includes(l) ? `${l} (weights)` : l)));
    }
    const type = param.type.startsWith("int") || param.type.startsWith("float") ? "number" : "text";
    return el("input", {name: param.name, type, step: "any",
                        value: param.default === null ? "" : param.default,
                        placeholder: param.required ? "required" : "optional"});
  }

  function readParams(form, task) {
    const params = {};
    for (const p of task.params) {
      const raw = form.elements[p.name].value;
      if (raw === "" && !p.required) continue;
      params[p.name] = p.type.startsWith("int") ? parseInt(raw, 10)
        : p.type.startsWith("float") ? parseFloat(raw) : raw;
    }
    return params;
  }

  // A background evaluation (some take 80+ s): how long it has run against how long the same
  // one took last time, and a Cancel button; polled until it ends. Its last state, or null if
  // the inspector moved on to another checkpoint meanwhile.
  const EVAL_POLL_MS = 500;
  async function followEvaluation(ev, result) {
    const bar = el("div", {style: "width:0%"});
    const text = el("span", {class: "muted"});
    const cancel = el("button", {type: "button", class: "small", onclick: () => {
      cancel.disabled = true;
      ACC.api(`/api/evaluations/${ev.id}/cancel`, {method: "POST"}).catch(() => {});
    }}, "cancel");
    result.replaceChildren(el("p", {class: "evaluating"}, el("span", {class: "bar"}, bar), text, " ", cancel));
    while (["running", "cancelling"].includes(ev.status)) {
      const expected = ev.expected_seconds, known = typeof expected === "number";
      text.textContent = `${ev.status === "cancelling" ? "cancelling" : "evaluating on the test split"}… `
        + `${Math.round(ev.seconds)} s` + (known ? ` (last time ${Math.round(expected)} s)` : "");
      bar.style.width = known ? `${Math.min(100, 100 * ev.seconds / Math.max(expected, 0.1))}%` : "0%";
      await new Promise(done => setTimeout(done, EVAL_POLL_MS));
      if (!result.isConnected) return null;
      ev = await ACC.api(`/api/evaluations/${ev.id}`);
    }
    return ev;
  }

  ACC.renderInspector = async function renderInspector(box, ckptId, tasks) {
    box.replaceChildren(el("p", {class: "muted"}, `loading ${ckptId}…`));
    const info = await ACC.api(`/api/checkpoints/${ckptId}`);
    const meta = info.metadata;
    const taskSelect = el("select", {name: "task"}, tasks.map(t => el("option", {value: t.name}, t.name)));
    const paramBox = el("div", {class: "params"});
    const result = el("div", {class: "result"});
    const form = el("form", {class: "inspector-form"}, el("label", {}, "Task ", taskSelect), paramBox,
                    el("button", {type: "submit"}, "Evaluate"), result);
    const showParams = () => {
      const task = tasks.find(t => t.name === taskSelect.value);
      paramBox.replaceChildren(el("p", {class: "muted"}, task.description),
        ...task.params.map(p => el("label", {}, `${p.name} `, paramInput(p, info, task.name))));
    };
    taskSelect.addEventListener("change", showParams);
    form.addEventListener("submit", async event => {
      event.preventDefault();
      const task = tasks.find(t => t.name === taskSelect.value);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const started = await ACC.api(`/api/checkpoints/${ckptId}/evaluations`,
                                      {method: "POST", body: {task: task.name, params: readParams(form, task)}});
        const out = await followEvaluation(started, result);
        if (out && out.status === "completed") {
          result.replaceChildren(el("table", {class: "data metrics"}, Object.entries(out.metrics).map(
            ([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, Array.isArray(v) ? v.map(x => ACC.fmt(x, 3)).join(", ") : ACC.fmt(v))))));
        } else if (out) {
          result.replaceChildren(el("p", {class: out.status === "cancelled" ? "muted" : "error"},
                                    out.status === "cancelled" ? `cancelled after ${out.seconds} s` : out.error));
        }
      } catch (err) {
        result.replaceChildren(el("p", {class: "error"}, err.message));
      } finally {
        button.disabled = false;
      }
    });
    box.replaceChildren(
      el("h4", {}, `${ckptId}`),
      el("p", {class: "muted"}, `${meta.model.class} · ${meta.condition || meta.tag} · seed ${meta.seed} · `
         + `step ${meta.step} · ${info.parameters.toLocaleString()} parameters · data view ${info.view}`),
      el("p", {class: "muted"}, `gating: ${meta.gating ? JSON.stringify(meta.gating) : "none"}`),
      form);
    showParams();
  };

  // A note shows every line it has (up to 8; then it scrolls).
  function fitRows(textarea) {
    textarea.rows = Math.min(8, Math.max(1, textarea.value.split("\n").length));
  }

  // The run's name and note: edited in place, saved when the field loses focus.
  ACC.renderRunLabel = function renderRunLabel(results, runId) {
    const name = document.getElementById("run-name"), note = document.getElementById("run-note");
    const status = document.getElementById("label-status");
    if (name.dataset.run !== runId || document.activeElement !== name) name.value = results.name || "";
    if (note.dataset.run !== runId || document.activeElement !== note) note.value = results.note || "";
    name.dataset.run = note.dataset.run = runId;
    fitRows(note);
    note.oninput = () => fitRows(note);
    const save = async field => {
      if (field.value === (results[field.name] || "")) return;
      status.textContent = "saving…";
      try {
        await ACC.api(`/api/runs/${encodeURIComponent(runId)}`,
                      {method: "PATCH", body: {[field.name]: field.value}});
        results[field.name] = field.value;
        status.textContent = "saved";
        if (field === name) {
          document.getElementById("run-title").textContent = field.value || runId;
          document.getElementById("run-id").textContent = field.value ? runId : "";
        }
        ACC.refreshLists().catch(() => {});
      } catch (err) {
        status.textContent = err.message;
      }
    };
    name.onchange = () => save(name);
    note.onchange = () => save(note);
  };

  // Download links: the run's numbers as JSON, CSV (zip) or a TensorBoard log (zip).
  ACC.renderExportLinks = function renderExportLinks(box, runId) {
    const link = (format, text) => el("a", {href: `/api/runs/${encodeURIComponent(runId)}/export?format=${format}`,
                                             download: "", class: "button-link", "data-format": format}, text);
    box.replaceChildren("Export: ", link("json", "JSON"), " ", link("csv", "CSV"), " ",
                        link("tensorboard", "TensorBoard"));
  };
})();
