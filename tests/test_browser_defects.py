"""The dashboard's defects found by trying it as a researcher would (issue 11, defects 3, 4 and
6-10), each checked in headless Chromium against a real server and real runs.

Runs are made through the store (fast, no page needed) and then opened by their deep link,
except where the defect is about a run started from the page.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from acc.jsonable import finite
from acc.runner import create_run, execute_run
from acc.series import run_series
from acc.server.jobs import JobManager
from acc.server.jobstore import JobStore
from acc.store import Store

pytestmark = pytest.mark.slow


def open_run(page, run_id: str) -> None:
    page.goto(page.url.split("#")[0] + f"#run={run_id}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(
        f"document.querySelector('#run-title').textContent === {run_id!r}", timeout=30_000
    )


def boxes_overlap(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_a_finished_level2_run_reads_correctly(page, tmp_path, small_mnist_dir):
    store = Store(tmp_path / "store")
    params = {"steps": 25, "seeds": [1], "eval_every": 10, "temperature": 0.5, "latent_dim": 8}
    run_id = create_run(store, "gradient_gating_l2", params, "cpu", small_mnist_dir)
    execute_run(store, run_id)
    open_run(page, run_id)
    page.wait_for_function(
        "document.querySelectorAll('#metric-charts .main-svg').length > 0", timeout=30_000
    )

    # defect 7: the two losses of a branch differ in colour or dash; hover names are whole;
    # the branch table's last loss names both
    traces = page.evaluate(
        """() => document.querySelector('#loss-chart .plot').data.filter(t => t.name).map(t => ({
            name: t.name, style: t.line.color + '/' + t.line.dash,
            whole: (t.hoverlabel || {}).namelength === -1}))"""
    )
    gated = [t for t in traces if t["name"].startswith("gated")]
    assert len(gated) == 2, traces
    assert gated[0]["style"] != gated[1]["style"], gated
    assert all(t["whole"] for t in traces), traces
    last_loss = page.locator("#branches tbody tr").first.locator("td").nth(5).inner_text()
    assert "reconstruction" in last_loss and "kl" in last_loss, last_loss

    # defect 9: evaluated at 0, 10, 20; the final metrics (step 25) are the last point
    last_x = page.evaluate(
        """() => [...document.querySelectorAll('#metric-charts [data-metric]')].map(div =>
            Math.max(...div.querySelector('.plot').data.flatMap(t => t.x)))"""
    )
    assert last_x and all(x == 25 for x in last_x), last_x

    # defect 4: no chart title hidden behind its legend
    for chart in page.locator("#metric-charts [data-metric]").all():
        title = chart.locator(".chart-title, .gtitle").first.bounding_box()
        legend = chart.locator(".legend").first.bounding_box()
        assert title and legend and not boxes_overlap(title, legend), chart.inner_text()

    # defect 8: the header names the parameters that differ from the recipe's defaults
    config = page.locator("#run-config").inner_text()
    assert "temperature 0.5" in config and "latent_dim 8" in config, config

    # issue 20, defect 13: a list-valued metric reads as a summary (every value on hover), in
    # the run's table and in the compare view (one run: "Comparing 1 run")
    cell = page.locator('#comparison tr[data-metric="kl_per_dim"] td').first
    kl_text = cell.inner_text()
    assert re.fullmatch(r"8 values, \S+ … \S+", kl_text), kl_text
    assert len(cell.get_attribute("title").split(": ")[1].split(", ")) == 8

    # defect 6: the inspector's layer defaults to the layer the recipe measured with the task
    page.locator("#ckpt-tree button", has_text="gated").first.click()
    page.wait_for_selector("#inspector form")
    page.select_option("#inspector select[name=task]", "ActivationSparsityTask")
    assert page.locator("#inspector select[name=layer_name]").input_value() == "encoder.relu1"
    page.select_option("#inspector select[name=task]", "EffectiveRankTask")
    assert page.locator("#inspector select[name=layer_name]").input_value() == "encoder.conv1"
    assert "``" not in page.inner_text("#inspector")  # plain text, not reStructuredText

    page.goto(page.url.split("#")[0] + f"#compare={run_id}")
    page.reload()
    page.wait_for_selector('#compare-table tr[data-metric="kl_per_dim"]')
    assert page.inner_text("#compare-count") == "1 run"
    compared = page.locator('#compare-table tr[data-metric="kl_per_dim"] td').first.inner_text()
    assert compared == kl_text


def test_a_cli_run_is_followed_by_polling_and_says_so(page, tmp_path, long_cli_run):
    """Defect 10: a CLI run's badge said 'idle' and its log panel was an empty bar."""
    _, store = long_cli_run(tmp_path / "store")
    open_run(page, store.list_runs()[0]["id"])
    page.wait_for_function("document.querySelector('#live').textContent === 'polling'")
    assert "terminal" in page.locator("#log-section").inner_text()  # where its log is


