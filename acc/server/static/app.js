// The dashboard's state and wiring: the run form, the job and run lists, and the run view,
// kept live by the job's event stream (or by polling, for a run started from the CLI).
"use strict";

(function () {
  const el = ACC.el;
  const $ = id => document.getElementById(id);
  const FORM_PARAMS = ["steps", "seeds", "eval_every"];
  const state = {recipes: [], tasks: [], runId: null, jobId: null, series: null, results: null,
                 live: {}, source: null, poll: null, renderTimer: null,
                 dirty: {loss: false, metrics: false}};
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

  // A number box with text in it reports an empty value: read it as an error, never as "use
  // the default" (which would start a default-length run).
  function wholeNumber(id, label) {
    const input = $(id);
    if (input.validity.badInput || input.value.trim() === "" || !/^-?\d+$/.test(input.value.trim())) {
      throw new Error(`${label}: enter a whole number`);
    }
    return parseInt(input.value, 10);
  }

  function formParams() {
    const params = {};
    params.steps = wholeNumber("p-steps", "Steps per branch");
    params.eval_every = wholeNumber("p-eval_every", "Evaluate every (steps)");
    params.seeds = $("p-seeds").value.split(",").map(s => s.trim()).filter(Boolean)
      .map(s => parseValue(s, "integer"));
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
      const job = await ACC.api("/api/jobs", {method: "POST",
                                              body: {recipe: $("recipe").value, params: formParams()}});
      await refreshLists();
      await openRun(job.run_id);
    } catch (err) {
      $("form-error").textContent = err.message;
    } finally {
      $("run-btn").disabled = false;
    }
  }

  // --- lists -------------------------------------------------------------------------------

  async function refreshLists() {
    const [jobs, runs, sweeps] = await Promise.all([ACC.api("/api/jobs"), ACC.api("/api/runs"),
                                                    ACC.api("/api/sweeps")]);
    const sweepId = ACC.currentSweep();
    const key = JSON.stringify([jobs, runs, sweeps, state.runId, sweepId]);
    if (key === state.listsKey) return;  // unchanged: leave the DOM alone
    state.listsKey = key;
    // a sweep's job has the sweep's id as its run id: it opens the sweep view
    const openJob = job => job.sweep_id ? ACC.openSweep(job.sweep_id) : openRun(job.run_id);
    const shown = job => job.run_id === (job.sweep_id ? sweepId : state.runId);
    $("jobs").replaceChildren(...jobs.slice(0, 15).map(job => el("li", {class: shown(job) ? "selected" : ""},
      el("button", {type: "button", class: "link", onclick: () => openJob(job)},
         job.sweep_id ? `${job.recipe} sweep` : job.recipe),
      " ", el("span", {class: `badge ${job.status}`}, job.cancel_requested ? "cancelling" : job.status),
      ["queued", "running"].includes(job.status)
        ? el("button", {type: "button", class: "small", onclick: () => cancelJob(job.id)}, "cancel") : null)));
    if (!jobs.length) $("jobs").replaceChildren(el("li", {class: "muted"}, "no jobs yet"));
    $("runs").replaceChildren(...runs.map(run => el("li", {class: run.id === state.runId ? "selected" : ""},
      el("button", {type: "button", class: "link", onclick: () => openRun(run.id), title: ACC.when(run.created_at)},
         run.id), " ", el("span", {class: `badge ${run.status}`}, run.status),
      run.sweep_id ? el("span", {class: "muted"}, " sweep")
        : run.job_id ? null : el("span", {class: "muted"}, " cli"))));
    ACC.renderSweepList($("sweeps"), sweeps);
  }
  ACC.refreshLists = refreshLists;

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

  function setLive(text) {
    $("live").textContent = text;
    $("live").className = `badge ${text === "live" ? "running" : "idle"}`;
  }

  // Hide the run view (a sweep is being shown instead).
  ACC.closeRun = function closeRun() {
    stopFollowing();
    state.runId = null;
    $("run-view").hidden = true;
  };

  async function openRun(runId) {
    ACC.closeSweep();
    stopFollowing();
    state.runId = runId;
    state.live = {};
    history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
    const [results, series] = await Promise.all([ACC.api(`/api/runs/${runId}`),
                                                 ACC.api(`/api/runs/${runId}/series`)]);
    if (state.runId !== runId) return;
    Object.assign(state, {results, series, jobId: results.job_id});
    $("empty").hidden = true;
    $("run-view").hidden = false;
    $("log").textContent = "";
    renderAll();
    refreshCheckpoints();
    document.querySelectorAll("#runs li, #jobs li").forEach(li => li.classList.remove("selected"));
    if (isOpen(results.status) && results.job_id) follow(results.job_id);
    else if (isOpen(results.status)) state.poll = setInterval(pollRun, 2000);
  }
  ACC.openRun = openRun;

  function renderAll() {
    const {results, series} = state;
    $("run-title").textContent = results.run_id;
    $("run-status").textContent = results.status;
    $("run-status").className = `badge ${results.status}`;
    const c = results.config;
    $("run-config").textContent = `${results.recipe} · steps ${c.steps} · seeds ${c.seeds.join(", ")} · `
      + `eval every ${c.eval_every} · batch ${c.batch_size} · lr ${c.lr} · ${c.optimizer} · ${c.device}`;
    $("run-error").textContent = results.error || "";
    $("cancel-btn").hidden = !(state.jobId && isOpen(results.status));
    $("resume-btn").hidden = !isResumable(results);
    renderLive();
    const finished = !isOpen(results.status);
    $("comparison-section").hidden = !finished && !Object.values(results.conditions).some(x => x.runs.some(r => r.metrics && Object.keys(r.metrics).length));
    ACC.renderComparison($("comparison"), results);
    ACC.renderHypotheses($("hypotheses"), results);
    ACC.renderPictures($("pictures"), $("picture-seed"), results);
  }

  function renderLive(dirty) {
    const {series} = state;
    ACC.renderBranches($("branches"), series, state.live);
    const running = series.branches.find(b => b.status === "running");
    $("training-now").textContent = running
      ? `training now: ${running.condition} · seed ${running.seed} (step ${running.steps_done})` : "";
    if (!dirty || dirty.loss) ACC.renderLoss($("loss-chart"), series);
    if (!dirty || dirty.metrics) ACC.renderMetrics($("metric-charts"), series);
  }

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

  async function refreshResults() {
    const runId = state.runId;
    const results = await ACC.api(`/api/runs/${runId}`);
    if (state.runId !== runId) return;
    state.results = results;
    renderAll();
    refreshCheckpoints();
  }

  async function pollRun() {
    const runId = state.runId;
    const [results, series] = await Promise.all([ACC.api(`/api/runs/${runId}`),
                                                 ACC.api(`/api/runs/${runId}/series`)]);
    if (state.runId !== runId) return;
    Object.assign(state, {results, series});
    renderAll();
    if (!isOpen(results.status)) { stopFollowing(); refreshCheckpoints(); refreshLists(); }
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
           evals: {step: [], metrics: {}}};
      state.series.branches.push(b);
    }
    return b;
  }

  function addEval(b, step, metrics) {
    const steps = b.evals.step;
    if (steps.length && step <= steps[steps.length - 1]) return;  // a replayed event
    const i = steps.length;
    steps.push(step);
    for (const [key, value] of Object.entries(metrics)) {
      if (typeof value !== "number" && value !== null) continue;
      if (!b.evals.metrics[key]) b.evals.metrics[key] = new Array(i).fill(null);
    }
    for (const [key, values] of Object.entries(b.evals.metrics)) {
      values[i] = typeof metrics[key] === "number" ? metrics[key] : null;
    }
  }

  function addLosses(b, step, losses) {
    for (const [task, value] of Object.entries(losses)) {
      const s = b.losses[task] || (b.losses[task] = {step: [], value: []});
      if (s.step.length && step <= s.step[s.step.length - 1]) continue;
      s.step.push(step);
      s.value.push(value);
    }
    b.steps_done = Math.max(b.steps_done, step);
  }

  function applyEvent(ev) {
    const key = `${ev.condition}|${ev.seed}`;
    const live = state.live[key] || (state.live[key] = {});
    if (ev.type === "step") {
      const b = branchOf(ev.condition, ev.seed);
      addLosses(b, ev.step, ev.losses);
      if (ev.health) b.health = ev.health;
      live.steps_per_second = ev.steps_per_second;
      scheduleRender("loss");
      return;
    } else if (ev.type === "eval") {
      addEval(branchOf(ev.condition, ev.seed), ev.step, ev.metrics);
      scheduleRender("metrics");
      return;
    } else if (ev.type === "train") {
      live.to_step = ev.to_step;
    } else if (ev.type === "branch") {
      const b = branchOf(ev.condition, ev.seed);
      b.status = ev.state;
      b.error = ev.error || null;
      if (ev.steps !== undefined) b.steps_done = ev.steps;
      if (ev.from_step !== undefined) b.steps_done = ev.from_step;  // a resumed branch
    } else if (ev.type === "health") {
      const b = branchOf(ev.condition, ev.seed);
      b.health = Object.assign({}, b.health, ev.health);
    } else if (ev.type === "results") {
      refreshResults();
      return;
    } else if (ev.type === "log") {
      $("log").textContent = ($("log").textContent + ev.message + "\n").slice(-20000);
    } else if (ev.type === "job") {
      if (ev.status === "cancelling") $("run-status").textContent = "cancelling";
      if (ev.status === "running") refreshResults();  // the queued run has started
      refreshLists();
    } else if (ev.type === "final") {
      state.results = ev.results;
      stopFollowing();
      renderAll();
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
    $("recipe").addEventListener("change", showRecipe);
    $("run-form").addEventListener("submit", submitRun);
    $("cancel-btn").addEventListener("click", () => state.jobId && cancelJob(state.jobId));
    $("resume-btn").addEventListener("click", resumeRun);
    $("picture-seed").addEventListener("change", () => ACC.renderPictures($("pictures"), $("picture-seed"), state.results));
    showRecipe();
    ACC.initSweeps(state.recipes);
    await refreshLists();
    setInterval(() => refreshLists().catch(() => {}), 3000);
    const match = location.hash.match(/^#run=(.+)$/);
    if (match) openRun(decodeURIComponent(match[1])).catch(() => {});
    const sweep = location.hash.match(/^#sweep=(.+)$/);
    if (sweep) ACC.openSweep(decodeURIComponent(sweep[1]));
    document.body.dataset.ready = "true";  // the form holds the recipe's defaults from now on
  }

  start().catch(err => { $("form-error").textContent = `could not load the dashboard: ${err.message}`; });
})();
