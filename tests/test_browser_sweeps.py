"""End to end in headless Chromium: start a sweep from the form, read its heatmaps and its
parallel coordinates, open a cell's run; a bad axis shows the server's error.

Runs against a real server (uvicorn on a free 127.0.0.1 port, a temporary store) and a real
sweep job. Skipped only where Chromium is missing outside CI; in CI (CI=true) it must run.
"""

from __future__ import annotations

import pytest

from acc.runner import create_sweep, execute_sweep
from acc.status import Status
from acc.store import Store

pytestmark = pytest.mark.slow

HEATMAPS = """() => [...document.querySelectorAll('#sweep-heatmaps .facet')].map(f => {
    const d = f.querySelector('.plot');
    return {metric: f.dataset.metric, pair: f.dataset.pair, type: d.data[0].type, x: d.data[0].x,
            y: d.data[0].y, z: d.data[0].z, title: f.querySelector('.chart-title').textContent};
    })"""
SWEEPS = "() => fetch('/api/sweeps').then(r => r.json())"


def start_sweep(page, grid: str) -> None:
    page.click("#sweep-details summary")
    page.select_option("#s-recipe", "gradient_gating_l0")
    page.fill("#s-steps", "10")
    page.fill("#s-seeds", "1,2")
    page.fill("#s-eval_every", "0")
    page.fill("#s-grid", grid)
    page.click("#sweep-btn")