def test_a_run_started_from_the_page_reads_correctly_live_and_cancelled(page, monkeypatch):
    # Executors that take a while to start (worker processes, a Ray cluster): the job says
    # running well before its run does, which is when the header used to stick at "queued".
    make_executor = JobManager._make_executor

    def slow_to_start(self):
        time.sleep(2)
        return make_executor(self)

    monkeypatch.setattr(JobManager, "_make_executor", slow_to_start)
    page.click("#new-run details summary")  # More parameters
    page.fill("#extra-params input[name=temperature]", "0.5")
    page.fill("#p-steps", "100000")
    page.fill("#p-seeds", "3")
    page.fill("#p-eval_every", "0")
    page.fill("#p-checkpoint_every", "5000")  # issue 20, defect 13: a job sets it too
    page.click("#run-btn")
    page.wait_for_selector("#branches .badge.running", timeout=60_000)  # a branch trains
    config = page.evaluate(
        "() => fetch('/api/runs/' + location.hash.slice(5)).then(r => r.json()).then(r => r.config)"
    )
    assert config["checkpoint_every"] == 5000 and config["steps"] == 100000

    # defect 3: the header says running (the jobs list did; the header said queued)
    page.wait_for_function(
        "document.querySelector('#run-status').textContent === 'running'", timeout=5_000
    )
    # defect 8: the header and the jobs list name the non-default parameter
    assert "temperature 0.5" in page.locator("#run-config").inner_text()
    assert "temperature 0.5" in page.locator("#jobs li").first.inner_text()

    # the live loss curve gets every recorded point: on a 100,000-step run one per 20 steps
    # (the store's density), not one per 50-step read-back window
    page.wait_for_function(
        """() => { const t = document.querySelector('#loss-chart .plot')?.data?.[0];
                   return t && t.x.length >= 5 && t.x.slice(-4).every((x, i, a) =>
                       i === 0 || x - a[i - 1] === 20); }""",
        timeout=30_000,
    )

    # defect 10: a cancelled branch shows its last loss, not "error: cancelled"
    page.wait_for_function(
        "document.querySelector('#branches tbody tr td:nth-child(6)').textContent.match(/\\d/)"
    )
    page.click("#cancel-btn")
    page.wait_for_function(
        "document.querySelector('#run-status').textContent === 'cancelled'", timeout=60_000
    )
    first = page.locator("#branches tbody tr").first
    assert first.locator(".badge.cancelled").count() == 1
    last_loss = first.locator("td").nth(5).inner_text()
    assert "error" not in last_loss and any(c.isdigit() for c in last_loss), last_loss


def test_unknown_run_reload_and_favicon(page):
    """Defect 10: an unknown run said nothing, a reload lost the form, the favicon was a 404."""
    page.goto(page.url.split("#")[0] + "#run=no-such-run")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function("document.querySelector('#empty').textContent.includes('no-such-run')")
    assert "No run" in page.locator("#empty").inner_text()
    # issue 20, defect 13: deep links to nothing said "Comparing 1 runs" above empty charts,
    # or showed the sweep view's empty sections under the error
    for link, said, view in [
        ("#compare=no-such-run", "Nothing to compare: no-such-run: no run", "#compare-view"),
        ("#sweep=no-such-sweep", 'No sweep "no-such-sweep" to show: ', "#sweep-view"),
    ]:
        page.goto(page.url.split("#")[0] + link)
        page.reload()
        page.wait_for_selector("body[data-ready]")
        page.wait_for_function(f"document.querySelector('#empty').textContent.startsWith({said!r})")
        assert page.locator(view).is_hidden() and page.locator("#chart-controls").is_hidden()

    page.select_option("#recipe", "gradient_gating_l1")
    page.fill("#p-steps", "77")
    page.fill("#p-seeds", "5,6")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#recipe").input_value() == "gradient_gating_l1"
    assert page.locator("#p-steps").input_value() == "77"
    assert page.locator("#p-seeds").input_value() == "5,6"

    icon = page.evaluate(
        """async () => {
            const link = document.querySelector('link[rel=icon]');
            const a = await fetch(link.href), b = await fetch('/favicon.ico');
            return [a.status, a.headers.get('content-type'), b.status];
        }"""
    )
    assert icon[0] == 200 and icon[1].startswith("image/") and icon[2] == 200, icon


