// The dashboard's state and wiring: the run form, the job and run lists, and the run view,
// kept live by the job's event stream (or by polling, for a run started from the CLI).
"use strict";

(function () {
  const el = ACC.el;
  const $ = id => document.getElementById(id);
  const FORM_PARAMS = ["steps", "seeds", "eval_every"];
  const state = {recipes: [], tasks: [], runId: null, jobId: null, series: null, results: null,
                 live: {}, source: null, poll: null, renderTimer: null, picked: new Set(),
                 dirty: {loss: false, metrics: false}, order: {}, replays: new Set()};
  // Live redraws are batched: at most one per RENDER_MS, and only of the charts whose data
  // changed, so an open page costs the training (on the same machine) next to nothing.
  const RENDER_MS = 1000;
  // A run that has not finished (queued or running): the server says which statuses those are.
  let openStatuses = ["queued", "running"];
  const isOpen = status => openStatuses.includes(status);
  // A stopped run with a branch that did not complete can be resumed.
  const isResumable = results => !isOpen(results.status) && Object.values(results.conditions)
    .some(c => c.runs.length === 0 || c.runs.some(r => r.status !== "completed"));

  // --- the run form ------------------------------------------------------------------------

  // What the researcher typed survives a reload (localStorage), per recipe.
  const FORM_KEY = "acc.runForm";

  function saveForm() {
    const values = {};
    for (const input of $("run-form").querySelectorAll("input[name], select[name]")) values[input.name] = input.value;
    localStorage.setItem(FORM_KEY, JSON.stringify(values));
  }

  function restoreForm() {
    const saved = JSON.parse(localStorage.getItem(FORM_KEY) || "null");
    if (!saved || !state.recipes.some(r => r.name === saved.recipe)) return;
    $("recipe").value = saved.recipe;
    showRecipe();
    for (const input of $("run-form").querySelectorAll("input[name], select[name]")) {
      if (input.name !== "recipe" && input.name in saved) input.value = saved[input.name];
    }
  }

  function showRecipe() {
    const recipe = state.recipes.find(r => r.name === $("recipe").value);
    if (!recipe) return;
    $("recipe-desc").textContent = `${recipe.description}. Conditions: ${Object.keys(recipe.conditions).join(", ")}.`;
    const defaults = Object.fromEntries(recipe.params.map(p => [p.name, p.default]));
    $("p-steps").value = defaults.steps;
    $("p-seeds").value = (defaults.seeds || []).join(",");
    $("p-eval_every").value = defaults.eval_every;
    $("extra-params").replaceChildren(...recipe.params.filter(p => !FORM_PARAMS.includes(p.name)).map(p =>
      el("label", {title: p.description || ""}, `${p.name} `,
         p.choices ? el("select", {name: p.name, "data-type": "enum"},
                        p.choices.map(c => el("option", {value: c, selected: c === p.default}, c)))
                   : el("input", {name: p.name, "data-type": p.type, "data-default": JSON.stringify(p.default),
                                  value: p.default === null ? "" : p.default}))));
  }

  function parseValue(raw, type) {
    if (type === "integer" && /^-?\d+$/.test(raw.trim())) return parseInt(raw, 10);
    if (type === "number" && raw.trim() !== "" && !isNaN(Number(raw))) return Number(raw);
    if (type === "boolean") return raw === "true";
    return raw;  // the server says what is wrong with it
  }

  function formParams() {
    const params = ACC.baseParams("p");
    for (const input of $("extra-params").querySelectorAll("input, select")) {
      if (["integer", "number"].includes(input.dataset.type) && input.value.trim() === "") {
        throw new Error(`${input.name}: enter a number`);
      }
      const value = parseValue(input.value, input.dataset.type);
      if (input.dataset.default !== undefined && JSON.stringify(value) === input.dataset.default) continue;
      params[input.name] = value;
    }
    return params;
  }

  async function submitRun(event) {
    event.preventDefault();
    $("form-error").textContent = "";
    $("run-btn").disabled = true;
    try {
      const body = {recipe: $("recipe").value, params: formParams()};
      if ($("p-checkpoint_every").value.trim() !== "" || $("p-checkpoint_every").validity.badInput) {
        body.checkpoint_every = ACC.wholeNumber("p-checkpoint_every", "Resume point every (steps)");
      }
      const job = await ACC.api("/api/jobs", {method: "POST", body});
      await refreshLists();
      await openRun(job.run_id);
    } catch (err) {
      $("form-error").textContent = err.message;
    } finally {
      $("run-btn").disabled = false;
    }
  }

  // The parameters that set a run apart: those that differ from the recipe's defaults.
  function paramSummary(recipeName, params, skip) {
    const recipe = state.recipes.find(r => r.name === recipeName);
    if (!recipe) return [];
    const show = v => Array.isArray(v) ? v.join(",") : v;
    return recipe.params.filter(p => !skip.includes(p.name) && p.name in params
                                      && JSON.stringify(params[p.name]) !== JSON.stringify(p.default))
      .map(p => `${p.name} ${show(params[p.name])}`);
  }

  // --- lists -------------------------------------------------------------------------------

  // The run list is paged: RUNS_SHOWN runs from state.runsOffset (newest first).
  const RUNS_SHOWN = 50;
  function runsQuery() {
    const query = new URLSearchParams({limit: RUNS_SHOWN, offset: state.runsOffset || 0});
    if ($("run-filter").value.trim()) query.set("q", $("run-filter").value.trim());
    if ($("run-filter-recipe").value) query.set("recipe", $("run-filter-recipe").value);
    if ($("run-filter-status").value) query.set("status", $("run-filter-status").value);
    return `/api/runs?${query}`;
  }

  // A page of a list, and how many there are in all (the X-Total-Count header).
  async function listPage(path) {
    const response = await fetch(path);
    const data = await response.json();
    if (!response.ok) throw new Error(ACC.errorText(data) || `${response.status}`);
    return [data, Number(response.headers.get("X-Total-Count")) || data.length];
  }
  const JOBS_SHOWN = 15;

  // The pager under the run list: which runs are shown of how many, and the buttons to the
  // newer and older pages (hidden while one page holds them all).
  function renderRunsPager(shown, total) {
    const offset = state.runsOffset || 0;
    $("runs-pager").hidden = offset === 0 && total <= RUNS_SHOWN;
    $("runs-page").textContent = shown ? `${offset + 1}–${offset + shown} of ${total}` : `0 of ${total}`;
    $("runs-newer").disabled = offset === 0;
    $("runs-older").disabled = offset + shown >= total;
  }

  function pageRuns(direction) {
    state.runsOffset = Math.max(0, (state.runsOffset || 0) + direction * RUNS_SHOWN);
    refreshLists().catch(() => {});
  }

  async function refreshLists() {
    const [[jobs, total], [runs, runsTotal], sweeps] = await Promise.all([
      listPage(`/api/jobs?limit=${JOBS_SHOWN}`), listPage(runsQuery()), ACC.api("/api/sweeps")]);
    if (!runs.length && state.runsOffset && runsTotal) {  // runs went (deleted): the last page
      state.runsOffset = Math.floor((runsTotal - 1) / RUNS_SHOWN) * RUNS_SHOWN;
      return refreshLists();
    }
    const sweepId = ACC.currentSweep();
    const key = JSON.stringify([jobs, total, runs, runsTotal, state.runsOffset, sweeps, state.runId,
                                sweepId, [...state.picked]]);
    if (key === state.listsKey) { tickJobTimes(jobs); return; }  // unchanged: leave the DOM alone
    state.listsKey = key;
    // a sweep's job has the sweep's id as its run id: it opens the sweep view
    const openJob = job => job.sweep_id ? ACC.openSweep(job.sweep_id) : openRun(job.run_id);
    const shown = job => job.run_id === (job.sweep_id ? sweepId : state.runId);
    $("jobs").replaceChildren(...jobs.map(job => el("li", {class: shown(job) ? "selected" : ""},
      el("button", {type: "button", class: "link", onclick: () => openJob(job)},
         job.sweep_id ? `${job.recipe} sweep` : job.recipe),
      " ", el("span", {class: `badge ${job.status}`, title: job.error || ""},
              job.cancel_requested ? "cancelling" : job.status),
      el("div", {class: "muted params"}, paramSummary(job.recipe, job.params || {}, ["seeds"]).join(" · ")),
      el("div", {class: "muted job-time", "data-job": job.id, title: jobTimesTitle(job)}, ACC.jobTimeText(job, Date.now() / 1000)),
      ["queued", "running"].includes(job.status)
        ? el("button", {type: "button", class: "small", onclick: () => cancelJob(job.id)}, "cancel") : null)));
    if (total > jobs.length) $("jobs").append(el("li", {class: "muted"}, `showing ${jobs.length} of ${total}`));
    if (!jobs.length) $("jobs").replaceChildren(el("li", {class: "muted"}, "no jobs yet"));
    $("runs").replaceChildren(...runs.map(run => el("li", {class: run.id === state.runId ? "selected" : ""},
      el("input", {type: "checkbox", class: "pick", title: "select to compare", "data-run": run.id,
                   checked: state.picked.has(run.id), onchange: event => pick(run.id, event.target.checked)}),
      el("button", {type: "button", class: "link", onclick: () => openRun(run.id),
                    title: `${run.id} · ${run.recipe} · ${ACC.when(run.created_at)}${run.note ? "\n" + run.note : ""}`},
         run.name || run.id), " ", el("span", {class: `badge ${run.status}`}, run.status),
      run.sweep_id ? el("span", {class: "muted"}, " sweep")
        : run.job_id ? null : el("span", {class: "muted"}, " cli"))));
    if (!runs.length) $("runs").replaceChildren(el("li", {class: "muted"}, "no runs match"));
    renderRunsPager(runs.length, runsTotal);
    showPicked();
    ACC.renderSweepList($("sweeps"), sweeps);
  }
  ACC.refreshLists = refreshLists;

  // A running job's time so far, in lists that are otherwise unchanged.
  function tickJobTimes(jobs) {
    const now = Date.now() / 1000;
    for (const job of jobs.filter(j => j.started_at && !j.finished_at)) {
      const div = $("jobs").querySelector(`.job-time[data-job="${CSS.escape(job.id)}"]`);
      if (div) div.textContent = ACC.jobTimeText(job, now);
    }
  }

  // The full dates behind a job's times (hover).
  const jobTimesTitle = job => [["created", job.created_at], ["started", job.started_at],
                                ["finished", job.finished_at]]
    .filter(([, t]) => t).map(([what, t]) => `${what} ${ACC.when(t)}`).join("\n");

  // Runs ticked in the list, for the comparison view.
  function pick(runId, on) {
    if (on) state.picked.add(runId); else state.picked.delete(runId);
    showPicked();
  }

  function showPicked() {
    $("compare-btn").disabled = state.picked.size < 2;
    $("compare-btn").textContent = `Compare ${state.picked.size || ""} selected`.replace("  ", " ");
  }

  async function resumeRun() {
    const runId = state.runId;
    $("run-error").textContent = "";
    try {
      await ACC.api(`/api/runs/${runId}/resume`, {method: "POST"});
      await refreshLists();
      await openRun(runId);
    } catch (err) {
      $("run-error").textContent = err.message;
    }
  }

  // Delete the open run (its rows and checkpoints) after the researcher confirms.
  async function deleteRun() {
    const runId = state.runId;
    const label = state.results.name ? `"${state.results.name}" (${runId})` : runId;
    if (!confirm(`Delete run ${label}, its branches, curves and checkpoints? This cannot be undone.`)) return;
    try {
      const out = await ACC.api(`/api/runs/${encodeURIComponent(runId)}`, {method: "DELETE"});
      state.picked.delete(runId);
      showEmpty(`Deleted run ${runId} (${out.branches} branches, ${out.checkpoints} checkpoints).`);
      history.replaceState(null, "", "#");
      await refreshLists();
    } catch (err) {
      $("run-error").textContent = err.message;
    }
  }

  async function cancelJob(jobId) {
    try { await ACC.api(`/api/jobs/${jobId}/cancel`, {method: "POST"}); }
    catch (err) { alert(err.message); }
    refreshLists();
  }

  // --- the run view ------------------------------------------------------------------------

  function stopFollowing() {
    if (state.source) state.source.close();
    if (state.poll) clearInterval(state.poll);
    state.source = state.poll = null;
    setLive("idle");
  }

  // "live": the job's event stream; "polling": a run started elsewhere (the CLI), read from
  // the store every POLL_MS.
  function setLive(text) {
    $("live").textContent = text;
    $("live").className = `badge ${["live", "polling"].includes(text) ? "running" : "idle"}`;
  }
  ACC.setLive = setLive;
  const POLL_MS = 2000;

  // Hide the run view (a sweep is being shown instead).
  ACC.closeRun = function closeRun() {
    stopFollowing();
    state.runId = null;
    $("run-view").hidden = true;
  };

  // Nothing to show but a message (a run that is not in the store, a deleted one).
  function showEmpty(text) {
    ACC.closeRun();
    ACC.closeSweep();
    ACC.closeCompare();
    $("empty").textContent = text;
    $("empty").hidden = false;
    $("chart-controls").hidden = true;
  }
  ACC.showEmpty = showEmpty;

  async function openRun(runId) {
    ACC.closeSweep();
    ACC.closeCompare();
    stopFollowing();
    state.runId = runId;
    state.live = {};
    history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
    let results, series;
    try {
      [results, series] = await Promise.all([readResults(runId), readSeries(runId)]);
    } catch (err) {
      if (state.runId === runId) showEmpty(`No run "${runId}" to show: ${err.message}`);
      return;
    }
    if (state.runId !== runId || !results || !series) return;
    state.jobId = results.job_id;
    $("empty").hidden = true;
    $("run-view").hidden = false;
    $("chart-controls").hidden = false;
    $("log").textContent = "";
    renderAll();
    refreshCheckpoints();
    document.querySelectorAll("#runs li, #jobs li").forEach(li => li.classList.remove("selected"));
    if (isOpen(results.status) && results.job_id) follow(results.job_id);
    else if (isOpen(results.status)) { state.poll = setInterval(pollRun, POLL_MS); setLive("polling"); }
    showLogNote();
  }
  ACC.openRun = openRun;

  // The log panel streams a page-started job's log lines; say where the others' logs are.
  function showLogNote() {
    const {results} = state;
    const streaming = Boolean(state.source);
    $("log").hidden = !streaming && !$("log").textContent;
    $("log-note").textContent = streaming || $("log").textContent ? ""
      : !results.job_id ? "This run was started from the CLI: its log is in the terminal that runs it "
                          + `(this page reads its progress from the store every ${POLL_MS / 1000} s).`
      : isOpen(results.status) ? "" : "Log lines stream here while a job started from this page runs.";
  }

  const SHOWN = ["steps", "seeds", "eval_every", "batch_size", "lr", "optimizer", "device"];

  function renderAll() {
    const {results} = state;
    // a named run is headed by its name, its id beside it
    $("run-title").textContent = results.name || results.run_id;
    $("run-id").textContent = results.name ? results.run_id : "";
    showStatus(results.status);
    const c = results.config;
    $("run-config").textContent = [`${results.recipe} · steps ${c.steps} · seeds ${c.seeds.join(", ")} · `
      + `eval every ${c.eval_every} · batch ${c.batch_size} · lr ${c.lr} · ${c.optimizer} · ${c.device}`,
      ...paramSummary(results.recipe, c, SHOWN)].join(" · ");
    $("run-error").textContent = results.error || "";
    $("cancel-btn").hidden = !(state.jobId && isOpen(results.status));
    $("resume-btn").hidden = !isResumable(results);
    $("delete-btn").hidden = isOpen(results.status);
    ACC.renderRunLabel(results, state.runId);
    ACC.renderExportLinks($("export-links"), state.runId);
    renderLive();
    const finished = !isOpen(results.status);
    $("comparison-section").hidden = !finished && !Object.values(results.conditions).some(x => x.runs.some(r => r.metrics && Object.keys(r.metrics).length));
    ACC.renderComparison($("comparison"), results);
    ACC.renderHypotheses($("hypotheses"), results);
    ACC.renderPictures($("pictures"), $("picture-seed"), results);
  }

  // A run that has started while none of its branches has (workers starting, a sweep's later
  // settings) says so rather than "running".
  function showStatus(status) {
    const branches = state.series ? state.series.branches : [];
    const waiting = status === "running" && branches.every(b => b.status === "queued");
    $("run-status").textContent = waiting ? "waiting" : status;
    $("run-status").className = `badge ${waiting ? "queued" : status}`;
    $("run-status").title = waiting ? "started; every branch is still queued (waiting for a worker)" : "";
  }

  function renderLive(dirty) {
    const {series} = state;
    ACC.renderBranches($("branches"), series, state.live);
    const running = series.branches.find(b => b.status === "running");
    const doing = running && ACC.branchPhase(running, state.live[`${running.condition}|${running.seed}`] || {}, series);
    $("training-now").textContent = !running ? ""
      : doing ? `evaluating now: ${running.condition} · seed ${running.seed} (${doing.text})`
      : `training now: ${running.condition} · seed ${running.seed} (step ${running.steps_done})`;
    if (!dirty || dirty.loss) ACC.renderLoss($("loss-chart"), series, () => renderLive());
    if (!dirty || dirty.metrics) ACC.renderMetrics($("metric-charts"), series, () => renderLive());
  }
  ACC.redrawRun = () => { if (state.runId && state.series) renderLive(); };

  function scheduleRender(what) {
    if (what) state.dirty[what] = true;
    if (state.renderTimer) return;
    state.renderTimer = setTimeout(() => {
      const dirty = state.dirty;
      state.renderTimer = null;
      state.dirty = {loss: false, metrics: false};
      renderLive(dirty);
    }, RENDER_MS);
  }

  async function refreshCheckpoints() {
    const runId = state.runId;
    const checkpoints = await ACC.api(`/api/runs/${runId}/checkpoints`);
    if (state.runId !== runId) return;
    ACC.renderCheckpointTree($("ckpt-tree"), checkpoints, id =>
      ACC.renderInspector($("inspector"), id, state.tasks).catch(err =>
        $("inspector").replaceChildren(el("p", {class: "error"}, err.message))));
  }

  // --- ordered reads ------------------------------------------------------------------------

  // Replies to repeated reads of the run can come back out of order (two branches ending close
  // together, a slow reply) while events keep arriving. Each read takes a ticket: a reply older
  // than the one already shown is dropped, so no reply can take the page back to an older
  // state (issue 20, defect 4: charts showed one seed of two until a reload).
  function ticket(what) {
    const order = state.order[what] || (state.order[what] = {asked: 0, shown: 0});
    const mine = ++order.asked;
    return () => {
      if (mine < order.shown) return false;
      order.shown = mine;
      return true;
    };
  }

  // The run's results; null when a newer reply (or the final event) got there first.
  async function readResults(runId) {
    const fresh = ticket("results");
    const results = await ACC.api(`/api/runs/${encodeURIComponent(runId)}`);
    if (state.runId !== runId || !fresh()) return null;
    state.results = results;
    return results;
  }

  // The store's curves of the run (a finished branch's final metrics are its last point), with
  // the events that arrived after the request was sent applied again on top: the reply may
  // have been read before they were stored (points already there are skipped). Null when the
  // reply is older than the curves shown.
  async function readSeries(runId) {
    const fresh = ticket("series");
    const missed = [];
    state.replays.add(missed);
    try {
      const series = await ACC.api(`/api/runs/${encodeURIComponent(runId)}/series`);
      if (state.runId !== runId || !fresh()) return null;
      state.series = series;
      missed.forEach(applyCurveEvent);
      return series;
    } finally {
      state.replays.delete(missed);
    }
  }

  async function refreshResults() {
    const runId = state.runId;
    if (!await readResults(runId)) return;
    renderAll();
    refreshCheckpoints();
  }

  async function refreshSeries() {
    if (!await readSeries(state.runId)) return;
    scheduleRender("loss");
    scheduleRender("metrics");
  }

  async function pollRun() {
    const runId = state.runId;
    const before = state.results;
    const [results, series] = await Promise.all([readResults(runId), readSeries(runId)]);
    if (state.runId !== runId || !results || !series) return;
    // the header, tables and pictures change only when a branch ends: redraw them then
    const changed = JSON.stringify(results) !== JSON.stringify(before);
    if (changed) renderAll(); else renderLive();
    if (!isOpen(results.status)) { stopFollowing(); showLogNote(); refreshCheckpoints(); refreshLists(); }
  }

  // --- the live event stream ---------------------------------------------------------------

  function follow(jobId) {
    const source = new EventSource(`/api/jobs/${jobId}/events`);
    state.source = source;
    source.onopen = () => setLive("live");
    source.onerror = () => setLive(source.readyState === EventSource.CLOSED ? "idle" : "reconnecting");
    source.onmessage = message => {
      if (state.source !== source) return;
      applyEvent(JSON.parse(message.data));
    };
  }

  function branchOf(condition, seed) {
    let b = state.series.branches.find(x => x.condition === condition && x.seed === seed);
    if (!b) {
      b = {condition, seed, status: "running", steps_done: 0, error: null, losses: {},
           started_at: null, evals: {step: [], time: [], metrics: {}}};
      state.series.branches.push(b);
    }
    return b;
  }

  function addEval(b, step, metrics, time) {
    const steps = b.evals.step;
    if (steps.length && step <= steps[steps.length - 1]) return;  // a replayed event
    const i = steps.length;
    steps.push(step);
    (b.evals.time || (b.evals.time = new Array(i).fill(null))).push(time ?? null);
    for (const [key, value] of Object.entries(metrics)) {
      if (typeof value !== "number" && value !== null) continue;
      if (!b.evals.metrics[key]) b.evals.metrics[key] = new Array(i).fill(null);
    }
    for (const [key, values] of Object.entries(b.evals.metrics)) {
      values[i] = typeof metrics[key] === "number" ? metrics[key] : null;
    }
  }

  // A step event's loss points ({step: [...], losses: {task: [...]}}: one per step on short
  // runs), as the store records them, at the event's time; replayed points are skipped.
  function addLosses(b, step, points, time) {
    for (const [task, values] of Object.entries(points.losses)) {
      const s = b.losses[task] || (b.losses[task] = {step: [], value: [], time: []});
      if (!s.time) s.time = new Array(s.step.length).fill(null);
      points.step.forEach((at, i) => {
        if (s.step.length && at <= s.step[s.step.length - 1]) return;
        s.step.push(at);
        s.value.push(values[i]);
        s.time.push(time ?? null);
      });
    }
    b.steps_done = Math.max(b.steps_done, step);
  }

  // What an event changes in the curves and the branch table (also replayed on a reply that
  // may have been read before the event was stored: see readSeries).
  const CURVE_EVENTS = ["step", "eval", "branch", "health"];
  function applyCurveEvent(ev) {
    const b = branchOf(ev.condition, ev.seed);
    if (ev.type === "step") {
      addLosses(b, ev.step, ev.points || {step: [ev.step], losses: Object.fromEntries(
        Object.entries(ev.losses).map(([task, value]) => [task, [value]]))}, ev.time);
      if (ev.health) b.health = ev.health;
    } else if (ev.type === "eval") {
      addEval(b, ev.step, ev.metrics, ev.time);
    } else if (ev.type === "branch") {
      b.status = ev.state;
      b.error = ev.error || null;
      if (ev.steps !== undefined) b.steps_done = ev.steps;
      if (ev.from_step !== undefined) b.steps_done = ev.from_step;  // a resumed branch
    } else if (ev.type === "health") {
      b.health = Object.assign({}, b.health, ev.health);
    }
  }

  function applyEvent(ev) {
    const key = `${ev.condition}|${ev.seed}`;
    const live = state.live[key] || (state.live[key] = {});
    if (CURVE_EVENTS.includes(ev.type)) {
      applyCurveEvent(ev);
      state.replays.forEach(missed => missed.push(ev));  // for the replies now in flight
    }
    if (ev.type === "step") {
      live.steps_per_second = ev.steps_per_second;
      scheduleRender("loss");
      return;
    } else if (ev.type === "eval") {
      scheduleRender("metrics");
      return;
    } else if (ev.type === "train") {
      live.to_step = ev.to_step;
      live.phase = null;
    } else if (ev.type === "phase") {
      live.phase = {index: ev.index, total: ev.total, task: ev.task, since: Date.now()};
    } else if (ev.type === "branch") {
      if (ev.state === "running" && state.results.status === "queued") {
        state.results.status = "running";  // the run has started; its row says so soon
        refreshResults().catch(() => {});
      }
      if (ev.state === "running") showStatus(state.results.status);  // no longer "waiting"
      if (ev.state === "completed") refreshSeries().catch(() => {});
    } else if (ev.type === "results") {
      refreshResults();
      return;
    } else if (ev.type === "log") {
      $("log").textContent = ($("log").textContent + ev.message + "\n").slice(-20000);
    } else if (ev.type === "job") {
      if (ev.status === "cancelling") $("run-status").textContent = "cancelling";
      if (ev.status === "running") refreshResults();  // the queued run has started
      // closed without a final event (a killed server's run, closed by whoever read the store
      // first): its results say how it ended and why
      if (!["queued", "running", "cancelling"].includes(ev.status)) {
        stopFollowing();
        refreshResults().then(showLogNote).catch(() => {});
      }
      refreshLists();
    } else if (ev.type === "final") {
      ticket("results")();  // the newest results: a reply still in flight is older
      state.results = Object.assign({job_id: state.jobId}, ev.results);
      stopFollowing();
      renderAll();
      showLogNote();
      refreshSeries().catch(() => {});
      refreshCheckpoints();
      refreshLists();
      return;
    }
    scheduleRender();
  }

  // --- start -------------------------------------------------------------------------------

  async function start() {
    const [recipes, tasks, metrics, statuses] = await Promise.all([
      ACC.api("/api/recipes"), ACC.api("/api/tasks"), ACC.api("/api/metrics"), ACC.api("/api/statuses")]);
    openStatuses = ACC.openStatuses = statuses.open;
    state.recipes = recipes.recipes;
    state.tasks = tasks;
    metrics.forEach(m => { ACC.metrics[m.key] = m; });
    $("recipe").replaceChildren(...state.recipes.map(r => el("option", {value: r.name}, r.name)));
    $("recipe").addEventListener("change", () => { showRecipe(); saveForm(); });
    $("run-form").addEventListener("input", saveForm);
    $("run-form").addEventListener("submit", submitRun);
    $("run-filter-recipe").replaceChildren(el("option", {value: ""}, "any recipe"),
      ...state.recipes.map(r => el("option", {value: r.name}, r.name)));
    $("run-filter-status").replaceChildren(el("option", {value: ""}, "any status"),
      ...statuses.values.map(s => el("option", {value: s}, s)));
    for (const id of ["run-filter", "run-filter-recipe", "run-filter-status"]) {
      $(id).addEventListener("input", () => { state.runsOffset = 0; refreshLists().catch(() => {}); });
    }
    $("compare-btn").addEventListener("click", () => ACC.openCompare([...state.picked]));
    $("runs-newer").addEventListener("click", () => pageRuns(-1));
    $("runs-older").addEventListener("click", () => pageRuns(1));
    $("delete-btn").addEventListener("click", deleteRun);
    ACC.initChartControls(() => { ACC.redrawRun(); ACC.redrawCompare(); });
    $("cancel-btn").addEventListener("click", () => state.jobId && cancelJob(state.jobId));
    $("resume-btn").addEventListener("click", resumeRun);
    $("picture-seed").addEventListener("change", () => ACC.renderPictures($("pictures"), $("picture-seed"), state.results));
    showRecipe();
    restoreForm();
    ACC.initSweeps(state.recipes);
    await refreshLists();
    setInterval(() => refreshLists().catch(() => {}), 3000);
    const match = location.hash.match(/^#run=(.+)$/);
    if (match) openRun(decodeURIComponent(match[1])).catch(() => {});
    const compare = location.hash.match(/^#compare=(.+)$/);
    // each entry is URI-encoded: a cell's condition ("gated[a=1,b=2]") has commas of its own
    if (compare) ACC.openCompare(compare[1].split(",").filter(Boolean).map(decodeURIComponent));
    const sweep = location.hash.match(/^#sweep=(.+)$/);
    if (sweep) ACC.openSweep(decodeURIComponent(sweep[1]));
    document.body.dataset.ready = "true";  // the form holds the recipe's defaults from now on
  }

  start().catch(err => { $("form-error").textContent = `could not load the dashboard: ${err.message}`; });
})();