def test_a_sweep_fills_its_heatmap_and_opens_a_cells_run(page, tmp_path):
    start_sweep(page, "temperature=0.5,2\ngate_strength=0.5,1")
    page.wait_for_function(
        "document.querySelector('#sweep-status').textContent === 'completed'", timeout=180_000
    )
    assert page.url.split("#")[1].startswith("sweep=")
    sweep_id = page.locator("#sweep-title").inner_text()
    assert page.locator("#sweeps li", has_text=sweep_id).count() == 1
    # 2 seeds x (the standard arm + 4 cells)
    assert "10 / 10 branches completed" in page.locator("#sweep-progress").inner_text()
    assert page.locator("#sweep-resume-btn").is_hidden()

    # one setting: one heatmap, temperature down and gate_strength across, every cell filled
    [heatmap] = page.evaluate(HEATMAPS)
    metric = page.locator("#sweep-metric").input_value()
    assert heatmap["type"] == "heatmap" and heatmap["metric"] == metric
    assert heatmap["y"] == ["0.5", "2"] and heatmap["x"] == ["0.5", "1"]
    assert all(isinstance(v, float) for row in heatmap["z"] for v in row)
    # marks are the verdicts adjusted over the heatmap's 4 cells (Benjamini-Hochberg)
    trace = page.evaluate("() => document.querySelector('#sweep-heatmaps .facet .plot').data[0]")
    assert all(mark in ("", "✓", "✗", "=") for row in trace["text"] for mark in row)
    assert all("fdr_bh over 4" in text for row in trace["hovertext"] for text in row)

    # another metric redraws the heatmap with its own differences
    options = page.locator("#sweep-metric option").evaluate_all("os => os.map(o => o.value)")
    assert len(options) >= 2 and metric in options
    other = next(m for m in options if m != metric)
    page.select_option("#sweep-metric", other)
    page.wait_for_function(
        f"document.querySelector('#sweep-heatmaps .facet').dataset.metric === {other!r}"
    )
    [redrawn] = page.evaluate(HEATMAPS)
    assert redrawn["z"] != heatmap["z"] and all(v is not None for r in redrawn["z"] for v in r)

    # all cells in parallel coordinates: the two gating axes and the difference
    parcoords = page.evaluate(
        "() => { const t = document.querySelector('#sweep-parcoords').data[0];"
        " return {type: t.type, labels: t.dimensions.map(d => d.label),"
        " n: t.dimensions[0].values.length}; }"
    )
    assert parcoords["type"] == "parcoords" and parcoords["n"] == 4
    assert parcoords["labels"][:2] == ["temperature", "gate_strength"]
    assert page.locator("#sweep-parcoords .parcoords").count() >= 1
    assert page.locator("#sweep-entropy tbody tr").count() == 4  # gate entropy per cell
    page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)

    # a click on a cell (the first row, the second column) opens the run that trained it
    results = page.evaluate(f"() => fetch('/api/sweeps/{sweep_id}').then(r => r.json())")
    cell = next(
        c for c in results["cells"] if c["params"] == {"temperature": 0.5, "gate_strength": 1}
    )
    drag = page.locator("#sweep-heatmaps .facet .nsewdrag").first
    drag.scroll_into_view_if_needed()  # choosing a metric above may have scrolled it away
    box = drag.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.75)
    page.wait_for_function(
        f"location.hash === '#run={cell['run_id']}'"
        f" && document.querySelector('#run-title').textContent === {cell['run_id']!r}"
    )
    assert page.locator("#sweep-view").is_hidden() and page.locator("#run-view").is_visible()
    page.wait_for_selector('#comparison th[data-condition^="gated["]')

    # the deep link opens the sweep again
    page.goto(page.url.split("#")[0] + f"#sweep={sweep_id}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function("document.querySelector('#sweep-status').textContent === 'completed'")
    assert page.locator("#run-view").is_hidden()
    assert len(page.evaluate(HEATMAPS)) == 1

    # the ticked settings' runs open in the comparison view: the standard arm and every cell
    page.click("#sweep-compare-btn")
    page.wait_for_selector("#compare-table tbody tr")
    assert page.locator("#sweep-view").is_hidden()
    assert page.locator("#compare-table thead th").count() == 1 + 5

    # issue 20: single cells side by side, curves included; the run table says what differs
    page.goto(page.url.split("#")[0] + f"#sweep={sweep_id}")
    page.reload()
    page.wait_for_selector("#sweep-settings tr.cell-row")
    low, high = (
        next(c for c in results["cells"] if c["params"] == p)
        for p in (
            {"temperature": 0.5, "gate_strength": 0.5},
            {"temperature": 2, "gate_strength": 1},
        )
    )
    page.uncheck(f'#sweep-settings input.pick[data-run="{low["run_id"]}"]')
    for cell in (low, high):
        page.check(f'#sweep-settings input.pick[data-run="{cell["run_id"]}:{cell["name"]}"]')
    page.click("#sweep-compare-btn")
    page.wait_for_selector("#compare-table tbody tr")
    head = page.locator("#compare-table thead th").all_inner_texts()
    assert len(head) == 3 and head[1].startswith(f"{low['run_id']} · {low['name']}")
    assert page.inner_text("#compare-count") == "2 entries"
    differs = page.locator("#compare-runs td.differs").all_inner_texts()
    # one setting (one run): only the cells' own values differ, as their names give them
    assert [sorted(d.split(" · ")) for d in differs] == [
        sorted(c["name"].removeprefix("gated[").removesuffix("]").split(",")) for c in (low, high)
    ], differs
    means = page.evaluate(
        "() => document.querySelector('#compare-loss .plot').data.filter(t => t.name)"
        ".map(t => [t.name, t.x.length])"
    )
    assert [n for n, _ in means] == [
        f"{low['run_id']} · {low['name']} (n=2 seeds)",
        f"{high['run_id']} · {high['name']} (n=2 seeds)",
    ]
    assert all(length == 10 for _, length in means)  # a point per step of both seeds' mean
    page.reload()  # the deep link names the cells (their commas encoded)
    page.wait_for_function("document.querySelectorAll('#compare-table thead th').length === 3")


@pytest.mark.parametrize(
    "grid,message",
    [
        ("colour=1,2", "unknown parameter 'colour'"),
        ("temperature=1,1", "axis temperature: 1 is given twice; give each value once"),
        ("temperature=1\ntemperature=2", "grid axes: temperature is given twice"),
    ],
)
def test_a_bad_axis_shows_the_servers_error_and_starts_nothing(page, grid, message):
    before = len(page.evaluate(SWEEPS))
    start_sweep(page, grid)
    page.wait_for_function("document.querySelector('#sweep-form-error').textContent.length > 0")
    assert message in page.locator("#sweep-form-error").inner_text()
    assert len(page.evaluate(SWEEPS)) == before
    assert page.locator("#sweep-view").is_hidden()
    assert page.locator("#jobs .badge").count() == 0


def test_the_sweep_form_refuses_an_empty_or_bad_number_as_the_run_form_does(page):
    """Issue 20, defect 1: an empty Steps per branch started a default 25,000-step sweep."""
    page.click("#sweep-details summary")
    page.select_option("#s-recipe", "gradient_gating_l0")
    page.fill("#s-grid", "temperature=0.5,2")
    for box, label, typed in [
        ("#s-steps", "Steps per branch", ""),
        ("#s-steps", "Steps per branch", "2.5"),
        ("#s-eval_every", "Evaluate every (steps)", ""),
        ("#s-num_seeds", "First N seeds", "1e"),
    ]:
        page.fill("#s-steps", "10")
        page.fill("#s-eval_every", "0")
        page.fill(box, "")
        page.focus(box)
        page.keyboard.type(typed)  # what a person types (the box drops what it cannot hold)
        page.click("#sweep-btn")
        page.wait_for_function(
            f"document.querySelector('#sweep-form-error').textContent.startsWith({label!r})"
        )
        assert page.locator("#sweep-form-error").inner_text() == f"{label}: enter a whole number"
        page.evaluate("document.querySelector('#sweep-form-error').textContent = ''")
    assert page.evaluate(SWEEPS) == []
    assert page.locator("#jobs .badge").count() == 0


def test_an_interrupted_sweep_resumes_from_its_page_and_fills_in(page, tmp_path):
    store = Store(tmp_path / "store")
    base = {"steps": 10, "seeds": [3], "eval_every": 0}
    grid = {"gate_strength": [0.5, 1.0]}
    sweep_id = create_sweep(store, "gradient_gating_l0", base, grid, {}, device="cpu")

    def interrupt_in_the_first_cell(event):
        if event["type"] == "step" and event["condition"].startswith("gated"):
            raise KeyboardInterrupt

    stopped = execute_sweep(store, sweep_id, on_event=interrupt_in_the_first_cell)
    assert stopped["status"] == "interrupted"
    page.goto(page.url.split("#")[0] + f"#sweep={sweep_id}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(
        "document.querySelector('#sweep-status').textContent === 'interrupted'", timeout=30_000
    )
    assert "1 / 3 branches completed" in page.locator("#sweep-progress").inner_text()
    # one gating axis: a single column, its cells blank until they have data
    [heatmap] = page.evaluate(HEATMAPS)
    assert heatmap["y"] == ["0.5", "1"] and len(heatmap["x"]) == 1
    assert heatmap["z"] == [[None], [None]]

    # issue 20: the page deletes a finished sweep; one of its runs in use: refused, and why
    [run] = store.sweep_runs(sweep_id)
    store.finish_run(run["id"], Status.RUNNING)
    page.once("dialog", lambda d: d.accept())
    page.click("#sweep-delete-btn")
    page.wait_for_function("document.querySelector('#sweep-error').textContent.length > 0")
    assert page.inner_text("#sweep-error") == (
        f"sweep {sweep_id}'s run {run['id']} is running: cancel it first (its job in the"
        " dashboard, or Ctrl-C the `acc run`/`acc sweep` that trains it), then delete it"
    )
    store.finish_run(run["id"], Status.INTERRUPTED)
    page.click("#sweep-resume-btn")
    # issue 20, defect 13: the header's badge said "idle" while the page polled the sweep
    page.wait_for_function("document.querySelector('#live').textContent === 'polling'")
    page.wait_for_function(  # polled while it trains
        "document.querySelector('#sweep-status').textContent === 'completed'", timeout=120_000
    )
    assert page.inner_text("#live") == "idle"
    assert "3 / 3 branches completed" in page.locator("#sweep-progress").inner_text()
    assert page.locator("#sweep-resume-btn").is_hidden()
    [heatmap] = page.evaluate(HEATMAPS)
    assert all(isinstance(row[0], float) for row in heatmap["z"])

    # Delete asks first (declined: nothing goes), then deletes the sweep and its runs
    page.once("dialog", lambda d: d.dismiss())
    page.click("#sweep-delete-btn")
    assert [s["id"] for s in page.evaluate(SWEEPS)] == [sweep_id]
    page.once("dialog", lambda d: d.accept())
    page.click("#sweep-delete-btn")
    page.wait_for_selector("#empty:not([hidden])")
    assert page.inner_text("#empty") == (
        f"Deleted sweep {sweep_id} (1 runs, 3 branches, 4 checkpoints)."
    )
    assert page.evaluate(SWEEPS) == [] and store.sweep_runs(sweep_id) == []
    page.wait_for_function("document.querySelector('#sweeps li').textContent === 'no sweeps yet'")


def box_of(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def below(upper: dict, lower: dict) -> bool:
    return upper["y"] + upper["height"] <= lower["y"] + 0.5


def test_a_sweep_with_the_shuffled_control_shows_each_pair_in_a_readable_layout(
    page, tmp_path, tiny_mnist
):
    """Issue 18's leftover: with a shuffled control each metric has two comparisons and the
    page showed one (its heatmap was empty: the control's cells overwrote the gated ones).
    Issue 20, defect 6, at 1440x900: the parallel coordinates covered the next section, the
    heatmaps were ~350 px with a clipped hover box, and the toolbar sat over the title."""
    store = Store(tmp_path / "store")
    base = {"steps": 4, "seeds": [1, 2], "eval_every": 0, "batch_size": 16}
    base["controls"] = "shuffled"
    grid = {"temperature": [0.5, 2.0]}
    sweep_id = create_sweep(
        store, "gradient_gating_l0", base, grid, {}, device="cpu", data_dir=tiny_mnist
    )
    results = execute_sweep(store, sweep_id)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(page.url.split("#")[0] + f"#sweep={sweep_id}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function("document.querySelectorAll('#sweep-heatmaps .facet').length === 2")
    assert "1 setting(s) × 2 cell(s) × 2 arms (gated, shuffled)" in page.inner_text("#sweep-config")

    # a heatmap per pair, each with the gated cells' differences from the results
    metric = page.locator("#sweep-metric").input_value()
    shown = {h["pair"]: h for h in page.evaluate(HEATMAPS)}
    assert sorted(shown) == ["shuffled", "standard"]
    for pair, heatmap in shown.items():
        assert heatmap["title"].endswith(f" · gated − {pair}"), heatmap["title"]
        assert heatmap["y"] == ["0.5", "2"] and heatmap["x"] == ["gated"]
        expected = [
            next(
                c["mean_diff"]
                for c in cell["comparisons"]
                if c["metric"] == metric and c["b"].split("[")[0] == pair
            )
            for cell in sorted(
                (c for c in results["cells"] if c["condition"] == "gated"),
                key=lambda c: c["params"]["temperature"],
            )
        ]
        assert [row[0] for row in heatmap["z"]] == pytest.approx(expected), pair

    # big enough, the toolbar below the title, every hover box whole inside its heatmap
    for n in range(2):
        facet = page.locator("#sweep-heatmaps .facet").nth(n)
        outer = facet.bounding_box()
        assert outer["width"] >= 500 and outer["height"] >= 360, outer
        drag = facet.locator(".nsewdrag").bounding_box()
        for fy in (0.25, 0.75):
            page.mouse.move(drag["x"] + drag["width"] / 2, drag["y"] + drag["height"] * fy)
            page.wait_for_selector(f"#sweep-heatmaps .facet:nth-child({n + 1}) .hovertext")
            hover = facet.locator(".hovertext").bounding_box()
            assert (
                outer["x"] <= hover["x"]
                and hover["x"] + hover["width"] <= outer["x"] + outer["width"]
            )
            assert (
                outer["y"] <= hover["y"]
                and hover["y"] + hover["height"] <= outer["y"] + outer["height"]
            )
        assert below(
            facet.locator(".chart-title").bounding_box(), facet.locator(".modebar").bounding_box()
        )

    # the parallel coordinates (both differences as axes) end above the next section
    labels = page.evaluate(
        "() => document.querySelector('#sweep-parcoords').data[0].dimensions.map(d => d.label)"
    )
    assert labels == ["temperature", f"{metric}: a − standard", f"{metric}: a − shuffled"]
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('#sweep-parcoords svg, #sweep-parcoords text')]
            .map(e => e.getBoundingClientRect().bottom + scrollY)"""
    )
    heading = box_of(page, "#sweep-entropy-section h3")
    assert max(drawn) <= heading["y"], (max(drawn), heading)
    assert below(box_of(page, "#sweep-parcoords"), heading)
    head = page.locator("#sweep-entropy thead th").all_inner_texts()
    assert head == ["temperature", "arm", "gate_entropy"], head