RUN_NAMES = "() => [...document.querySelectorAll('#runs li button.link')].map(b => b.textContent)"


def test_the_jobs_list_says_how_many_jobs_there_are_and_the_run_list_pages(page, tmp_path):
    """Issue 20, defect 10: the list showed the newest 15 jobs and never said there were more.
    Issue 20, capabilities: the run list showed the newest 100 runs and no more, ever."""
    jobs = JobStore(tmp_path / "store")
    for i in range(17):
        jobs.finish(jobs.create(f"run-{i}", "gradient_gating_l0", {"steps": 1}), "cancelled")
    jobs.close()
    store = Store(tmp_path / "store")
    for i in range(53):
        store.create_run("gradient_gating_l0", {}, [], {}, name=f"r{i}")
    store.close()
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(
        "document.querySelector('#jobs').textContent.includes('showing 15 of 17')", timeout=5_000
    )
    assert page.locator("#jobs .badge").count() == 15

    # 50 runs a page, newest first; the pager says which of how many
    page.wait_for_function("document.querySelector('#runs-page').textContent === '1–50 of 53'")
    assert page.evaluate(RUN_NAMES) == [f"r{i}" for i in range(52, 2, -1)]
    assert page.locator("#runs-newer").is_disabled()
    page.click("#runs-older")
    page.wait_for_function("document.querySelector('#runs-page').textContent === '51–53 of 53'")
    assert page.evaluate(RUN_NAMES) == ["r2", "r1", "r0"]
    assert page.locator("#runs-older").is_disabled() and page.locator("#runs-newer").is_enabled()
    # a filter starts again at its first page; one page needs no pager
    page.fill("#run-filter", "r5")
    page.wait_for_function("document.querySelectorAll('#runs li').length === 4")
    assert page.evaluate(RUN_NAMES) == ["r52", "r51", "r50", "r5"]
    assert page.locator("#runs-pager").is_hidden()


METRIC_CURVES = """() => [...document.querySelectorAll('#metric-charts [data-metric]')].map(box =>
    box.querySelector('.plot').data.filter(t => t.name).map(t => t.name + ' ' + t.x.join(',')))
    .flat()"""


def test_charts_stay_whole_when_series_replies_come_late_and_out_of_order_and_say_evaluating(
    page, tmp_path, tiny_mnist
):
    """Issue 20, defect 4: after a page-started job completed, every gated curve showed one
    seed of two: a late /series reply replaced newer curves (an older reply over a newer one,
    or one read before the events that arrived while it was in flight). Every /series reply
    after the page opened is held here (read at request time, delivered when the test says)
    and delivered late and out of order; the curves must stay whole throughout."""
    store = Store(tmp_path / "store")
    params = {"steps": 10, "seeds": [1, 2], "eval_every": 5, "batch_size": 16}
    run_id = create_run(store, "gradient_gating_l0", params, "cpu", tiny_mnist)
    jobs = JobStore(tmp_path / "store")
    job_id = jobs.create(run_id, "gradient_gating_l0", params)
    jobs.set_running(job_id, 0)
    open_run(page, run_id)  # follows the job's event stream from here on

    held = []
    page.route("**/series", lambda route: held.append((route, route.fetch())))
    completed, evaluating, checked = [], [], threading.Event()

    def on_event(event):  # the first two branches' /series reads precede the others' events
        jobs.add_event(job_id, finite(event))
        if event["type"] == "phase" and event["index"] == 3 and not evaluating:
            evaluating.append(event)  # the first branch waits in its final evaluation
            checked.wait(20)
        if event["type"] == "branch" and event["state"] == "completed":
            completed.append(event)
            deadline = time.time() + 20
            while len(completed) == 2 and len(held) < 2 and time.time() < deadline:
                time.sleep(0.02)

    def drive():
        runs = Store(tmp_path / "store")
        results = execute_run(runs, run_id, on_event=on_event)
        jobs.add_event(job_id, finite({"type": "final", "status": "completed", "results": results}))
        runs.close()

    thread = threading.Thread(target=drive)
    thread.start()
    # defect 5: a branch past its last step says which part of its final evaluation runs
    page.wait_for_function(
        "document.querySelector('#branches [data-phase]')?.textContent === 'evaluating 3/6'",
        timeout=30_000,
    )
    [phase] = evaluating
    row = page.locator("#branches tbody tr", has=page.locator("[data-phase]"))
    assert row.locator("td").nth(4).inner_text() == "–"  # no steps/s while it evaluates
    assert page.inner_text("#training-now").startswith(
        f"evaluating now: {phase['condition']} · seed {phase['seed']} "
        f"(evaluating 3/6: {phase['task']}, since "
    )
    checked.set()
    deadline = time.time() + 30
    while len(held) < 5 and time.time() < deadline:  # one per completed branch, one at the end
        page.wait_for_timeout(50)
    assert len(held) == 5, (len(held), len(completed))
    thread.join()
    page.wait_for_function("document.querySelector('#run-status').textContent === 'completed'")
    branches = run_series(store, run_id)["branches"]

    def points(b, key):  # the steps at which a branch has the metric (gates: none at step 0)
        values = b["evals"]["metrics"].get(key, [])
        return ",".join(str(s) for s, v in zip(b["evals"]["step"], values) if v is not None)

    whole = sorted(  # every metric's curve of each condition that has it: both seeds
        f"{b['condition']} (n=2 seeds) {points(b, key)}"
        for key in {k for b in branches for k in b["evals"]["metrics"]}
        for b in branches
        if b["seed"] == 1 and points(b, key)
    )
    assert len(whole) >= 10 and whole.count("standard (n=2 seeds) 0,5,10") >= 5, whole

    def deliver(*which):
        for i in which:
            route, response = held[i]
            route.fulfill(response=response)
        page.wait_for_timeout(1300)  # the page redraws live curves at most once a second
        curves = page.evaluate(METRIC_CURVES)
        assert sorted(curves) == whole, (which, curves)

    deliver(1)  # read before the last two branches trained: their events go on top
    deliver(4, 3, 2, 0)  # the newest, then older ones (last the oldest): dropped
    jobs.finish(job_id, "completed")
    jobs.close()


def test_a_run_closed_under_its_page_says_why(page, tmp_path, tiny_mnist):
    """Issue 20, defect 13: the header said "running" while every branch was queued, and a run
    interrupted by a killed server showed no error: the restarted server (or any reader of the
    store) closed it, and its job said so with no final event for the page."""
    store = Store(tmp_path / "store")
    params = {"steps": 10, "seeds": [1], "eval_every": 0, "batch_size": 16}
    run_id = create_run(store, "gradient_gating_l0", params, "cpu", tiny_mnist)
    jobs = JobStore(tmp_path / "store")
    job_id = jobs.create(run_id, "gradient_gating_l0", params)
    jobs.set_running(job_id, 0)
    open_run(page, run_id)  # started, nothing trains yet
    assert page.inner_text("#run-status") == "waiting"

    why = "the process that ran it (pid 12345) ended without closing it"
    store.interrupt_open_branches(run_id, why)
    store.finish_run(run_id, "interrupted", why)
    jobs.finish(job_id, "interrupted", "the server stopped while the job was running")
    jobs.add_event(job_id, {"type": "job", "status": "interrupted", "error": why})
    page.wait_for_function(
        "document.querySelector('#run-status').textContent === 'interrupted'", timeout=5_000
    )
    assert page.inner_text("#run-error") == why
    assert page.locator("#resume-btn").is_visible() and page.inner_text("#live") == "idle"
    jobs.close()
